//! Unit tests of the layer writer: written layers are read back with the
//! `tar` crate (an independent reader) and GNU tar's format rules.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};

use super::*;

fn store() -> (tempfile::TempDir, ContentStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = ContentStore::open(dir.path()).unwrap();
    (dir, s)
}

/// (path, type byte, size, link name, mtime, uid, pax xattrs) of every entry.
type Seen = (String, u8, u64, String, u64, u64, Vec<(String, Vec<u8>)>);

fn read_entries(store: &ContentStore, layer: &Layer) -> Vec<Seen> {
    let file = store.open_blob(&layer.digest).unwrap();
    let reader: Box<dyn Read> = match layer.media_type.as_str() {
        m if m.ends_with("gzip") => Box::new(flate2::read::GzDecoder::new(file)),
        m if m.ends_with("zstd") => Box::new(zstd::stream::read::Decoder::new(file).unwrap()),
        _ => Box::new(file),
    };
    let mut hashing = crate::digest::HashingReader::new(reader);
    let mut out = Vec::new();
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let mut xattrs = Vec::new();
            if let Some(ext) = e.pax_extensions().unwrap() {
                for r in ext {
                    let r = r.unwrap();
                    if let Some(k) = r.key().unwrap().strip_prefix("SCHILY.xattr.") {
                        xattrs.push((k.to_string(), r.value_bytes().to_vec()));
                    }
                }
            }
            let h = e.header().clone();
            assert!(h.username_bytes().unwrap_or_default().is_empty());
            out.push((
                String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                h.entry_type().as_byte(),
                e.size(),
                e.link_name_bytes()
                    .map(|l| String::from_utf8(l.into_owned()).unwrap())
                    .unwrap_or_default(),
                h.mtime().unwrap(),
                h.uid().unwrap(),
                xattrs,
            ));
            std::io::copy(&mut e, &mut std::io::sink()).unwrap();
        }
    }
    std::io::copy(&mut hashing, &mut std::io::sink()).unwrap();
    let (_, diff_id, size) = hashing.finish();
    assert_eq!(diff_id, layer.diff_id, "diff id is the uncompressed digest");
    assert_eq!(size, layer.diff_size);
    out
}

fn sample_tree(root: &Path) {
    fs::create_dir_all(root.join("b/sub")).unwrap();
    fs::write(root.join("a.txt"), b"hello").unwrap();
    fs::write(root.join("b/sub/z"), vec![7u8; 1000]).unwrap();
    fs::hard_link(root.join("a.txt"), root.join("b/link")).unwrap();
    symlink("../a.txt", root.join("b/sym")).unwrap();
    let long = "l".repeat(120);
    fs::write(root.join(&long), b"long").unwrap();
    fs::set_permissions(root.join("a.txt"), fs::Permissions::from_mode(0o4755)).unwrap();
}

#[test]
fn tree_is_written_sorted_with_links_and_long_names() {
    let (_d, s) = store();
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let mut w = LayerWriter::new(&s, &LayerOptions::default()).unwrap();
    w.append_tree(src.path(), &TreeOptions::default()).unwrap();
    let layer = w.finish().unwrap();
    assert_eq!(
        layer.media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(s.size(&layer.digest).unwrap(), layer.size);
    let seen = read_entries(&s, &layer);
    let names: Vec<&str> = seen.iter().map(|e| e.0.as_str()).collect();
    let long = "l".repeat(120);
    assert_eq!(
        names,
        vec![
            "a.txt",
            "b/",
            "b/link",
            "b/sub/",
            "b/sub/z",
            "b/sym",
            long.as_str()
        ]
    );
    assert_eq!(seen[2].1, b'1');
    assert_eq!(seen[2].3, "a.txt");
    assert_eq!(seen[5].1, b'2');
    assert_eq!(seen[5].3, "../a.txt");
    assert_eq!(seen[4].2, 1000);
}

#[test]
fn mtimes_are_clamped_to_source_date_epoch() {
    let (_d, s) = store();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("f"), b"x").unwrap();
    let opts = LayerOptions {
        source_date_epoch: Some(1_000_000),
        ..LayerOptions::default()
    };
    let mut w = LayerWriter::new(&s, &opts).unwrap();
    w.append_tree(src.path(), &TreeOptions::default()).unwrap();
    let layer = w.finish().unwrap();
    assert_eq!(read_entries(&s, &layer)[0].4, 1_000_000);
}

