//! Helpers shared by the micro-benchmarks: deterministic content (the same
//! bytes every run) and timing a closure several times.

#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Incompressible bytes from a xorshift generator seeded with `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Text-like bytes: words from a small vocabulary (compresses like source).
pub fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "layer", "image", "build", "cache", "store", "digest", "tar", "gzip", "manifest", "config",
        "the", "a", "of", "to", "and", "fn", "return", "if", "else", "let", "{", "}", "\n", "self",
        "match", "Some", "None", "Ok", "Err", "impl", "pub", "use", "=>", "(", ")", ";",
    ];
    let r = noise(len / 3 + 1, seed);
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

/// Runs `f` `n` times; returns (best, median).
pub fn time_n(n: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[0], times[times.len() / 2])
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `cargo test --benches` runs bench binaries with `--list`; answer nothing.
pub fn listing() -> bool {
    std::env::args().any(|a| a == "--list")
}

/// Where a benchmark writes: `IMGB_BENCH_DIR` (prefer a journaled ext4
/// volume, see bench/README.md) or a temp dir kept alive by the guard.
pub fn bench_dir() -> (std::path::PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("IMGB_BENCH_DIR") {
        Some(d) => (std::path::PathBuf::from(d), None),
        None => {
            let t = tempfile::tempdir().expect("a temp dir");
            (t.path().to_path_buf(), Some(t))
        }
    }
}

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
