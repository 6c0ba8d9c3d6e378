//! Store, layers and export at library level, checked with the real tools:
//! a tree on disk (files, dirs, symlinks, hard links, long names, a fifo, a
//! device, xattrs) becomes two layers (the second from an overlay upper dir
//! with a whiteout and an opaque dir), then an image in each export format,
//! which skopeo, umoci and oci-image-tool must accept; the unpacked rootfs
//! must be exactly the expected tree. Also: reproducibility across paths,
//! mtimes and stores (here), kill -9 and concurrent writers (`store`).

mod store;
mod trees;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use imgb::digest::Sha256Digest;
use imgb::export::{commit_image, export, ExportTarget};
use imgb::image::{Config, Descriptor, History, ImageConfig};
use imgb::layer::{Compression, Layer, LayerOptions, LayerWriter, TreeOptions};
use imgb::store::ContentStore;

use crate::world::{require_tool, run_ok};
use trees::{assert_same_tree, base_tree, expected_tree, upper_tree};

const EPOCH: u64 = 1_700_000_000;
const EPOCH_RFC3339: &str = "2023-11-14T22:13:20Z";
const NAME: &str = "example.com/test/app:v1";

fn layer_from(store: &ContentStore, src: &Path, opts: &LayerOptions, upper: bool) -> Layer {
    let mut w = LayerWriter::new(store, opts).unwrap();
    w.append_tree(
        src,
        &TreeOptions {
            overlay_upper: upper,
            ..TreeOptions::default()
        },
    )
    .unwrap();
    w.finish().unwrap()
}

/// Two layers + config + manifest, committed to `store`.
fn build_image(store: &ContentStore, base: &Path, upper: &Path, opts: &LayerOptions) -> Descriptor {
    let layers = [
        layer_from(store, base, opts, false),
        layer_from(store, upper, opts, true),
    ];
    let mut config = ImageConfig::new("linux", "amd64");
    config.created = Some(EPOCH_RFC3339.to_string());
    config.config = Some(Config {
        env: Some(vec!["PATH=/bin".into()]),
        cmd: Some(vec!["/bin/tool".into()]),
        working_dir: Some("/".into()),
        labels: Some(BTreeMap::from([("org.example.test".into(), "yes".into())])),
        ..Config::default()
    });
    for (i, l) in layers.iter().enumerate() {
        config.push_layer(
            l.diff_id,
            History {
                created: Some(EPOCH_RFC3339.into()),
                created_by: Some(format!("layer {i}")),
                ..History::default()
            },
        );
    }
    let descs = layers
        .iter()
        .map(|l| Descriptor::new(&l.media_type, l.digest, l.size))
        .collect();
    commit_image(store, &config, descs, Some(EPOCH_RFC3339)).unwrap()
}

