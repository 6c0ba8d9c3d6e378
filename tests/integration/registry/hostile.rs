//! Registries that stall, trickle or never stop talking: every request has
//! a deadline and a minimum speed, every body a size cap applied while it
//! streams, and the error says what happened. The limits are lowered
//! through the environment so that each case ends in seconds.

use std::time::Duration;

use super::fault_proxy::{Action, FaultProxy};
use super::is_blob;
use crate::harness::{Imgb, Run};
use crate::world::{self, Flavour};

/// `imgb pull REF` through `proxy` with one-second limits, which must end
/// within 20 s; returns the run and its duration.
fn pull_through(imgb: &Imgb, proxy: &FaultProxy, repo: &str) -> (Run, Duration) {
    let mut cmd = imgb.cmd();
    cmd.env("IMGB_REGISTRY_TIMEOUT", "1")
        .env("IMGB_REGISTRY_SPEED_LIMIT", "1000")
        .env("IMGB_REGISTRY_SPEED_TIME", "1")
        .args(["pull", "--no-unpack", &format!("{}/{repo}", proxy.addr)]);
    Run::within(cmd, Duration::from_secs(20))
}

fn no_blob_stored(imgb: &Imgb) -> bool {
    std::fs::read_dir(imgb.home.path().join("blobs/sha256"))
        .map(|d| d.count() == 0)
        .unwrap_or(true)
}

#[test]
fn stalled_and_trickling_registries_are_given_up_on_in_seconds() {
    let registry = world::registry(Flavour::Plain);
    world::push_busybox(registry, "it/hostile");

    // Headers, then silence: one fresh try, then the error says so.
    let proxy = FaultProxy::start(
        &registry.addr,
        Box::new(|method, path, _| match method {
            "GET" if is_blob(path) => Action::Stall,
            _ => Action::Forward,
        }),
    );
    let imgb = Imgb::new();
    let (run, took) = pull_through(&imgb, &proxy, "it/hostile:latest");
    run.exit_code(1)
        .stderr_has("registry sent 0 bytes in 1 s (minimum 1000 bytes/s over 1 s)")
        .stderr_has("stalled; retrying");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let stalled: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|l| l.action == Action::Stall)
        .map(|l| l.path)
        .collect();
    let first = &stalled[0];
    assert_eq!(
        stalled.iter().filter(|p| *p == first).count(),
        2,
        "a stalled blob is tried twice, no more: {stalled:?}"
    );
    assert!(no_blob_stored(&imgb), "a stalled pull stored a blob");

    // A byte every 100 ms never resets anything: given up on just the same.
    let proxy = FaultProxy::start(
        &registry.addr,
        Box::new(|method, path, _| match method {
            "GET" if is_blob(path) => Action::Trickle(100),
            _ => Action::Forward,
        }),
    );
    let imgb = Imgb::new();
    let (run, took) = pull_through(&imgb, &proxy, "it/hostile:latest");
    run.exit_code(1)
        .stderr_has("(minimum 1000 bytes/s over 1 s)");
    assert!(run.stderr.contains("registry sent 1") || run.stderr.contains("registry sent 9"));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(proxy.sent() > 0, "the trickle never started");

    // No answer at all to a manifest request.
    let proxy = FaultProxy::start(
        &registry.addr,
        Box::new(|_, path, _| match path {
            p if p.contains("/manifests/") => Action::Silent,
            _ => Action::Forward,
        }),
    );
    let (run, took) = pull_through(&Imgb::new(), &proxy, "it/hostile:latest");
    run.exit_code(1)
        .stderr_has("GET /v2/it/hostile/manifests/latest: no answer within 1 s");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn endless_manifests_error_bodies_and_token_answers_are_cut_off() {
    let registry = world::registry(Flavour::Plain);
    world::push_busybox(registry, "it/hostile");
    // Generous time limits here: only the size caps may stop these.
    let pull = |imgb: &Imgb, proxy: &FaultProxy| {
        let mut cmd = imgb.cmd();
        cmd.env("IMGB_REGISTRY_TIMEOUT", "15").args([
            "pull",
            "--no-unpack",
            &format!("{}/it/hostile:latest", proxy.addr),
        ]);
        Run::within(cmd, Duration::from_secs(30)).0
    };

    // A chunked manifest (no Content-Length) that never ends.
    let proxy = FaultProxy::start(
        &registry.addr,
        Box::new(|_, path, _| match path {
            p if p.contains("/manifests/") => Action::Endless(200),
            _ => Action::Forward,
        }),
    );
    pull(&Imgb::new(), &proxy)
        .exit_code(1)
        .stderr_has("fetch manifest")
        .stderr_has("the answer is larger than 8388608 bytes; stopped reading it");
    assert!(
        proxy.sent() < 64 << 20,
        "imgb read {} bytes of an 8 MiB-capped manifest",
        proxy.sent()
    );

    // An endless error body: the status and the start of the text suffice.
    let proxy = FaultProxy::start(
        &registry.addr,
        Box::new(|_, path, _| match path {
            p if p.contains("/manifests/") => Action::Endless(404),
            _ => Action::Forward,
        }),
    );
    pull(&Imgb::new(), &proxy)
        .exit_code(1)
        .stderr_has("HTTP 404");
    assert!(proxy.sent() < 64 << 20, "read {} bytes", proxy.sent());

    // A token endpoint that never stops answering.
    let proxy = FaultProxy::start(
        &registry.addr,
        Box::new(|_, path, _| match path {
            p if p.starts_with("/token") => Action::Endless(200),
            _ => Action::Challenge,
        }),
    );
    pull(&Imgb::new(), &proxy)
        .exit_code(1)
        .stderr_has("token request: the answer is larger than 1048576 bytes");
    assert!(proxy.sent() < 64 << 20, "read {} bytes", proxy.sent());
}