#[test]
fn whiteouts_and_opaque_markers_follow_the_oci_names() {
    let (_d, s) = store();
    let mut w = LayerWriter::new(
        &s,
        &LayerOptions {
            compression: Compression::Zstd,
            ..LayerOptions::default()
        },
    )
    .unwrap();
    let dir = Entry {
        path: "etc".into(),
        kind: EntryKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: 5,
        xattrs: BTreeMap::new(),
    };
    w.append(&dir, None).unwrap();
    w.append_opaque(Path::new("etc")).unwrap();
    w.append_whiteout(Path::new("etc/gone")).unwrap();
    let layer = w.finish().unwrap();
    assert!(layer.media_type.ends_with("+zstd"));
    let names: Vec<String> = read_entries(&s, &layer).into_iter().map(|e| e.0).collect();
    assert_eq!(names, vec!["etc/", "etc/.wh..wh..opq", "etc/.wh.gone"]);
}

#[test]
fn out_of_order_and_unsafe_paths_are_refused() {
    let (_d, s) = store();
    let mut w = LayerWriter::new(&s, &LayerOptions::default()).unwrap();
    let e = |p: &str| Entry {
        path: p.into(),
        kind: EntryKind::Fifo,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        xattrs: BTreeMap::new(),
    };
    w.append(&e("b"), None).unwrap();
    assert!(matches!(
        w.append(&e("a"), None),
        Err(LayerError::OutOfOrder { .. })
    ));
    assert!(matches!(
        w.append(&e("b"), None),
        Err(LayerError::OutOfOrder { .. })
    ));
    for bad in ["/abs", "../up", "c/../d", "c//d", "c/."] {
        assert!(
            matches!(w.append(&e(bad), None), Err(LayerError::InvalidPath { .. })),
            "{bad}"
        );
    }
}

#[test]
fn entry_order_puts_parents_first_and_the_opaque_marker_before_siblings() {
    let mut paths: Vec<PathBuf> = ["a-b", "a/b", "a", "a/.wh..wh..opq", "a/-", "a/.wh.x"]
        .iter()
        .map(PathBuf::from)
        .collect();
    paths.sort_by(|a, b| entry_order(a, b));
    let got: Vec<_> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(
        got,
        vec!["a", "a/.wh..wh..opq", "a/-", "a/.wh.x", "a/b", "a-b"]
    );
}

#[test]
fn a_short_file_is_reported_not_padded() {
    let (_d, s) = store();
    let mut w = LayerWriter::new(&s, &LayerOptions::default()).unwrap();
    let entry = Entry {
        path: "f".into(),
        kind: EntryKind::File { size: 10 },
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        xattrs: BTreeMap::new(),
    };
    let mut short: &[u8] = b"abc";
    assert!(matches!(
        w.append(&entry, Some(&mut short)),
        Err(LayerError::FileChanged {
            expected: 10,
            found: 3,
            ..
        })
    ));
}

#[test]
fn xattrs_are_written_as_pax_records() {
    let (_d, s) = store();
    let src = tempfile::tempdir().unwrap();
    let f = src.path().join("f");
    fs::write(&f, b"x").unwrap();
    rustix::fs::lsetxattr(&f, "user.imgb", b"v1", rustix::fs::XattrFlags::empty())
        .expect("user xattrs on the temp file system");
    let mut w = LayerWriter::new(&s, &LayerOptions::default()).unwrap();
    w.append_tree(src.path(), &TreeOptions::default()).unwrap();
    let layer = w.finish().unwrap();
    let seen = read_entries(&s, &layer);
    assert_eq!(seen[0].6, vec![("user.imgb".to_string(), b"v1".to_vec())]);
}