fn skopeo(args: &[&str]) -> String {
    let mut cmd = Command::new(require_tool("skopeo"));
    cmd.arg("--insecure-policy").args(args);
    run_ok(&mut cmd)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn umoci_unpack(image: &str, bundle: &Path) -> PathBuf {
    run_ok(
        Command::new(require_tool("umoci"))
            .args(["unpack", "--image", image])
            .arg(bundle),
    );
    bundle.join("rootfs")
}

struct Built {
    _dirs: Vec<tempfile::TempDir>,
    store: ContentStore,
    manifest: Descriptor,
    expected: PathBuf,
    work: PathBuf,
}

fn built() -> Built {
    let (base, upper, expected, home, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    base_tree(base.path());
    upper_tree(upper.path());
    expected_tree(expected.path());
    let store = ContentStore::open(home.path()).unwrap();
    let manifest = build_image(&store, base.path(), upper.path(), &LayerOptions::default());
    store.set_ref(NAME, &manifest.digest).unwrap();
    Built {
        store,
        manifest,
        expected: expected.path().to_path_buf(),
        work: work.path().to_path_buf(),
        _dirs: vec![base, upper, expected, home, work],
    }
}

#[test]
fn oci_layout_passes_skopeo_umoci_and_oci_image_tool() {
    let b = built();
    let layout = b.work.join("layout");
    let target =
        ExportTarget::parse(&format!("type=oci,dest={},tar=false", layout.display())).unwrap();
    export(&b.store, &b.manifest, &[NAME.to_string()], &target).unwrap();

    let src = format!("oci:{}:v1", layout.display());
    let inspect = json(&skopeo(&["inspect", &src]));
    assert_eq!(inspect["Digest"], b.manifest.digest.to_string());
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(inspect["Env"][0], "PATH=/bin");
    assert_eq!(inspect["Labels"]["org.example.test"], "yes");

    run_ok(
        Command::new(require_tool("oci-image-tool"))
            .args(["validate", "--type", "image", "--ref", "name=v1"])
            .arg(&layout),
    );

    let rootfs = umoci_unpack(&format!("{}:v1", layout.display()), &b.work.join("bundle"));
    assert_same_tree(&rootfs, &b.expected);

    // skopeo copies it to every transport, and what arrives still unpacks.
    let copies = [
        format!("oci:{}:v1", b.work.join("copy-oci").display()),
        format!("oci-archive:{}:v1", b.work.join("copy.tar").display()),
        format!(
            "docker-archive:{}:{NAME}",
            b.work.join("copy-docker.tar").display()
        ),
        format!("dir:{}", b.work.join("copy-dir").display()),
    ];
    for dest in &copies {
        skopeo(&["copy", &src, dest]);
        let again = json(&skopeo(&["inspect", "--config", dest]));
        assert_eq!(
            again["rootfs"]["diff_ids"].as_array().unwrap().len(),
            2,
            "{dest}"
        );
        assert_eq!(again["config"]["Cmd"][0], "/bin/tool", "{dest}");
    }
    let copied = json(&skopeo(&["inspect", &copies[0]]));
    assert_eq!(
        copied["Digest"],
        b.manifest.digest.to_string(),
        "oci->oci keeps the digest"
    );
}

#[test]
fn oci_archive_is_read_by_skopeo_and_umoci() {
    let b = built();
    let archive = b.work.join("out/image.tar");
    let target = ExportTarget::parse(&format!("type=oci,dest={}", archive.display())).unwrap();
    export(&b.store, &b.manifest, &[NAME.to_string()], &target).unwrap();
    let src = format!("oci-archive:{}:v1", archive.display());
    let inspect = json(&skopeo(&["inspect", &src]));
    assert_eq!(inspect["Digest"], b.manifest.digest.to_string());
    // oci-image-tool 1.0.0-rc1 fails on every tar ("unable to walk: end of
    // walk", skopeo's own oci-archives too), so validate the extracted layout.
    let extracted = b.work.join("extracted");
    fs::create_dir(&extracted).unwrap();
    run_ok(
        Command::new(require_tool("tar"))
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&extracted),
    );
    run_ok(
        Command::new(require_tool("oci-image-tool"))
            .args(["validate", "--type", "image", "--ref", "name=v1"])
            .arg(&extracted),
    );
    // Unpack what skopeo extracted from the archive.
    let layout = b.work.join("from-archive");
    skopeo(&["copy", &src, &format!("oci:{}:v1", layout.display())]);
    let rootfs = umoci_unpack(&format!("{}:v1", layout.display()), &b.work.join("bundle"));
    assert_same_tree(&rootfs, &b.expected);
    // Nothing but the archive next to it.
    let names: Vec<_> = fs::read_dir(b.work.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("image.tar")]);
}

#[test]
fn docker_archive_is_read_by_skopeo() {
    let b = built();
    let archive = b.work.join("docker.tar");
    let target = ExportTarget::parse(&format!("type=docker,dest={}", archive.display())).unwrap();
    let written = export(&b.store, &b.manifest, &[NAME.to_string()], &target).unwrap();
    assert_eq!(
        written.media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    // docker load's own files are there.
    let mut entries = Vec::new();
    let mut ar = tar::Archive::new(fs::File::open(&archive).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        if path == "manifest.json" {
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            let m = json(&s);
            assert_eq!(m[0]["RepoTags"][0], NAME);
            assert_eq!(m[0]["Layers"].as_array().unwrap().len(), 2);
        }
        entries.push(path);
    }
    for must in ["manifest.json", "repositories", "index.json", "oci-layout"] {
        assert!(entries.iter().any(|e| e == must), "{must} in {entries:?}");
    }
    let src = format!("docker-archive:{}", archive.display());
    let config = json(&skopeo(&["inspect", "--config", &src]));
    let ours: serde_json::Value = serde_json::from_slice(
        &b.store
            .read_blob(
                &imgb::export::read_manifest(&b.store, &b.manifest.digest)
                    .unwrap()
                    .config
                    .digest,
            )
            .unwrap(),
    )
    .unwrap();
    assert_eq!(config["rootfs"], ours["rootfs"]);
    let layout = b.work.join("from-docker");
    skopeo(&["copy", &src, &format!("oci:{}:v1", layout.display())]);
    let rootfs = umoci_unpack(&format!("{}:v1", layout.display()), &b.work.join("bundle"));
    assert_same_tree(&rootfs, &b.expected);
}

#[test]
fn several_exports_share_one_layout_and_replace_their_own_tag() {
    let b = built();
    let layout = b.work.join("shared");
    let target =
        ExportTarget::parse(&format!("type=oci,dest={},tar=false", layout.display())).unwrap();
    // Four writers at once, each its own tag.
    std::thread::scope(|s| {
        for i in 0..4 {
            let (store, manifest, target) = (&b.store, &b.manifest, &target);
            s.spawn(move || {
                export(store, manifest, &[format!("app:t{i}")], target).unwrap();
            });
        }
    });
    export(&b.store, &b.manifest, &["app:t0".to_string()], &target).unwrap();
    let index = json(&fs::read_to_string(layout.join("index.json")).unwrap());
    let mut tags: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    tags.sort();
    assert_eq!(tags, ["t0", "t1", "t2", "t3"]);
    for t in tags {
        let inspect = json(&skopeo(&[
            "inspect",
            &format!("oci:{}:{t}", layout.display()),
        ]));
        assert_eq!(inspect["Digest"], b.manifest.digest.to_string());
    }
    // A directory that is not a layout is left alone.
    let other = b.work.join("not-a-layout");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("precious"), b"x").unwrap();
    let target =
        ExportTarget::parse(&format!("type=oci,dest={},tar=false", other.display())).unwrap();
    assert!(export(&b.store, &b.manifest, &[], &target).is_err());
    assert_eq!(fs::read_dir(&other).unwrap().count(), 1);
}

