//! A build into an OCI layout (tag `t`) and the independent views of it the
//! tests compare: the rootfs as umoci unpacks it, the config and manifest as
//! skopeo reads them, and the image's command run by runc.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Imgb, Run};
use crate::world::{require_tool, run_ok};

/// A build into `DIR/layout` (tag `t`) and what imgb printed.
pub struct Built {
    pub dir: tempfile::TempDir,
    pub run: Run,
}

impl Built {
    /// `imgb build --progress=plain -t img:t -o type=oci,dest=DIR/layout,tar=false
    /// EXTRA... CONTEXT` with `env` set; not checked for success.
    pub fn build(imgb: &Imgb, context: &Path, extra: &[&str], env: &[(&str, &str)]) -> Built {
        let dir = tempfile::tempdir().expect("out dir");
        let mut cmd = imgb.cmd();
        cmd.args(["build", "--progress=plain", "-t", "img:t", "-o"])
            .arg(format!(
                "type=oci,dest={},tar=false",
                dir.path().join("layout").display()
            ))
            .args(extra)
            .arg(context);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Built {
            dir,
            run: Run::of(cmd),
        }
    }

    pub fn layout(&self) -> PathBuf {
        self.dir.path().join("layout")
    }

    fn oci_ref(&self) -> String {
        format!("oci:{}:t", self.layout().display())
    }

    /// Unpacks with umoci (afresh each time); returns the bundle dir.
    pub fn unpack(&self) -> PathBuf {
        let bundle = self.dir.path().join("bundle");
        let _ = std::fs::remove_dir_all(&bundle);
        run_ok(
            Command::new(require_tool("umoci"))
                .args(["unpack", "--image"])
                .arg(format!("{}:t", self.layout().display()))
                .arg(&bundle),
        );
        bundle
    }

    /// The rootfs as umoci unpacked it.
    pub fn rootfs(&self) -> PathBuf {
        self.unpack().join("rootfs")
    }

    /// The unpacked rootfs: path -> "type mode uid:gid content-or-target".
    pub fn tree(&self) -> BTreeMap<String, String> {
        walk_tree(&self.rootfs(), describe)
    }

    /// The image config as skopeo reads it.
    pub fn config(&self) -> serde_json::Value {
        let out = run_ok(
            Command::new(require_tool("skopeo"))
                .args(["inspect", "--config"])
                .arg(self.oci_ref()),
        );
        serde_json::from_str(&out).expect("config JSON")
    }

    /// The manifest as skopeo reads it.
    pub fn manifest(&self) -> serde_json::Value {
        let out = run_ok(
            Command::new(require_tool("skopeo"))
                .args(["inspect", "--raw"])
                .arg(self.oci_ref()),
        );
        serde_json::from_str(&out).expect("manifest JSON")
    }

    /// The manifest digest as skopeo computes it.
    pub fn manifest_digest(&self) -> String {
        let out = run_ok(
            Command::new(require_tool("skopeo"))
                .args(["inspect", "--format", "{{.Digest}}"])
                .arg(self.oci_ref()),
        );
        out.trim().to_string()
    }

    pub fn layer_digests(&self) -> Vec<String> {
        self.manifest()["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["digest"].as_str().expect("digest").to_string())
            .collect()
    }

    /// Runs the image's entrypoint/CMD under runc; returns its stdout.
    pub fn run_cmd(&self) -> String {
        let bundle = self.unpack();
        let config_path = bundle.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config_path).expect("config")).expect("json");
        config["process"]["terminal"] = false.into();
        if let Some(p) = config["process"].as_object_mut() {
            p.remove("rlimits");
        }
        std::fs::write(&config_path, serde_json::to_vec(&config).expect("encode")).expect("write");
        run_ok(
            Command::new(require_tool("runc"))
                .arg("--root")
                .arg(self.dir.path().join("runc-state"))
                .args(["run", "--bundle"])
                .arg(&bundle)
                .arg(format!(
                    "imgb-test-{}-{}",
                    std::process::id(),
                    self.dir.path().display().to_string().len()
                )),
        )
    }
}

/// Every path under `rootfs` (sorted), described by `describe`.
pub fn walk_tree(
    rootfs: &Path,
    describe: impl Fn(&Path, &std::fs::Metadata) -> String,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(rootfs)
        .min_depth(1)
        .sort_by_file_name()
    {
        let entry = entry.expect("walk rootfs");
        let rel = entry
            .path()
            .strip_prefix(rootfs)
            .expect("under rootfs")
            .display()
            .to_string();
        let meta = entry.path().symlink_metadata().expect("stat");
        out.insert(rel, describe(entry.path(), &meta));
    }
    out
}

/// "link uid:gid -> target", "dir mode uid:gid" or "file mode uid:gid content".
pub fn describe(path: &Path, meta: &std::fs::Metadata) -> String {
    if meta.file_type().is_symlink() {
        format!(
            "link {}:{} -> {}",
            meta.uid(),
            meta.gid(),
            std::fs::read_link(path).expect("link").display()
        )
    } else if meta.is_dir() {
        format!(
            "dir {:o} {}:{}",
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid()
        )
    } else {
        format!(
            "file {:o} {}:{} {}",
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid(),
            String::from_utf8_lossy(&std::fs::read(path).expect("read"))
        )
    }
}

/// Asserts that `tree` has `path` described as `desc`.
#[track_caller]
pub fn has(tree: &BTreeMap<String, String>, path: &str, desc: &str) {
    assert_eq!(
        tree.get(path).map(String::as_str),
        Some(desc),
        "{path} in {tree:#?}"
    );
}
