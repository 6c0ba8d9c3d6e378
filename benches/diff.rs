//! Benchmark (not a test): turning a RUN's overlayfs upper directory into a
//! layer, the diff imgb takes after every RUN (`LayerWriter::append_tree`
//! with `overlay_upper`: 0/0 character devices become whiteouts, opaque
//! directories an opaque marker). The upper dir has `IMGB_BENCH_FILES`
//! new files (default 5,000, like a package install), 500 whiteouts and 20
//! opaque directories; timed uncompressed (the diff alone) and with gzip.
//!
//! Needs root (mknod, trusted.* xattrs), as RUN does. `cargo bench --bench diff`.

mod common;

use std::fs;
use std::path::Path;

use common::{bench_dir, env_usize, listing, ms, noise, text, time_n};
use imgb::layer::{Compression, LayerOptions, LayerWriter, TreeOptions};
use imgb::store::ContentStore;
use rustix::fs::{mknodat, setxattr, FileType, Mode, XattrFlags, CWD};

fn make_upper(root: &Path, files: usize) -> u64 {
    let mut total = 0;
    for i in 0..files {
        let dir = root.join(format!("usr/lib/pkg{}/m{}", i % 50, i % 7));
        fs::create_dir_all(&dir).unwrap();
        let size = 256 + (i * 7919) % 12_000;
        let data = if i % 4 == 0 {
            noise(size, i as u64)
        } else {
            text(size, i as u64)
        };
        total += data.len() as u64;
        fs::write(dir.join(format!("f{i}.py")), data).unwrap();
    }
    fs::create_dir_all(root.join("var/cache/apt")).unwrap();
    for i in 0..500 {
        // A whiteout, as overlayfs writes it for a deleted lower file.
        let p = root.join(format!("var/cache/apt/old{i}.bin"));
        mknodat(
            CWD,
            &p,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0),
            0,
        )
        .unwrap();
    }
    for i in 0..20 {
        let d = root.join(format!("etc/replaced{i}"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("conf"), text(300, i)).unwrap();
        setxattr(&d, "trusted.overlay.opaque", b"y", XattrFlags::empty()).unwrap();
    }
    total
}

fn main() {
    if listing() {
        return;
    }
    let files = env_usize("IMGB_BENCH_FILES", 5_000);
    let (base, _guard) = bench_dir();
    let upper = base.join(format!("diff-upper-{files}"));
    let _ = fs::remove_dir_all(&upper);
    fs::create_dir_all(&upper).unwrap();
    let mb = make_upper(&upper, files) as f64 / 1e6;
    let opts = TreeOptions {
        overlay_upper: true,
        ..TreeOptions::default()
    };
    for compression in [Compression::Uncompressed, Compression::Gzip] {
        let store_dir = base.join(format!("diff-store-{}", compression.name()));
        let _ = fs::remove_dir_all(&store_dir);
        let layer_opts = LayerOptions {
            compression,
            ..LayerOptions::default()
        };
        let mut size = 0;
        // A store per sample: in one store, a repeated gzip layer would copy
        // the chunks the first sample recorded instead of compressing.
        let mut sample = 0;
        let (best, median) = time_n(5, || {
            sample += 1;
            let store = ContentStore::open(&store_dir.join(sample.to_string())).unwrap();
            let mut w = LayerWriter::new(&store, &layer_opts).unwrap();
            w.append_tree(&upper, &opts).unwrap();
            size = w.finish().unwrap().size;
        });
        println!(
            "diff {files} files + 520 whiteouts/opaque dirs ({mb:.1} MB), {}: best {:.1} ms, median {:.1} ms, layer {:.1} MB",
            compression.name(),
            ms(best),
            ms(median),
            size as f64 / 1e6
        );
        let _ = fs::remove_dir_all(&store_dir);
    }
    let _ = fs::remove_dir_all(&upper);
}