#[test]
fn a_failed_archive_export_leaves_no_file_behind() {
    let b = built();
    let manifest = imgb::export::read_manifest(&b.store, &b.manifest.digest).unwrap();
    // Damage the top layer in the store: the copy must notice and give up.
    let top = manifest.layers[1].digest;
    let path = b.store.blob_path(&top);
    let mut bytes = fs::read(&path).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    let out = b.work.join("out");
    fs::create_dir(&out).unwrap();
    for spec in ["type=oci,dest=OUT/a.tar", "type=docker,dest=OUT/b.tar"] {
        let target = ExportTarget::parse(&spec.replace("OUT", &out.to_string_lossy())).unwrap();
        assert!(
            export(&b.store, &b.manifest, &[], &target).is_err(),
            "{spec}"
        );
    }
    assert_eq!(
        fs::read_dir(&out).unwrap().count(),
        0,
        "no archive, no temp file"
    );
}

/// Sets every entry's mtime (without following symlinks).
fn touch_all(root: &Path, secs: i64) {
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    };
    for e in walkdir::WalkDir::new(root).contents_first(true) {
        let e = e.unwrap();
        rustix::fs::utimensat(
            rustix::fs::CWD,
            e.path(),
            &ts,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }
}

#[test]
fn same_tree_at_two_paths_with_other_mtimes_gives_identical_digests() {
    let now = i64::try_from(EPOCH).unwrap() + 100_000_000;
    let mut results = Vec::new();
    for (i, mtime) in [(0, now), (1, now + 3_600)] {
        let parent = tempfile::tempdir().unwrap();
        // Different paths, different depths.
        let base = parent
            .path()
            .join(format!("tree-{i}/{}", "n".repeat(i * 7 + 1)));
        let upper = parent.path().join(format!("upper-{i}"));
        fs::create_dir_all(&base).unwrap();
        fs::create_dir_all(&upper).unwrap();
        base_tree(&base);
        upper_tree(&upper);
        touch_all(&base, mtime);
        touch_all(&upper, mtime);
        let home = parent.path().join("home");
        let store = ContentStore::open(&home).unwrap();
        let mut digests = Vec::new();
        for compression in [
            Compression::Gzip,
            Compression::Zstd,
            Compression::Uncompressed,
        ] {
            let opts = LayerOptions {
                compression,
                source_date_epoch: Some(EPOCH),
                ..LayerOptions::default()
            };
            let m = build_image(&store, &base, &upper, &opts);
            let parsed = imgb::export::read_manifest(&store, &m.digest).unwrap();
            digests.push(format!("{compression:?} manifest {}", m.digest));
            digests.push(format!("{compression:?} config {}", parsed.config.digest));
            for l in &parsed.layers {
                digests.push(format!("{compression:?} layer {}", l.digest));
            }
            if compression == Compression::Gzip {
                let tar = parent.path().join("image.tar");
                let t = ExportTarget::parse(&format!("type=oci,dest={}", tar.display())).unwrap();
                export(&store, &m, &[NAME.to_string()], &t).unwrap();
                digests.push(format!(
                    "archive {}",
                    Sha256Digest::of(&fs::read(&tar).unwrap())
                ));
            }
        }
        // Without SOURCE_DATE_EPOCH the mtimes show, so the digests differ.
        let unclamped = build_image(&store, &base, &upper, &LayerOptions::default());
        results.push((digests, unclamped.digest));
    }
    assert_eq!(
        results[0].0, results[1].0,
        "clamped builds must be identical"
    );
    assert_ne!(
        results[0].1, results[1].1,
        "unclamped builds see the mtimes"
    );
}
