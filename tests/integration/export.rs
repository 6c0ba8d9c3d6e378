//! Store, layers and export at library level, checked with the real tools:
//! a tree on disk (files, dirs, symlinks, hard links, long names, a fifo, a
//! device, xattrs) becomes two layers (the second from an overlay upper dir
//! with a whiteout and an opaque dir), then an image in each export format,
//! which skopeo, umoci and oci-image-tool must accept; the unpacked rootfs
//! must be exactly the expected tree. Also: reproducibility across paths,
//! mtimes and stores, and kill -9 during writes.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use imgb::digest::Sha256Digest;
use imgb::export::{commit_image, export, ExportTarget};
use imgb::image::{Config, Descriptor, History, ImageConfig};
use imgb::layer::{Compression, Layer, LayerOptions, LayerWriter, TreeOptions};
use imgb::store::{ContentStore, PruneOptions};

use crate::harness::imgb_bin;
use crate::world::{require_tool, run_ok};

const EPOCH: u64 = 1_700_000_000;
const EPOCH_RFC3339: &str = "2023-11-14T22:13:20Z";
const NAME: &str = "example.com/test/app:v1";

fn xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setxattr {name} on {}: {e}", path.display()));
}

fn mknod(path: &Path, kind: rustix::fs::FileType, mode: u32, dev: u64) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        kind,
        rustix::fs::Mode::from_raw_mode(mode),
        dev,
    )
    .unwrap_or_else(|e| panic!("mknod {} (tests run as root): {e}", path.display()));
}

fn write(path: &Path, bytes: impl AsRef<[u8]>, mode: u32) {
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mkdir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Deterministic pseudo-random bytes (xorshift), compressible only a little.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The first layer's tree.
fn base_tree(root: &Path) {
    mkdir(&root.join("bin"), 0o755);
    write(&root.join("bin/tool"), "#!/bin/sh\necho hi\n", 0o4755);
    mkdir(&root.join("etc"), 0o755);
    write(&root.join("etc/config"), "key=value\n", 0o644);
    write(&root.join("etc/removed"), "whited out by layer 2\n", 0o600);
    fs::hard_link(root.join("etc/config"), root.join("etc/hard")).unwrap();
    mkdir(&root.join("empty"), 0o700);
    mkdir(&root.join("opaque/sub"), 0o755);
    fs::set_permissions(root.join("opaque"), fs::Permissions::from_mode(0o755)).unwrap();
    write(
        &root.join("opaque/old1"),
        "hidden by the opaque dir\n",
        0o644,
    );
    write(&root.join("opaque/sub/old2"), "also hidden\n", 0o644);
    let long_dir = root.join("deep").join("d".repeat(90));
    mkdir(&long_dir, 0o755);
    fs::set_permissions(root.join("deep"), fs::Permissions::from_mode(0o755)).unwrap();
    write(&long_dir.join("f".repeat(120)), "long path\n", 0o644);
    symlink("etc/config", root.join("link-rel")).unwrap();
    symlink("/etc/config", root.join("link-abs")).unwrap();
    symlink("t".repeat(150), root.join("link-long")).unwrap();
    mknod(&root.join("fifo"), rustix::fs::FileType::Fifo, 0o644, 0);
    mknod(
        &root.join("null"),
        rustix::fs::FileType::CharacterDevice,
        0o666,
        rustix::fs::makedev(1, 3),
    );
    write(&root.join("big.bin"), noise(2 << 20, 7), 0o644);
    write(&root.join("zero"), "", 0o644);
    write(&root.join("x-attr"), "has an xattr\n", 0o644);
    xattr(&root.join("x-attr"), "user.imgb.test", b"value");
    write(&root.join("owned"), "uid 1000\n", 0o640);
    std::os::unix::fs::lchown(root.join("owned"), Some(1000), Some(1001)).unwrap();
    write(&root.join("ünïcødé.txt"), "utf-8 name\n", 0o644);
}

/// The second layer, as an overlayfs upper dir: a whiteout, an opaque dir.
fn upper_tree(root: &Path) {
    write(&root.join("added"), "new in layer 2\n", 0o644);
    mkdir(&root.join("etc"), 0o755);
    mknod(
        &root.join("etc/removed"),
        rustix::fs::FileType::CharacterDevice,
        0,
        0,
    );
    mkdir(&root.join("opaque"), 0o755);
    xattr(&root.join("opaque"), "trusted.overlay.opaque", b"y");
    write(&root.join("opaque/new"), "the only entry left\n", 0o644);
}

/// The filesystem the two layers stack up to.
fn expected_tree(root: &Path) {
    base_tree(root);
    fs::remove_file(root.join("etc/removed")).unwrap();
    fs::remove_dir_all(root.join("opaque")).unwrap();
    mkdir(&root.join("opaque"), 0o755);
    write(&root.join("opaque/new"), "the only entry left\n", 0o644);
    write(&root.join("added"), "new in layer 2\n", 0o644);
}

/// What a tree looks like, mtimes aside: per path, type, mode, owner,
/// content or target, device, `user.*` xattrs, and hard-link group.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    let mut paths = Vec::new();
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            paths.push(p);
        }
    }
    paths.sort();
    for p in paths {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let m = fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        use std::os::unix::fs::FileTypeExt;
        let what = if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_symlink() {
            format!("symlink -> {}", fs::read_link(&p).unwrap().display())
        } else if ft.is_file() {
            format!("file {}", Sha256Digest::of(&fs::read(&p).unwrap()))
        } else if ft.is_fifo() {
            "fifo".to_string()
        } else if ft.is_char_device() {
            format!(
                "chardev {}:{}",
                rustix::fs::major(m.rdev()),
                rustix::fs::minor(m.rdev())
            )
        } else {
            "other".to_string()
        };
        let link = if !ft.is_dir() && m.nlink() > 1 {
            let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone());
            format!(" linked-with {first}")
        } else {
            String::new()
        };
        let mut xattrs = String::new();
        if !ft.is_symlink() {
            let mut names = vec![0u8; 4096];
            let n = rustix::fs::llistxattr(&p, &mut names[..]).unwrap_or(0);
            for name in names[..n]
                .split(|b| *b == 0)
                .filter(|s| s.starts_with(b"user."))
            {
                let name = String::from_utf8_lossy(name).into_owned();
                let mut v = vec![0u8; 4096];
                let len = rustix::fs::lgetxattr(&p, name.as_str(), &mut v[..]).unwrap();
                xattrs += &format!(" {name}={}", String::from_utf8_lossy(&v[..len]));
            }
        }
        let mode = if ft.is_symlink() {
            0
        } else {
            m.mode() & 0o7777
        };
        out.insert(
            rel,
            format!(
                "{what} mode={mode:o} owner={}:{}{link}{xattrs}",
                m.uid(),
                m.gid()
            ),
        );
    }
    out
}

