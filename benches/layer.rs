//! Benchmark (not a test): writing one layer of a ~1 GB mixed tree with
//! imgb's `LayerWriter` (gzip at level 6, not the default 2, to compare with
//! `gzip -6`; zstd 3; uncompressed) against `tar -c | gzip -6`, with
//! wall time, output size and peak memory (max RSS, from GNU time) of each.
//!
//! `cargo bench --bench layer`. Environment:
//! - `IMGB_BENCH_DIR`: where the tree and outputs go (default: a temp dir).
//!   Prefer a dedicated journaled ext4 volume (see shared ENVIRONMENT.md).
//! - `IMGB_BENCH_MB`: tree size in MB (default 1000).
//!
//! The binary re-runs itself (`--child-write DIR STORE COMPRESSION`) so the
//! writer's peak memory is measured alone.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use imgb::layer::{Compression, LayerOptions, LayerWriter, TreeOptions};
use imgb::store::ContentStore;

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

/// Text-like data: words from a small vocabulary, mildly random.
fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "layer", "image", "build", "cache", "store", "digest", "tar", "gzip", "manifest", "config",
        "the", "a", "of", "to", "and", "func", "return", "if", "else", "let", "{", "}", "\n",
    ];
    let r = noise(len / 4 + 1, seed);
    let mut out = Vec::with_capacity(len + 16);
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(WORDS[r[i % r.len()] as usize % WORDS.len()].as_bytes());
        out.push(b' ');
        i += 1;
    }
    out.truncate(len);
    out
}

/// A mixed tree of about `mb` MB: 20% incompressible, 40% text, 30%
/// half-random binaries, 10% small files; plus symlinks and nesting.
fn make_tree(root: &Path, mb: usize) {
    let total = mb << 20;
    let mut seed = 1u64;
    let put = |dir: &str, name: String, data: Vec<u8>| {
        let d = root.join(dir);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(name), data).unwrap();
    };
    for i in 0..(total / 5 / (10 << 20)).max(1) {
        seed += 1;
        put("random", format!("blob{i}.bin"), noise(10 << 20, seed));
    }
    for i in 0..(total * 2 / 5 / (100 << 10)).max(1) {
        seed += 1;
        put(
            &format!("src/m{}", i % 40),
            format!("file{i}.txt"),
            text(100 << 10, seed),
        );
    }
    for i in 0..(total * 3 / 10 / (1 << 20)).max(1) {
        seed += 1;
        let mut data = noise(512 << 10, seed);
        data.extend(std::iter::repeat_n(0u8, 512 << 10));
        put(&format!("lib/l{}", i % 10), format!("lib{i}.so"), data);
    }
    for i in 0..(total / 10 / (5 << 10)).max(1) {
        seed += 1;
        let len = 1024 + (i * 37 % 7) * 1024;
        put(
            &format!("small/s{}/t{}", i % 50, i % 7),
            format!("f{i}"),
            text(len, seed),
        );
    }
    for i in 0..1000 {
        let _ = std::os::unix::fs::symlink(format!("../src/m0/file{i}.txt"), {
            fs::create_dir_all(root.join("links")).unwrap();
            root.join(format!("links/l{i}"))
        });
    }
}

fn child_write(dir: &Path, store: &Path, compression: &str) {
    let store = ContentStore::open(store).unwrap();
    let compression: Compression = compression.parse().unwrap();
    let opts = LayerOptions {
        compression,
        level: (compression == Compression::Gzip).then_some(6),
        ..LayerOptions::default()
    };
    let mut w = LayerWriter::new(&store, &opts).unwrap();
    w.append_tree(dir, &TreeOptions::default()).unwrap();
    let layer = w.finish().unwrap();
    println!("{} {} {}", layer.digest, layer.size, layer.diff_size);
}

/// Runs `cmd` under GNU time; returns (seconds, max RSS KiB, stdout).
fn timed(cmd: &[&str]) -> (f64, u64, String) {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "TIME %e %M"])
        .args(cmd)
        .output()
        .expect("GNU time (/usr/bin/time) is needed for this benchmark");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().rev().find(|l| l.starts_with("TIME ")).unwrap();
    let mut parts = line.split_whitespace().skip(1);
    let secs: f64 = parts.next().unwrap().parse().unwrap();
    let rss: u64 = parts.next().unwrap().parse().unwrap();
    (secs, rss, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn warm(dir: &Path) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -cf - -C '{}' . | cat > /dev/null",
            dir.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 5 && args[1] == "--child-write" {
        child_write(Path::new(&args[2]), Path::new(&args[3]), &args[4]);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return; // cargo test --benches asks for a list; nothing to list.
    }
    let mb: usize = std::env::var("IMGB_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let _tmp;
    let base: PathBuf = match std::env::var_os("IMGB_BENCH_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            _tmp = tempfile::tempdir().unwrap();
            _tmp.path().to_path_buf()
        }
    };
    let tree = base.join("tree");
    if !tree.join(".complete").exists() {
        eprintln!("making a {mb} MB tree in {} ...", tree.display());
        let _ = fs::remove_dir_all(&tree);
        make_tree(&tree, mb);
        fs::write(tree.join(".complete"), b"").unwrap();
    }
    let me = std::env::current_exe().unwrap();
    let me = me.to_str().unwrap();
    let tree_s = tree.to_str().unwrap();
    let mut report = Vec::new();
    for compression in ["gzip", "zstd", "uncompressed"] {
        let store = base.join(format!("store-{compression}"));
        let _ = fs::remove_dir_all(&store);
        warm(&tree);
        let (secs, rss, out) = timed(&[
            me,
            "--child-write",
            tree_s,
            store.to_str().unwrap(),
            compression,
        ]);
        let size: u64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
        report.push((format!("imgb LayerWriter {compression}"), secs, rss, size));
        let _ = fs::remove_dir_all(&store);
    }
    let out = base.join("tar-gzip.tgz");
    warm(&tree);
    let (secs, rss, _) = timed(&[
        "sh",
        "-c",
        &format!("tar -cf - -C '{tree_s}' . | gzip -6 > '{}'", out.display()),
    ]);
    let size = fs::metadata(&out).unwrap().len();
    report.push(("tar -c | gzip -6".to_string(), secs, rss, size));
    let _ = fs::remove_file(&out);

    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "{:<32} {:>9} {:>12} {:>14}",
        "writer", "seconds", "max RSS MiB", "output MB"
    )
    .unwrap();
    for (name, secs, rss, size) in &report {
        writeln!(
            stdout,
            "{name:<32} {secs:>9.2} {:>12.1} {:>14.1}",
            *rss as f64 / 1024.0,
            *size as f64 / 1e6
        )
        .unwrap();
    }
    let (ours, theirs) = (report[0].1, report[3].1);
    writeln!(
        stdout,
        "time ratio imgb gzip / (tar | gzip -6): {:.2}",
        ours / theirs
    )
    .unwrap();
    writeln!(
        stdout,
        "size ratio: {:.4}",
        report[0].3 as f64 / report[3].3 as f64
    )
    .unwrap();
}