#[test]
fn every_compression_gives_the_same_diff_id() {
    let (_d, s) = store();
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let mut layers = Vec::new();
    for compression in [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Uncompressed,
    ] {
        let mut w = LayerWriter::new(
            &s,
            &LayerOptions {
                compression,
                ..LayerOptions::default()
            },
        )
        .unwrap();
        w.append_tree(src.path(), &TreeOptions::default()).unwrap();
        layers.push(w.finish().unwrap());
    }
    assert_eq!(layers[0].diff_id, layers[1].diff_id);
    assert_eq!(layers[0].diff_id, layers[2].diff_id);
    assert_eq!(layers[2].digest, layers[2].diff_id);
    assert_ne!(layers[0].digest, layers[1].digest);
    assert!(matches!(
        Compression::Gzip.level(Some(10)),
        Err(LayerError::InvalidLevel { .. })
    ));
    assert_eq!(Compression::Zstd.level(None).unwrap(), DEFAULT_ZSTD_LEVEL);
}

#[test]
fn overlay_upper_dirs_turn_into_whiteouts_and_opaque_dirs() {
    let (_d, s) = store();
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    fs::create_dir(root.join("d")).unwrap();
    rustix::fs::lsetxattr(
        root.join("d"),
        "user.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::write(root.join("d/new"), b"n").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("gone"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .expect("mknod (tests run as root)");
    let mut w = LayerWriter::new(&s, &LayerOptions::default()).unwrap();
    w.append_tree(
        root,
        &TreeOptions {
            overlay_upper: true,
            ..TreeOptions::default()
        },
    )
    .unwrap();
    let layer = w.finish().unwrap();
    let seen = read_entries(&s, &layer);
    let names: Vec<&str> = seen.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, vec![".wh.gone", "d/", "d/.wh..wh..opq", "d/new"]);
    assert!(seen[0].6.is_empty(), "overlay xattrs are not copied");
}

/// A layer built from entries alone (no file system), every entry kind and
/// PAX case, so its bytes depend only on the writer and the encoders.
fn golden_layer(s: &ContentStore, compression: Compression) -> Layer {
    let mut w = LayerWriter::new(
        s,
        &LayerOptions {
            compression,
            source_date_epoch: Some(1_700_000_000),
            ..LayerOptions::default()
        },
    )
    .unwrap();
    let e = |path: &str, kind: EntryKind| Entry {
        path: path.into(),
        kind,
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: 1_800_000_000,
        xattrs: BTreeMap::new(),
    };
    let body = b"golden\n".repeat(100);
    w.append(&e("bin", EntryKind::Dir), None).unwrap();
    let mut file = e(
        "bin/busybox",
        EntryKind::File {
            size: body.len() as u64,
        },
    );
    file.xattrs.insert("user.golden".into(), b"v".to_vec());
    file.uid = 3_000_000; // beyond ustar's 7 octal digits: PAX uid
    w.append(&file, Some(&mut &body[..])).unwrap();
    w.append(
        &e(
            "bin/sh",
            EntryKind::Hardlink {
                target: "bin/busybox".into(),
            },
        ),
        None,
    )
    .unwrap();
    w.append(&e("dev", EntryKind::Dir), None).unwrap();
    w.append(
        &e("dev/null", EntryKind::CharDevice { major: 1, minor: 3 }),
        None,
    )
    .unwrap();
    w.append(
        &e("dev/sda", EntryKind::BlockDevice { major: 8, minor: 0 }),
        None,
    )
    .unwrap();
    w.append(&e("etc", EntryKind::Dir), None).unwrap();
    w.append_opaque(Path::new("etc")).unwrap();
    w.append_whiteout(Path::new("etc/old")).unwrap();
    w.append(&e("fifo", EntryKind::Fifo), None).unwrap();
    w.append(
        &e(
            "long/".repeat(30).trim_end_matches('/'),
            EntryKind::Symlink {
                target: "t".repeat(200).into(),
            },
        ),
        None,
    )
    .unwrap();
    w.finish().unwrap()
}

