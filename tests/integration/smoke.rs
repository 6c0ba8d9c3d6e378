//! Smoke tests of the test world itself: every registry flavour takes the
//! busybox fixture from skopeo and gives back the same digests, and runc runs
//! the fixture's busybox. These fail (never skip) when a component is missing.

use std::process::Command;

use crate::world::{self, Flavour};

fn push_and_read_back(flavour: Flavour) {
    let registry = world::registry(flavour);
    let bb = world::busybox();
    world::push_busybox(registry, "smoke/busybox");

    assert_eq!(
        registry.skopeo_digest("smoke/busybox:latest"),
        bb.latest,
        "{flavour:?}: latest"
    );
    assert_eq!(
        registry.skopeo_digest("smoke/busybox:multi"),
        bb.multi,
        "{flavour:?}: multi index"
    );

    let v2s2 = registry.skopeo_raw_manifest("smoke/busybox:v2s2");
    let v2s2: serde_json::Value = serde_json::from_slice(&v2s2).expect("v2s2 manifest is JSON");
    assert_eq!(
        v2s2["mediaType"], "application/vnd.docker.distribution.manifest.v2+json",
        "{flavour:?}: the v2s2 variant has Docker media types"
    );
}

#[test]
fn plain_registry_round_trips_the_busybox_fixture() {
    push_and_read_back(Flavour::Plain);
}

#[test]
fn basic_auth_registry_round_trips_the_busybox_fixture() {
    push_and_read_back(Flavour::Basic);
}

#[test]
fn tls_registry_round_trips_the_busybox_fixture() {
    push_and_read_back(Flavour::Tls);
}

#[test]
fn token_registry_round_trips_the_busybox_fixture() {
    push_and_read_back(Flavour::Token);
}

#[test]
fn basic_auth_registry_refuses_anonymous_reads() {
    let registry = world::registry(Flavour::Basic);
    world::push_busybox(registry, "smoke/busybox");
    let out = Command::new(world::require_tool("skopeo"))
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(registry.docker_ref("smoke/busybox:latest"))
        .output()
        .expect("run skopeo");
    assert!(
        !out.status.success(),
        "anonymous read of a basic-auth registry succeeded"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unauthorized") || stderr.contains("authentication required"),
        "{stderr}"
    );
}

#[test]
fn tls_registry_is_not_trusted_without_its_ca() {
    let registry = world::registry(Flavour::Tls);
    world::push_busybox(registry, "smoke/busybox");
    let empty_certs = tempfile::tempdir().expect("temp dir");
    let out = Command::new(world::require_tool("skopeo"))
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(empty_certs.path())
        .arg(registry.docker_ref("smoke/busybox:latest"))
        .output()
        .expect("run skopeo");
    assert!(!out.status.success(), "TLS registry trusted without its CA");
    assert!(String::from_utf8_lossy(&out.stderr).contains("certificate"));
}

#[test]
fn fixture_is_valid_and_reproducible() {
    let bb = world::busybox();
    let out = Command::new(world::require_tool("oci-image-tool"))
        .args(["validate", "--type", "image", "--ref", "name=latest"])
        .arg(&bb.layout)
        .output()
        .expect("run oci-image-tool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Same script, same bytes.
    let again = tempfile::tempdir().expect("temp dir");
    let layout = again.path().join("bb");
    let printed = world::run_ok(
        Command::new("bash")
            .arg(world::repo_root().join("fixtures/images/busybox/build.sh"))
            .arg(&layout),
    );
    assert!(
        printed.contains(&format!("latest {}", bb.latest)),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("multi {}", bb.multi)),
        "{printed}"
    );
}

#[test]
fn runc_runs_the_busybox_fixture() {
    let bb = world::busybox();
    let runc = world::require_tool("runc");
    let dir = tempfile::tempdir().expect("temp dir");
    let bundle = dir.path().join("bundle");
    world::run_ok(
        Command::new(world::require_tool("umoci"))
            .args(["unpack", "--image"])
            .arg(format!("{}:latest", bb.layout.display()))
            .arg(&bundle),
    );
    assert!(bundle.join("rootfs/bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(bundle.join("rootfs/bin/sh")).expect("bin/sh is a symlink"),
        std::path::Path::new("busybox")
    );

    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).expect("read config.json"))
            .expect("config.json");
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!([
        "sh",
        "-c",
        "echo hello from $(cat /etc/hostname 2>/dev/null || echo busybox); id -u"
    ]);
    std::fs::write(
        &config_path,
        serde_json::to_vec(&config).expect("serialize"),
    )
    .expect("write config.json");

    let id = format!("imgb-smoke-{}", std::process::id());
    let out = Command::new(runc)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run runc");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "runc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("hello from"), "{stdout}");
    assert!(stdout.lines().any(|l| l.trim() == "0"), "{stdout}");
}
