//! ADD end to end: local archives (made with the system `tar`, `gzip`,
//! `bzip2`, `xz`, `zstd`) extracted into the destination, hostile archives
//! refused, `--unpack=false`, and URL sources served by a tiny HTTP server
//! on 127.0.0.1 (`--checksum`, mode 0600, the cache). Results are read back
//! with umoci.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::built::{has, Built};
use crate::harness::{Context, Imgb};
use crate::world::{require_tool, run_ok, sha256_hex};

fn build_with(imgb: &Imgb, ctx: &Context) -> Built {
    Built::build(imgb, ctx.path(), &[], &[])
}

/// Makes the tree every archive test packs: a file (0640, owner 1234:55),
/// an executable, a nested file, a symlink and a hard link.
fn archive_source(root: &Path) -> PathBuf {
    let src = root.join("archive-src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::write(src.join("top.txt"), "TOP").expect("write");
    std::fs::set_permissions(src.join("top.txt"), std::fs::Permissions::from_mode(0o640))
        .expect("chmod");
    std::fs::write(src.join("run.sh"), "#!/bin/sh").expect("write");
    std::fs::set_permissions(src.join("run.sh"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::fs::write(src.join("sub/inner.txt"), "INNER").expect("write");
    std::os::unix::fs::symlink("top.txt", src.join("link")).expect("symlink");
    std::fs::hard_link(src.join("top.txt"), src.join("sub/hard")).expect("hard link");
    src
}

/// `tar -c` of `src` into `out`, piped through `compressor` (if any).
fn make_archive(src: &Path, out: &Path, compressor: Option<&str>) {
    let tar = require_tool("tar");
    let script = match compressor {
        Some(c) => format!(
            "{} --owner=u:1234 --group=g:55 -cf - -C {} . | {} -c > {}",
            tar.display(),
            src.display(),
            require_tool(c).display(),
            out.display()
        ),
        None => format!(
            "{} --owner=u:1234 --group=g:55 -cf {} -C {} .",
            tar.display(),
            out.display(),
            src.display()
        ),
    };
    run_ok(Command::new("sh").args(["-c", &script]));
}

#[test]
fn local_archives_are_extracted_whatever_their_compression() {
    let ctx = Context::new()
        .file(
            "Dockerfile",
            "FROM scratch\n\
             COPY old.txt /gz/sub/old.txt\n\
             COPY old.txt /gz/top.txt\n\
             ADD archive.bin /plain\n\
             ADD a.tar.gz /gz/\n\
             ADD a.tar.bz2 /bz2/\n\
             ADD a.tar.xz /xz\n\
             ADD a.tar.zst /zst/\n\
             ADD --unpack=false a.tar.gz /kept/\n\
             ADD --chown=7:8 a.tar.gz /owned/\n\
             ADD fake.tar.gz notes.txt /files/\n\
             ADD empty.tar /empty\n",
        )
        .file("old.txt", "OLD")
        .file("notes.txt", "just notes")
        .file("fake.tar.gz", "not really an archive");
    let scratch = tempfile::tempdir().expect("tmp");
    let src = archive_source(scratch.path());
    make_archive(&src, &ctx.join("archive.bin"), None);
    let empty = scratch.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    make_archive(&empty, &ctx.join("empty.tar"), None);
    make_archive(&src, &ctx.join("a.tar.gz"), Some("gzip"));
    make_archive(&src, &ctx.join("a.tar.bz2"), Some("bzip2"));
    make_archive(&src, &ctx.join("a.tar.xz"), Some("xz"));
    make_archive(&src, &ctx.join("a.tar.zst"), Some("zstd"));
    let built = build_with(&Imgb::new(), &ctx);
    built.run.success();
    let tree = built.tree();
    for dir in ["plain", "gz", "bz2", "xz", "zst"] {
        has(&tree, &format!("{dir}/top.txt"), "file 640 1234:55 TOP");
        has(
            &tree,
            &format!("{dir}/run.sh"),
            "file 755 1234:55 #!/bin/sh",
        );
        has(
            &tree,
            &format!("{dir}/sub/inner.txt"),
            "file 644 1234:55 INNER",
        );
        has(&tree, &format!("{dir}/link"), "link 1234:55 -> top.txt");
        has(&tree, &format!("{dir}/sub/hard"), "file 640 1234:55 TOP");
    }
    // Hard links stay hard links.
    let rootfs = built.rootfs();
    let top = std::fs::metadata(rootfs.join("gz/top.txt")).expect("stat");
    let hard = std::fs::metadata(rootfs.join("gz/sub/hard")).expect("stat");
    assert_eq!(
        top.ino(),
        hard.ino(),
        "gz/sub/hard is a hard link of gz/top.txt"
    );
    // Directories merge, files are overwritten.
    has(&tree, "gz/sub/old.txt", "file 644 0:0 OLD");
    // --unpack=false, --chown, and files that are no archives.
    has(&tree, "kept/a.tar.gz", &{
        let bytes = std::fs::read(ctx.join("a.tar.gz")).expect("read");
        format!("file 644 0:0 {}", String::from_utf8_lossy(&bytes))
    });
    has(&tree, "owned/top.txt", "file 640 7:8 TOP");
    has(&tree, "owned/link", "link 7:8 -> top.txt");
    has(
        &tree,
        "files/fake.tar.gz",
        "file 644 0:0 not really an archive",
    );
    has(&tree, "files/notes.txt", "file 644 0:0 just notes");
    has(&tree, "empty", "dir 755 0:0");
}

/// A tar with the given (name, type, link) entries, raw names kept as they
/// are (the `tar` crate's builder would refuse them).
fn hostile_tar(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link) in entries {
        let mut header = tar::Header::new_gnu();
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        let body: &[u8] = if *kind == tar::EntryType::Regular {
            b"pwned"
        } else {
            b""
        };
        header.set_size(body.len() as u64);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn hostile_archives_never_write_outside_the_destination() {
    use tar::EntryType::{Regular, Symlink};
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "dotdot",
            hostile_tar(&[("ok.txt", Regular, ""), ("../../evil.txt", Regular, "")]),
            "../../evil.txt",
        ),
        (
            "nested-dotdot",
            hostile_tar(&[("a/../../evil.txt", Regular, "")]),
            "a/../../evil.txt",
        ),
        (
            "through-symlink",
            hostile_tar(&[("d", Symlink, "/"), ("d/etc/evil.txt", Regular, "")]),
            "d/etc/evil.txt",
        ),
        (
            "climbing-symlink",
            hostile_tar(&[("up", Symlink, "../../..")]),
            "up",
        ),
    ];
    for (name, bytes, entry) in cases {
        let ctx = Context::new()
            .file(
                "Dockerfile",
                "FROM scratch\nCOPY marker /marker\nADD evil.tar /safe/\n",
            )
            .file("marker", "m")
            .file("evil.tar", bytes);
        let built = build_with(&Imgb::new(), &ctx);
        built
            .run
            .exit_code(1)
            .stderr_has("Dockerfile:3")
            .stderr_has(entry)
            .stderr_has("evil.tar");
        assert!(
            built.layout().read_dir().is_err(),
            "{name}: no output after a refused archive"
        );
    }
    // A symlink already in the image that leads out of the destination is
    // not followed either (Docker would follow it inside the image root).
    let ctx = Context::new()
        .file(
            "Dockerfile",
            "FROM scratch\nCOPY tree/ /safe/\nADD evil.tar /safe/\n",
        )
        .symlink("tree/d", "/etc")
        .file("evil.tar", hostile_tar(&[("d/passwd", Regular, "")]));
    let built = build_with(&Imgb::new(), &ctx);
    built
        .run
        .exit_code(1)
        .stderr_has("Dockerfile:3")
        .stderr_has("d/passwd")
        .stderr_has("symlink");
    // An absolute entry name is confined to the destination (as moby does).
    let ctx = Context::new()
        .file("Dockerfile", "FROM scratch\nADD abs.tar /safe/\n")
        .file(
            "abs.tar",
            hostile_tar(&[
                ("/etc/abs.txt", Regular, ""),
                ("/", tar::EntryType::Directory, ""),
            ]),
        );
    let built = build_with(&Imgb::new(), &ctx);
    built.run.success();
    let tree = built.tree();
    has(&tree, "safe/etc/abs.txt", "file 644 0:0 pwned");
    assert!(!tree.contains_key("etc"), "{tree:#?}");
}

/// A tiny HTTP/1.1 server on 127.0.0.1: `files` by path, with a
/// `Last-Modified` header; counts the requests it answers.
struct Server {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Server {
    fn start(files: Vec<(&'static str, Vec<u8>)>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok() && line.trim() != "" {
                    line.clear();
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let response = match files.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(body);
                        r
                    }
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = stream.write_all(&response);
            }
        });
        Server { port, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

#[test]
fn urls_are_downloaded_0600_and_extracted_only_with_unpack() {
    let scratch = tempfile::tempdir().expect("tmp");
    let src = archive_source(scratch.path());
    let tgz = scratch.path().join("a.tar.gz");
    make_archive(&src, &tgz, Some("gzip"));
    let tgz = std::fs::read(&tgz).expect("read");
    let server = Server::start(vec![
        ("/files/tool.sh", b"echo tool".to_vec()),
        ("/files/a.tar.gz", tgz.clone()),
    ]);
    let ctx = Context::new().file(
        "Dockerfile",
        format!(
            "FROM scratch\n\
             ADD {tool} /opt/\n\
             ADD --chmod=755 --chown=3:4 {tool} /bin/renamed\n\
             ADD {tgz_url} /kept/\n\
             ADD --unpack=true {tgz_url} /unpacked/\n",
            tool = server.url("/files/tool.sh"),
            tgz_url = server.url("/files/a.tar.gz"),
        ),
    );
    let built = build_with(&Imgb::new(), &ctx);
    built.run.success();
    let tree = built.tree();
    has(&tree, "opt/tool.sh", "file 600 0:0 echo tool");
    has(&tree, "bin/renamed", "file 755 3:4 echo tool");
    has(
        &tree,
        "kept/a.tar.gz",
        &format!("file 600 0:0 {}", String::from_utf8_lossy(&tgz)),
    );
    has(&tree, "unpacked/top.txt", "file 640 1234:55 TOP");
    has(&tree, "unpacked/link", "link 1234:55 -> top.txt");
    // imgb difference (README): Last-Modified is not the layer's mtime;
    // files get SOURCE_DATE_EPOCH, 0 when unset.
    let rootfs = built.rootfs();
    let meta = std::fs::metadata(rootfs.join("opt/tool.sh")).expect("stat");
    assert_eq!(meta.mtime(), 0);
}

#[test]
fn checksums_are_verified_and_make_the_cache_skip_the_download() {
    let body = b"payload v1".to_vec();
    let good = format!("sha256:{}", sha256_hex(&body));
    let server = Server::start(vec![("/p.bin", body)]);
    let url = server.url("/p.bin");
    let imgb = Imgb::new();
    let ctx = Context::new().file(
        "Dockerfile",
        format!("FROM scratch\nADD --checksum={good} {url} /p.bin\n"),
    );
    let first = build_with(&imgb, &ctx);
    first.run.success();
    has(&first.tree(), "p.bin", "file 600 0:0 payload v1");
    let hits = server.hits();
    assert_eq!(hits, 1, "one download");
    let again = build_with(&imgb, &ctx);
    again.run.success().stderr_has("CACHED");
    assert_eq!(
        server.hits(),
        hits,
        "a cache hit with --checksum downloads nothing"
    );

    // Without --checksum, every build downloads to know the content.
    let ctx = Context::new().file("Dockerfile", format!("FROM scratch\nADD {url} /p.bin\n"));
    build_with(&imgb, &ctx).run.success();
    let before = server.hits();
    build_with(&imgb, &ctx).run.success().stderr_has("CACHED");
    assert_eq!(server.hits(), before + 1);

    // A wrong checksum fails the step, naming the URL and both digests.
    let bad = format!("sha256:{}", "0".repeat(64));
    let ctx = Context::new().file(
        "Dockerfile",
        format!("FROM scratch\nADD --checksum={bad} {url} /p.bin\n"),
    );
    let failed = build_with(&Imgb::new(), &ctx);
    failed
        .run
        .exit_code(1)
        .stderr_has("Dockerfile:2")
        .stderr_has(&url)
        .stderr_has(&bad)
        .stderr_has(&good);
    assert!(failed.layout().read_dir().is_err(), "nothing written");
}

#[test]
fn missing_urls_and_git_sources_fail_clearly() {
    let server = Server::start(vec![]);
    let url = server.url("/nothing");
    let ctx = Context::new().file("Dockerfile", format!("FROM scratch\nADD {url} /x\n"));
    build_with(&Imgb::new(), &ctx)
        .run
        .exit_code(1)
        .stderr_has(&url)
        .stderr_has("404");
    let ctx = Context::new()
        .file(
            "Dockerfile",
            format!(
                "FROM scratch\nADD --checksum=sha256:{} local.txt /x\n",
                "a".repeat(64)
            ),
        )
        .file("local.txt", "x");
    build_with(&Imgb::new(), &ctx)
        .run
        .exit_code(1)
        .stderr_has("--checksum")
        .stderr_has("local.txt");
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM scratch\nADD https://example.invalid/repo.git /src\n",
    );
    build_with(&Imgb::new(), &ctx)
        .run
        .exit_code(1)
        .stderr_has("git")
        .stderr_has("Dockerfile:2");
}

#[test]
fn the_same_archive_gives_the_same_layer_whatever_its_compression() {
    let scratch = tempfile::tempdir().expect("tmp");
    let src = archive_source(scratch.path());
    let imgb = Imgb::new();
    let mut diff_ids = Vec::new();
    for (name, compressor) in [
        ("a.tar", None),
        ("a.tar.gz", Some("gzip")),
        ("a.tar.xz", Some("xz")),
    ] {
        let ctx = Context::new().file("Dockerfile", format!("FROM scratch\nADD {name} /x/\n"));
        make_archive(&src, &ctx.join(name), compressor);
        let built = build_with(&imgb, &ctx);
        built.run.success();
        let config: serde_json::Value = serde_json::from_str(&run_ok(
            Command::new(require_tool("skopeo"))
                .args(["inspect", "--config"])
                .arg(format!("oci:{}:t", built.layout().display())),
        ))
        .expect("config JSON");
        diff_ids.push(config["rootfs"]["diff_ids"].clone());
    }
    assert_eq!(diff_ids[0].as_array().map(Vec::len), Some(1));
    assert_eq!(diff_ids[0], diff_ids[1], "gzip");
    assert_eq!(diff_ids[0], diff_ids[2], "xz");
}