#[test]
fn layer_bytes_match_the_frozen_vectors() {
    // A change here changes every image digest imgb makes: update
    // testdata/image/layer-vectors.json only on purpose.
    let golden: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_str(include_str!("../../testdata/image/layer-vectors.json")).unwrap();
    let (_d, s) = store();
    for compression in [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Uncompressed,
    ] {
        let layer = golden_layer(&s, compression);
        let want = &golden[compression.name()];
        let got = BTreeMap::from([
            ("digest".to_string(), layer.digest.to_string()),
            ("diff_id".to_string(), layer.diff_id.to_string()),
            ("size".to_string(), layer.size.to_string()),
        ]);
        assert_eq!(&got, want, "{}", compression.name());
        if compression == Compression::Uncompressed {
            let names: Vec<String> = read_entries(&s, &layer).into_iter().map(|e| e.0).collect();
            assert_eq!(names.len(), 11);
            assert_eq!(names[10], "long/".repeat(30).trim_end_matches('/'));
        }
    }
}

/// A tar entry: path, type, data, pax xattrs.
type TarEntry<'a> = (&'a str, tar::EntryType, &'a [u8], &'a [(&'a str, &'a [u8])]);

fn tar_of(entries: &[TarEntry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind, data, xattrs) in entries {
        if !xattrs.is_empty() {
            let pax: Vec<(String, &[u8])> = xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
                .collect();
            builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))
                .unwrap();
        }
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(*kind);
        header.set_mode(if kind.is_dir() { 0o750 } else { 0o640 });
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(data.len() as u64);
        // set_path refuses `..`; write the raw name to test hostile input.
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut v = vec![0u8; 64];
    let n = rustix::fs::lgetxattr(path, name, &mut v[..]).ok()?;
    v.truncate(n);
    Some(v)
}

#[test]
fn overlay_format_unpack_records_whiteouts_and_opaque_dirs() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use tar::EntryType as T;
    let root = tempfile::tempdir().unwrap();
    let layer = tar_of(&[
        ("d/", T::Directory, b"", &[]),
        ("d/.wh..wh..opq", T::Regular, b"", &[]),
        ("d/mine", T::Regular, b"m", &[]),
        (".wh.gone", T::Regular, b"", &[]),
        ("e/", T::Directory, b"", &[]),
        ("e/.wh.deep", T::Regular, b"", &[]),
        // A layer may not smuggle overlay's own attributes in.
        (
            "r/",
            T::Directory,
            b"",
            &[("trusted.overlay.redirect", b"/etc"), ("user.keep", b"k")],
        ),
        ("x", T::Regular, b"x", &[("trusted.overlay.metacopy", b"")]),
    ]);
    unpack_layer_overlay(&layer[..], root.path()).unwrap();
    let p = root.path();
    for wh in ["gone", "e/deep"] {
        let meta = fs::symlink_metadata(p.join(wh)).unwrap();
        assert!(meta.file_type().is_char_device(), "{wh} is a whiteout");
        assert_eq!(meta.rdev(), 0, "{wh}: device 0/0");
    }
    assert_eq!(
        xattr(&p.join("d"), OVERLAY_OPAQUE_XATTR).as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        fs::read(p.join("d/mine")).unwrap(),
        b"m",
        "own entries stay"
    );
    assert_eq!(
        fs::metadata(p.join("d")).unwrap().permissions().mode() & 0o7777,
        0o750
    );
    assert_eq!(xattr(&p.join("e"), OVERLAY_OPAQUE_XATTR), None);
    assert_eq!(xattr(&p.join("r"), "trusted.overlay.redirect"), None);
    assert_eq!(xattr(&p.join("r"), "user.keep").as_deref(), Some(&b"k"[..]));
    assert_eq!(xattr(&p.join("x"), "trusted.overlay.metacopy"), None);

    // The same safety rules as the merged unpack.
    for hostile in [
        tar_of(&[("../escape", T::Regular, b"x", &[])]),
        tar_of(&[(".wh...", T::Regular, b"", &[])]),
    ] {
        let target = tempfile::tempdir().unwrap();
        assert!(unpack_layer_overlay(&hostile[..], target.path()).is_err());
    }
}

