//! Benchmark (not a test): layer compression throughput and ratio, imgb's
//! `LayerWriter` (tar + sha256 + compressor + sha256 + blob file) against
//! `gzip -6` / `zstd -3` over the same bytes (the uncompressed tar imgb
//! wrote). `IMGB_BENCH_MB` of mixed content (default 64: 60% text, 25%
//! random, 15% half zeros) in a few large files.
//!
//! `cargo bench --bench compress`.

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::{bench_dir, env_usize, listing, ms, noise, text, time_n};
use imgb::layer::{Compression, Entry, EntryKind, LayerOptions, LayerWriter};
use imgb::store::ContentStore;

fn main() {
    if listing() {
        return;
    }
    let mb = env_usize("IMGB_BENCH_MB", 64);
    let (base, _guard) = bench_dir();
    let chunk = 4 << 20;
    let files: Vec<Vec<u8>> = (0..(mb << 20) / chunk)
        .map(|i| match i % 20 {
            0..=11 => text(chunk, i as u64),
            12..=16 => noise(chunk, i as u64),
            _ => {
                let mut v = noise(chunk / 2, i as u64);
                v.resize(chunk, 0);
                v
            }
        })
        .collect();
    let write = |store: &ContentStore, compression, level| {
        let opts = LayerOptions {
            compression,
            level,
            ..LayerOptions::default()
        };
        let mut w = LayerWriter::new(store, &opts).unwrap();
        for (i, data) in files.iter().enumerate() {
            let entry = Entry {
                path: format!("data/f{i:03}").into(),
                kind: EntryKind::File {
                    size: data.len() as u64,
                },
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
                xattrs: Default::default(),
            };
            w.append(&entry, Some(&mut data.as_slice())).unwrap();
        }
        w.finish().unwrap()
    };
    let store_dir = base.join("compress-store");
    let _ = fs::remove_dir_all(&store_dir);
    let store = ContentStore::open(&store_dir).unwrap();
    let tar = write(&store, Compression::Uncompressed, None);
    let tar_path = store.blob_path(&tar.digest);
    let input_mb = tar.size as f64 / 1e6;
    println!("input: uncompressed tar of {input_mb:.1} MB");
    let report = |label: &str, best: Duration, median: Duration, size: u64| {
        println!(
            "{label:<24} best {:>8.1} ms ({:>5.0} MB/s), median {:>8.1} ms, ratio {:.3}",
            ms(best),
            input_mb / best.as_secs_f64(),
            ms(median),
            size as f64 / tar.size as f64
        );
    };
    let cases = [
        ("imgb uncompressed", Compression::Uncompressed, None),
        ("imgb gzip 1", Compression::Gzip, Some(1)),
        ("imgb gzip 2 (default)", Compression::Gzip, None),
        ("imgb gzip 6", Compression::Gzip, Some(6)),
        ("imgb zstd 3", Compression::Zstd, None),
    ];
    for (label, compression, level) in cases {
        let mut size = 0;
        // Each sample writes into a store of its own: in one store, the
        // second write of the same layer would copy the gzip chunks the
        // first recorded (IMGB_HOME/gzip-chunks) instead of compressing.
        let mut sample = 0;
        let (best, median) = time_n(3, || {
            sample += 1;
            let dir = store_dir.join(format!("{label}-{sample}"));
            size = write(&ContentStore::open(&dir).unwrap(), compression, level).size;
        });
        report(label, best, median, size);
        for n in 1..=sample {
            let _ = fs::remove_dir_all(store_dir.join(format!("{label}-{n}")));
        }
    }
    for (label, cmd) in [("gzip -6", "gzip -6 -c"), ("zstd -3", "zstd -q -3 -c")] {
        let out = base.join("compress-cli.out");
        let shell = format!("{cmd} < '{}' > '{}'", tar_path.display(), out.display());
        let (best, median) = time_n(3, || {
            assert!(Command::new("sh")
                .arg("-c")
                .arg(&shell)
                .status()
                .unwrap()
                .success());
        });
        report(label, best, median, fs::metadata(&out).unwrap().len());
        let _ = fs::remove_file(&out);
    }
    let _ = fs::remove_dir_all(&store_dir);
}