fn assert_same_tree(got: &Path, want: &Path) {
    let (got, want) = (snapshot(got), snapshot(want));
    if got != want {
        let mut diff = String::new();
        for k in got
            .keys()
            .chain(want.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            if got.get(k) != want.get(k) {
                diff += &format!(
                    "{k}:\n  got:  {:?}\n  want: {:?}\n",
                    got.get(k),
                    want.get(k)
                );
            }
        }
        panic!("unpacked tree differs from the expected one:\n{diff}");
    }
}

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

const CHILD_ROOT: &str = "IMGB_EXPORT_TEST_STORE";
const CHILD_ROUNDS: &str = "IMGB_EXPORT_TEST_ROUNDS";
const CHILD_SEED: &str = "IMGB_EXPORT_TEST_SEED";

/// Streams layers of a generated 16 MiB file into a store and checks each
/// one. Also the worker of the kill -9 and two-process tests, which run
/// this test binary again with `IMGB_EXPORT_TEST_STORE` set (rounds: env
/// `IMGB_EXPORT_TEST_ROUNDS`, 0 = until killed; `IMGB_EXPORT_TEST_SEED`
/// varies the content).
#[test]
fn store_streams_large_layers_and_verifies_them() {
    let own = tempfile::tempdir().unwrap();
    let root = std::env::var_os(CHILD_ROOT).map_or(own.path().to_path_buf(), PathBuf::from);
    let rounds: u64 = std::env::var(CHILD_ROUNDS)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let seed: u64 = std::env::var(CHILD_SEED)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let store = ContentStore::open(&root).unwrap();
    let content = noise(16 << 20, 42);
    let mut round = 0;
    while rounds == 0 || round < rounds {
        let compression = [Compression::Uncompressed, Compression::Gzip][(round % 2) as usize];
        let mut w = LayerWriter::new(
            &store,
            &LayerOptions {
                compression,
                ..LayerOptions::default()
            },
        )
        .unwrap();
        let entry = imgb::layer::Entry {
            path: "big".into(),
            kind: imgb::layer::EntryKind::File {
                size: content.len() as u64,
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: seed * 1000 + round,
            xattrs: BTreeMap::new(),
        };
        let mut reader = &content[..];
        w.append(&entry, Some(&mut reader)).unwrap();
        let layer = w.finish().unwrap();
        assert_eq!(store.rehash(&layer.digest).unwrap(), layer.digest);
        assert_eq!(layer.diff_size, 512 + content.len() as u64 + 1024);
        store
            .put_bytes(format!("small {round}").as_bytes())
            .unwrap();
        store
            .set_ref(
                &format!("pid{}:r{round}", std::process::id()),
                &layer.digest,
            )
            .unwrap();
        round += 1;
    }
}

fn spawn_worker(root: &Path, rounds: u64, seed: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "export::store_streams_large_layers_and_verifies_them",
            "--test-threads=1",
        ])
        .env(CHILD_ROOT, root)
        .env(CHILD_ROUNDS, rounds.to_string())
        .env(CHILD_SEED, seed.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Every blob hashes to its name and no temp file is left once the store is
/// opened again.
fn assert_consistent(root: &Path) -> ContentStore {
    let store = ContentStore::open(root).unwrap();
    assert_eq!(
        fs::read_dir(root.join("tmp")).unwrap().count(),
        0,
        "temp files cleaned"
    );
    for d in store.blobs().unwrap() {
        assert_eq!(store.rehash(&d).unwrap(), d, "blob {d} is complete");
    }
    store
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tmp_bytes(root: &Path) -> u64 {
    fs::read_dir(root.join("tmp"))
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn kill_9_during_writes_leaves_the_store_consistent_and_prune_verify_repairs() {
    let home = tempfile::tempdir().unwrap();
    let root = home.path();
    // Kill at different moments: mid-first-write, after commits, mid-later-write.
    let blobs_dir = root.join("blobs/sha256");
    let count = || fs::read_dir(&blobs_dir).map(|rd| rd.count()).unwrap_or(0);
    for (round, new_blobs, min_tmp) in [(0, 0, 1 << 20), (1, 2, 0), (2, 3, 4 << 20)] {
        let before = count();
        let mut child = spawn_worker(root, 0, round);
        wait_until(&format!("round {round} progress"), || {
            count() >= before + new_blobs && tmp_bytes(root) >= min_tmp
        });
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        drop(assert_consistent(root));
    }

    // Damage one blob; `imgb prune --verify` finds and removes it, and
    // keeps the good blob that a root refers to.
    let store = assert_consistent(root);
    let blobs = store.blobs().unwrap();
    assert!(blobs.len() >= 3, "{blobs:?}");
    let (bad, good) = (blobs[0], blobs[1]);
    store.add_root("test", &bad).unwrap();
    store.add_root("test", &good).unwrap();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(store.blob_path(&bad))
        .unwrap();
    f.write_all(b"garbage").unwrap();
    drop(f);
    drop(store);
    let out = run_ok(
        Command::new(imgb_bin())
            .arg("--root")
            .arg(root)
            .args(["prune", "--verify"]),
    );
    assert!(out.contains(&format!("corrupt: {bad}")), "{out}");
    assert!(out.contains("verified: 1 corrupt blob found"), "{out}");
    let store = assert_consistent(root);
    assert!(!store.has(&bad));
    assert!(store.has(&good));
    let du = run_ok(Command::new(imgb_bin()).arg("--root").arg(root).arg("du"));
    assert!(
        du.contains("total (") && du.contains("unreferenced"),
        "{du}"
    );
}

#[test]
fn two_processes_writing_the_same_store_never_corrupt_it() {
    let home = tempfile::tempdir().unwrap();
    let mut a = spawn_worker(home.path(), 3, 9);
    let mut b = spawn_worker(home.path(), 3, 9);
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let store = assert_consistent(home.path());
    // Both wrote the same layers (same content): one blob each, all refs kept.
    assert_eq!(store.refs().unwrap().len(), 6);
    let distinct: std::collections::BTreeSet<_> = store.refs().unwrap().into_values().collect();
    assert_eq!(distinct.len(), 3);
    // Prune with refs in place removes only the unreferenced small blobs.
    let report = store.prune(&PruneOptions::default()).unwrap();
    assert_eq!(report.removed.len(), 3);
}
