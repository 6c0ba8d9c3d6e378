//! Benchmark (not a test): the build context's content checksum, the work a
//! `COPY . .` does before it can look up the cache. A generated context of
//! `IMGB_BENCH_FILES` files (default 20,000, ~10 KB each) in
//! `IMGB_BENCH_DIR` (default a temp dir):
//! - walk: `BuildContext::open` + `select(".")` (directory walk, ignore rules);
//! - cold: `checksum` with an empty `HashIndex` (reads and hashes every file);
//! - warm: `checksum` with the index a previous build saved (the no-op path:
//!   stat only), including loading the index file;
//! - the floor for cold: `tar -c | sha256sum` over the same files.
//!
//! `cargo bench --bench checksum`.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{bench_dir, env_usize, listing, ms, noise, text, time_n};
use imgb::context::{checksum, BuildContext, HashIndex};

fn make_context(root: &Path, files: usize) -> u64 {
    let mut total = 0u64;
    for i in 0..files {
        let dir = root.join(format!("d{}/s{}", i % 40, (i / 40) % 25));
        fs::create_dir_all(&dir).unwrap();
        let size = 512 + (i * 2_654_435_761) % 20_480;
        let data = if i % 10 < 7 {
            text(size, i as u64)
        } else {
            noise(size, i as u64)
        };
        total += data.len() as u64;
        fs::write(dir.join(format!("f{i}")), data).unwrap();
    }
    // Excluded files must not be read.
    fs::create_dir_all(root.join("node_modules/x")).unwrap();
    for i in 0..1000 {
        fs::write(root.join(format!("node_modules/x/m{i}.js")), text(4096, i)).unwrap();
    }
    fs::write(root.join(".dockerignore"), "node_modules\n").unwrap();
    total
}

fn main() {
    if listing() {
        return;
    }
    let files = env_usize("IMGB_BENCH_FILES", 20_000);
    let (base, _guard) = bench_dir();
    let root = base.join(format!("checksum-ctx-{files}"));
    let marker = base.join(format!("checksum-ctx-{files}.complete"));
    if !marker.exists() {
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let total = make_context(&root, files);
        fs::write(&marker, total.to_string()).unwrap();
    }
    let total: u64 = fs::read_to_string(&marker).unwrap().parse().unwrap();
    let mb = total as f64 / 1e6;
    let index_file = base.join("checksum-index");
    // Read everything once so the page cache holds the files for every run.
    let warm = format!("tar -cf - -C '{}' . | cat > /dev/null", root.display());
    assert!(Command::new("sh")
        .arg("-c")
        .arg(&warm)
        .status()
        .unwrap()
        .success());

    let ctx = BuildContext::open(&root, None).unwrap();
    let (best, median) = time_n(5, || {
        let ctx = BuildContext::open(&root, None).unwrap();
        let sel = ctx.select(".").unwrap();
        assert!(sel[0].entries.len() > files);
    });
    println!(
        "walk   {files} files: best {:.1} ms, median {:.1} ms",
        ms(best),
        ms(median)
    );
    let entries = ctx.select(".").unwrap().remove(0).entries;

    let mut digest = None;
    let (best, median) = time_n(3, || {
        let mut index = HashIndex::new();
        let d = checksum(&ctx, &entries, &mut index).unwrap();
        assert_eq!(index.hashed_files as usize, files + 1);
        index.save(&index_file).unwrap();
        digest = Some(d);
    });
    println!(
        "cold   {mb:.0} MB: best {:.1} ms ({:.0} MB/s), median {:.1} ms",
        ms(best),
        mb / best.as_secs_f64(),
        ms(median)
    );
    let (best, median) = time_n(5, || {
        let mut index = HashIndex::load(&index_file);
        let d = checksum(&ctx, &entries, &mut index).unwrap();
        assert_eq!(index.hashed_files, 0, "the warm path must not read files");
        assert_eq!(Some(d), digest);
    });
    println!(
        "warm   (index load + stat only): best {:.1} ms, median {:.1} ms",
        ms(best),
        ms(median)
    );
    let floor = format!(
        "tar -cf - -C '{}' . | sha256sum > /dev/null",
        root.display()
    );
    let (best, median) = time_n(3, || {
        assert!(Command::new("sh")
            .arg("-c")
            .arg(&floor)
            .status()
            .unwrap()
            .success());
    });
    println!(
        "floor  tar -c | sha256sum: best {:.1} ms, median {:.1} ms",
        ms(best),
        ms(median)
    );
}
