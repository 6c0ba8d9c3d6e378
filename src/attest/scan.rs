//! Which files of an image the SBOM reads, and what it keeps of them.
//!
//! The layer walk (`layer::scan_files`) offers every regular file of the
//! final filesystem to [`extract`]: package databases and metadata files
//! are kept whole (up to [`MAX_TEXT`]); executables are streamed and only
//! their Go build info or busybox banner is kept, so a scan holds a few
//! kilobytes per binary whatever the image's size. [`catalog`] then turns
//! the kept files into packages.

use std::collections::BTreeMap;
use std::io::{self, Read};

use super::packages::{self, OsRelease, Package, GO_BUILDINFO_MAGIC};

/// The largest metadata file read (a dpkg status of a big image is a few MB).
pub const MAX_TEXT: u64 = 64 << 20;
/// How much of a binary after the build info magic is read at most.
const MAX_GO_BLOB: usize = 1 << 20;
/// Prefix of the record kept for a Go binary.
const GO_RECORD: &str = "go-buildinfo\n";
/// Prefix of the record kept for busybox.
const BUSYBOX_RECORD: &str = "busybox-banner\n";
const BUSYBOX_BANNER: &[u8] = b"BusyBox v";

/// What kind of file a path is to the SBOM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OsRelease,
    Dpkg,
    Apk,
    Python,
    Npm,
}

/// Classifies a path (relative to the root, no leading `/`).
fn kind(path: &str) -> Option<Kind> {
    let parts: Vec<&str> = path.split('/').collect();
    let name = *parts.last()?;
    let parent = parts.len().checked_sub(2).map(|i| parts[i]);
    match path {
        "etc/os-release" | "usr/lib/os-release" => return Some(Kind::OsRelease),
        "var/lib/dpkg/status" => return Some(Kind::Dpkg),
        "lib/apk/db/installed" => return Some(Kind::Apk),
        _ => {}
    }
    if path.starts_with("var/lib/dpkg/status.d/") && parts.len() == 5 && !name.contains('.') {
        return Some(Kind::Dpkg);
    }
    if (name == "METADATA" && parent.is_some_and(|p| p.ends_with(".dist-info")))
        || (name == "PKG-INFO" && parent.is_some_and(|p| p.ends_with(".egg-info")))
        || name.ends_with(".egg-info")
    {
        return Some(Kind::Python);
    }
    if name == "package.json" && parts.len() >= 3 {
        let n = parts.len();
        let direct = parts[n - 3] == "node_modules";
        let scoped = n >= 4 && parts[n - 3].starts_with('@') && parts[n - 4] == "node_modules";
        if direct || scoped {
            return Some(Kind::Npm);
        }
    }
    None
}

/// Whether the scan wants the file at `path` (`mode` its permission bits).
pub fn wants(path: &str, mode: u32, size: u64) -> bool {
    match kind(path) {
        Some(_) => size <= MAX_TEXT,
        // Executables: Go binaries and busybox (ELF, checked when read).
        None => mode & 0o111 != 0 && size >= 64,
    }
}

/// What the scan keeps of a wanted file, reading it from `content`; `None`
/// when it keeps nothing (an executable that is neither a Go binary nor
/// busybox).
pub fn extract(path: &str, content: &mut dyn Read) -> io::Result<Option<Vec<u8>>> {
    if kind(path).is_some() {
        let mut bytes = Vec::new();
        content.take(MAX_TEXT).read_to_end(&mut bytes)?;
        return Ok(Some(bytes));
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    binary(name == "busybox", content)
}

fn read_some(r: &mut dyn Read, buf: &mut Vec<u8>, want: usize) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + want, 0);
    let n = loop {
        match r.read(&mut buf[start..]) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    buf.truncate(start + n);
    Ok(n)
}