/// An overlay-format layer dir read back as an upper dir gives the same
/// whiteout and opaque entries as the layer it came from.
#[test]
fn overlay_format_round_trips_through_the_upper_dir_walk() {
    use tar::EntryType as T;
    let (_d, store) = store();
    let root = tempfile::tempdir().unwrap();
    let layer = tar_of(&[
        (".wh.gone", T::Regular, b"", &[]),
        ("d/", T::Directory, b"", &[]),
        ("d/.wh..wh..opq", T::Regular, b"", &[]),
        ("d/f", T::Regular, b"f", &[]),
    ]);
    unpack_layer_overlay(&layer[..], root.path()).unwrap();
    let mut w = LayerWriter::new(&store, &LayerOptions::default()).unwrap();
    w.append_tree(
        root.path(),
        &TreeOptions {
            overlay_upper: true,
            ..TreeOptions::default()
        },
    )
    .unwrap();
    let back = w.finish().unwrap();
    let names: Vec<String> = read_entries(&store, &back)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(names, [".wh.gone", "d/", "d/.wh..wh..opq", "d/f"]);
}

/// A layer of about 6 MiB (49 pgzip chunks) of mixed content (text and
/// noise files), then a last file with the content given.
fn big_layer(s: &ContentStore, tail: &[u8]) -> Layer {
    let mut w = LayerWriter::new(s, &LayerOptions::default()).unwrap();
    let mut file = |path: String, body: &[u8]| {
        let entry = Entry {
            path: path.into(),
            kind: EntryKind::File {
                size: body.len() as u64,
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Default::default(),
        };
        w.append(&entry, Some(&mut &body[..])).unwrap();
    };
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..12 {
        let body: Vec<u8> = (0..512 * 1024)
            .map(|j| {
                let state = super::pgzip::tests::xorshift(&mut state);
                if i % 3 == 2 {
                    state as u8
                } else {
                    b"fn main() { let layer = build(cache, image); }\n"
                        [(j + (state % 7) as usize) % 47]
                }
            })
            .collect();
        file(format!("f{i:02}"), &body);
    }
    file("zz-late".into(), tail);
    w.finish().unwrap()
}

#[test]
fn gzip_chunks_of_an_earlier_layer_are_reused_byte_for_byte() {
    // The reference: each layer written into a store of its own, where
    // nothing is on record and every chunk is compressed.
    let fresh = |tail: &[u8]| {
        let (_d, s) = store();
        big_layer(&s, tail).digest
    };
    let (_d, s) = store();
    let memo = memo::ChunkMemo::of_store(&s);
    let first = big_layer(&s, b"original");
    assert_eq!(first.digest, fresh(b"original"));
    assert_eq!(memo.hits(), 0, "nothing on record yet");

    // The same layer again: every chunk past the first 32 is copied, and
    // the bytes are those compressing gives.
    let again = big_layer(&s, b"original");
    assert_eq!(again.digest, first.digest);
    let chunks = first.diff_size.div_ceil(128 * 1024);
    assert_eq!(memo.hits(), chunks - memo::MIN_CHUNKS);

    // Only the tail changed: the chunks before it are copied, the last is
    // compressed, and the result is still byte for byte a fresh layer.
    let before = memo.hits();
    let changed = big_layer(&s, b"changed, and longer than before");
    assert_ne!(changed.digest, first.digest);
    assert_eq!(changed.digest, fresh(b"changed, and longer than before"));
    assert_eq!(memo.hits() - before, chunks - memo::MIN_CHUNKS - 1);

    // A damaged blob is not copied from: the output CRC is checked. (The
    // chunks are on record in `changed`'s blob now, the latest to hold
    // them.)
    let path = s.blob_path(&changed.digest);
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.len() - bytes.len() / 5;
    bytes[at] ^= 0xff;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, &bytes).unwrap();
    let before = memo.hits();
    let again = big_layer(&s, b"original");
    let copied = memo.hits() - before;
    assert!(
        copied > 0 && copied < chunks - memo::MIN_CHUNKS,
        "{copied} copied"
    );
    assert_eq!(again.digest, fresh(b"original"));
}
