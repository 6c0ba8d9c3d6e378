//! Trees on disk for the export tests: the first layer's tree, the second
//! layer's overlay upper dir, the tree they stack up to, and a snapshot of a
//! tree (mtimes aside) to compare an unpacked rootfs with.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use imgb::digest::Sha256Digest;

fn xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setxattr {name} on {}: {e}", path.display()));
}

pub fn mknod(path: &Path, kind: rustix::fs::FileType, mode: u32, dev: u64) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        kind,
        rustix::fs::Mode::from_raw_mode(mode),
        dev,
    )
    .unwrap_or_else(|e| panic!("mknod {} (tests run as root): {e}", path.display()));
}

pub fn write(path: &Path, bytes: impl AsRef<[u8]>, mode: u32) {
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub fn mkdir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Deterministic pseudo-random bytes (xorshift), compressible only a little.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
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
pub fn base_tree(root: &Path) {
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
pub fn upper_tree(root: &Path) {
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
pub fn expected_tree(root: &Path) {
    base_tree(root);
    fs::remove_file(root.join("etc/removed")).unwrap();
    fs::remove_dir_all(root.join("opaque")).unwrap();
    mkdir(&root.join("opaque"), 0o755);
    write(&root.join("opaque/new"), "the only entry left\n", 0o644);
    write(&root.join("added"), "new in layer 2\n", 0o644);
}

/// What a tree looks like, mtimes aside: per path, type, mode, owner,
/// content or target, device, `user.*` xattrs, and hard-link group.
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
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

pub fn assert_same_tree(got: &Path, want: &Path) {
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