/// Streams an executable: the Go build info blob (16-byte aligned magic)
/// or, for busybox, its banner. Keeps a small window, never the file.
fn binary(busybox: bool, r: &mut dyn Read) -> io::Result<Option<Vec<u8>>> {
    const CHUNK: usize = 256 * 1024;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + 64);
    // The file offset of buf[0].
    let mut base: usize = 0;
    while buf.len() < 4 {
        let missing = 4 - buf.len();
        if read_some(r, &mut buf, missing)? == 0 {
            return Ok(None);
        }
    }
    if !buf.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let mut next_aligned = 0usize; // next file offset to test for the magic
    let mut eof = false;
    loop {
        if busybox {
            if let Some(i) = find(&buf, BUSYBOX_BANNER) {
                while buf.len() < i + 80 && !eof {
                    eof = read_some(r, &mut buf, CHUNK)? == 0;
                }
                let end = (i + 80).min(buf.len());
                let banner: Vec<u8> = buf[i..end]
                    .iter()
                    .copied()
                    .take_while(|b| *b != 0 && *b != b'\n')
                    .collect();
                let mut record = BUSYBOX_RECORD.as_bytes().to_vec();
                record.extend_from_slice(&banner);
                return Ok(Some(record));
            }
        } else {
            let mut o = next_aligned;
            while o + GO_BUILDINFO_MAGIC.len() <= base + buf.len() {
                let i = o - base;
                if buf[i] == GO_BUILDINFO_MAGIC[0]
                    && buf[i..i + GO_BUILDINFO_MAGIC.len()] == *GO_BUILDINFO_MAGIC
                {
                    while buf.len() < i + MAX_GO_BLOB && !eof {
                        eof = read_some(r, &mut buf, CHUNK)? == 0;
                    }
                    if let Some(info) = packages::go_buildinfo(&buf[i..]) {
                        let record = format!("{GO_RECORD}{}\n{}", info.go_version, info.modinfo);
                        return Ok(Some(record.into_bytes()));
                    }
                }
                o += 16;
            }
            next_aligned = o;
        }
        if eof {
            return Ok(None);
        }
        // Keep a tail that may hold the start of a match; drop the rest.
        let keep_from = match busybox {
            true => buf.len().saturating_sub(BUSYBOX_BANNER.len()),
            false => next_aligned - base,
        }
        .min(buf.len());
        buf.drain(..keep_from);
        base += keep_from;
        eof = read_some(r, &mut buf, CHUNK)? == 0;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The operating system and packages found in the kept files (keyed by
/// path, no leading `/`), sorted and without duplicates.
pub fn catalog(files: &BTreeMap<String, Vec<u8>>) -> (Option<OsRelease>, Vec<Package>) {
    let os = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| files.get(*p))
        .map(|b| OsRelease::parse(&String::from_utf8_lossy(b)));
    let os_or_default = os.clone().unwrap_or_default();
    let mut out = Vec::new();
    for (path, bytes) in files {
        let text = || String::from_utf8_lossy(bytes);
        match kind(path) {
            Some(Kind::OsRelease) => {}
            Some(Kind::Dpkg) => out.extend(packages::dpkg(&text(), &os_or_default, path)),
            Some(Kind::Apk) => out.extend(packages::apk(&text(), &os_or_default, path)),
            Some(Kind::Python) => out.extend(packages::python(&text(), path)),
            Some(Kind::Npm) => out.extend(packages::npm(bytes, path)),
            None => {
                if let Some(rest) = bytes.strip_prefix(GO_RECORD.as_bytes()) {
                    let rest = String::from_utf8_lossy(rest);
                    let (version, modinfo) = rest.split_once('\n').unwrap_or((&rest, ""));
                    let info = packages::GoBuildInfo {
                        go_version: version.to_string(),
                        modinfo: modinfo.to_string(),
                    };
                    out.extend(packages::go_packages(&info, path));
                } else if let Some(rest) = bytes.strip_prefix(BUSYBOX_RECORD.as_bytes()) {
                    out.extend(packages::busybox(&String::from_utf8_lossy(rest), path));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    (os, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified() {
        assert_eq!(kind("var/lib/dpkg/status"), Some(Kind::Dpkg));
        assert_eq!(kind("var/lib/dpkg/status.d/base"), Some(Kind::Dpkg));
        assert_eq!(kind("var/lib/dpkg/status.d/base.md5sums"), None);
        assert_eq!(kind("lib/apk/db/installed"), Some(Kind::Apk));
        assert_eq!(kind("etc/os-release"), Some(Kind::OsRelease));
        assert_eq!(
            kind("usr/lib/python3/dist-packages/pip-23.0.1.dist-info/METADATA"),
            Some(Kind::Python)
        );
        assert_eq!(
            kind("usr/lib/python3/dist-packages/six-1.16.0.egg-info"),
            Some(Kind::Python)
        );
        assert_eq!(kind("x/foo.egg-info/PKG-INFO"), Some(Kind::Python));
        assert_eq!(kind("x/foo.dist-info/RECORD"), None);
        assert_eq!(
            kind("app/node_modules/left-pad/package.json"),
            Some(Kind::Npm)
        );
        assert_eq!(
            kind("app/node_modules/@types/node/package.json"),
            Some(Kind::Npm)
        );
        assert_eq!(kind("app/node_modules/left-pad/lib/package.json"), None);
        assert_eq!(kind("app/package.json"), None);
        assert!(wants("usr/bin/app", 0o755, 1000));
        assert!(!wants("usr/bin/app", 0o644, 1000));
        assert!(wants("var/lib/dpkg/status", 0o644, 10));
    }

    /// An ELF-looking file with a Go build info blob at an aligned offset
    /// far into it (past several read chunks), and a decoy at an unaligned one.
    fn go_binary() -> Vec<u8> {
        let mut bin = b"\x7fELF".to_vec();
        bin.resize(300_001, 7);
        bin.extend_from_slice(GO_BUILDINFO_MAGIC); // unaligned decoy
        bin.resize(700_000, 7);
        bin.extend_from_slice(&packages::tests::go_blob(
            "go1.22.1",
            "path\texample.com/app\nmod\texample.com/app\tv0.3.0\th1:x=\n",
        ));
        bin.resize(bin.len() + 5000, 0);
        bin
    }

    #[test]
    fn go_build_info_is_found_in_a_stream() {
        let bin = go_binary();
        let kept = extract("usr/bin/app", &mut &bin[..]).unwrap().unwrap();
        assert!(kept.len() < 200, "only the build info is kept");
        let files = BTreeMap::from([("usr/bin/app".to_string(), kept)]);
        let (_, pkgs) = catalog(&files);
        let purls: Vec<&str> = pkgs.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(
            purls,
            vec![
                "pkg:golang/example.com/app@v0.3.0",
                "pkg:golang/stdlib@1.22.1"
            ]
        );
        // One byte at a time works too.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(1).min(out.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let small = {
            let mut b = b"\x7fELF".to_vec();
            b.resize(64, 1);
            b.extend_from_slice(&packages::tests::go_blob("go1.20", "path\tx\n"));
            b
        };
        let kept = extract("bin/x", &mut Trickle(&small)).unwrap().unwrap();
        assert!(kept.starts_with(GO_RECORD.as_bytes()));
        // Not ELF, or ELF without build info: nothing kept.
        assert_eq!(
            extract("bin/sh", &mut &b"#!/bin/sh\necho"[..]).unwrap(),
            None
        );
        let mut plain = b"\x7fELF".to_vec();
        plain.resize(100_000, 3);
        assert_eq!(extract("bin/true", &mut &plain[..]).unwrap(), None);
    }

    #[test]
    fn busybox_is_found_by_its_banner() {
        let mut bin = b"\x7fELF".to_vec();
        bin.resize(400_000, 1);
        bin.extend_from_slice(b"BusyBox v1.35.0 (Debian 1:1.35.0-4+b3) multi-call binary.\0more");
        bin.resize(500_000, 1);
        let kept = extract("bin/busybox", &mut &bin[..]).unwrap().unwrap();
        let files = BTreeMap::from([("bin/busybox".to_string(), kept)]);
        let (os, pkgs) = catalog(&files);
        assert!(os.is_none());
        assert_eq!(pkgs.len(), 1);
        assert_eq!(pkgs[0].purl, "pkg:generic/busybox@1.35.0");
        assert_eq!(pkgs[0].location, "bin/busybox");
    }

    #[test]
    fn catalog_reads_every_kind() {
        let files: BTreeMap<String, Vec<u8>> = [
            ("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n"),
            (
                "var/lib/dpkg/status",
                "Package: python3\nStatus: install ok installed\nVersion: 3.11.2-1+b1\nArchitecture: amd64\n",
            ),
            (
                "usr/local/lib/python3.11/dist-packages/greeting-1.0.dist-info/METADATA",
                "Metadata-Version: 2.1\nName: greeting\nVersion: 1.0\n",
            ),
            (
                "srv/node_modules/left-pad/package.json",
                r#"{"name":"left-pad","version":"1.3.0"}"#,
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
        let (os, pkgs) = catalog(&files);
        assert_eq!(os.unwrap().distro(), "debian-12");
        let purls: Vec<&str> = pkgs.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(
            purls,
            vec![
                "pkg:deb/debian/python3@3.11.2-1%2Bb1?arch=amd64&distro=debian-12",
                "pkg:pypi/greeting@1.0",
                "pkg:npm/left-pad@1.3.0",
            ]
        );
    }
}
