//! Package catalogers: what the package databases and metadata files found
//! in an image's final filesystem say is installed.
//!
//! | source | files | purl |
//! |---|---|---|
//! | dpkg | `var/lib/dpkg/status`, `var/lib/dpkg/status.d/*` | `pkg:deb/<os id>/NAME@VERSION?arch=..&distro=<id>-<version>` |
//! | apk | `lib/apk/db/installed` | `pkg:apk/<os id>/NAME@VERSION?arch=..&distro=..` |
//! | Python | `*.dist-info/METADATA`, `*.egg-info/PKG-INFO`, `*.egg-info` files | `pkg:pypi/NAME@VERSION` |
//! | npm | `node_modules/[@scope/]NAME/package.json` | `pkg:npm/[%40scope/]NAME@VERSION` |
//! | Go binaries | the build info Go 1.18+ embeds in every binary | `pkg:golang/MODULE@VERSION`, `pkg:golang/stdlib@VERSION` |
//! | busybox | the version string in a file named `busybox` | `pkg:generic/busybox@VERSION` |
//!
//! Everything here parses bytes; [`super::scan`] decides which files to
//! read and pulls the small part of a binary that matters out of its stream.

use std::collections::BTreeMap;

use crate::image::Purl;

/// Where a package was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ecosystem {
    Deb,
    Apk,
    Python,
    Npm,
    Go,
    Binary,
}

impl Ecosystem {
    /// A short name for SPDX ids.
    pub fn name(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
            Ecosystem::Python => "python",
            Ecosystem::Npm => "npm",
            Ecosystem::Go => "go",
            Ecosystem::Binary => "binary",
        }
    }

    /// How the package was found, for SPDX's `sourceInfo`.
    pub fn source_info(self) -> &'static str {
        match self {
            Ecosystem::Deb => "acquired package info from DPKG DB",
            Ecosystem::Apk => "acquired package info from APK DB",
            Ecosystem::Python => {
                "acquired package info from installed python package manifest file"
            }
            Ecosystem::Npm => "acquired package info from installed node module manifest file",
            Ecosystem::Go => "acquired package info from go module information",
            Ecosystem::Binary => "acquired package info from the file's version string",
        }
    }
}

/// One package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: Option<String>,
    pub purl: String,
    /// The file it was read from (no leading `/`).
    pub location: String,
}

/// The operating system, from `etc/os-release` (or `usr/lib/os-release`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID` (`debian`, `alpine`).
    pub id: String,
    /// `VERSION_ID` (`12`, `3.19.1`).
    pub version_id: Option<String>,
    pub pretty_name: Option<String>,
}

impl OsRelease {
    pub fn parse(text: &str) -> OsRelease {
        let mut fields = BTreeMap::new();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            fields.insert(k.trim().to_string(), v.to_string());
        }
        OsRelease {
            id: fields.get("ID").cloned().unwrap_or_default(),
            version_id: fields.get("VERSION_ID").cloned(),
            pretty_name: fields.get("PRETTY_NAME").cloned(),
        }
    }

    /// The `distro` purl qualifier: `debian-12`.
    pub fn distro(&self) -> String {
        match &self.version_id {
            Some(v) if !self.id.is_empty() => format!("{}-{v}", self.id),
            _ => self.id.clone(),
        }
    }
}

/// RFC 822-style stanzas (dpkg status): `Key: value` with continuation
/// lines starting with a space, stanzas separated by blank lines.
fn stanzas(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut cur: BTreeMap<String, String> = BTreeMap::new();
    let mut last_key: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            last_key = None;
        } else if line.starts_with([' ', '\t']) {
            if let Some(v) = last_key.as_ref().and_then(|k| cur.get_mut(k)) {
                v.push('\n');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            cur.insert(k.to_string(), v.trim().to_string());
            last_key = Some(k.to_string());
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Packages of a dpkg status file: only those whose status says installed.
pub fn dpkg(text: &str, os: &OsRelease, location: &str) -> Vec<Package> {
    let namespace = if os.id.is_empty() { "debian" } else { &os.id };
    let mut out = Vec::new();
    for s in stanzas(text) {
        let installed = s
            .get("Status")
            .is_none_or(|st| st.split_whitespace().last() == Some("installed"));
        let (Some(name), true) = (s.get("Package"), installed) else {
            continue;
        };
        let version = s.get("Version").cloned();
        let mut purl = Purl::new("deb", Some(namespace), name, version.as_deref());
        if let Some(arch) = s.get("Architecture") {
            purl = purl.qualifier("arch", arch);
        }
        // syft's `upstream` qualifier: the source package when it differs.
        if let Some(source) = s.get("Source") {
            let source = source.split_whitespace().next().unwrap_or("");
            if source != name {
                purl = purl.qualifier("upstream", source);
            }
        }
        purl = purl.qualifier("distro", &os.distro());
        out.push(Package {
            ecosystem: Ecosystem::Deb,
            name: name.clone(),
            version,
            purl: purl.to_string(),
            location: location.to_string(),
        });
    }
    out
}

/// Packages of an apk database (`lib/apk/db/installed`): `P:` name,
/// `V:` version, `A:` architecture, records separated by blank lines.
pub fn apk(text: &str, os: &OsRelease, location: &str) -> Vec<Package> {
    let namespace = if os.id.is_empty() { "alpine" } else { &os.id };
    let mut out = Vec::new();
    let mut fields: BTreeMap<char, String> = BTreeMap::new();
    let mut flush = |fields: &mut BTreeMap<char, String>| {
        if let Some(name) = fields.get(&'P') {
            let version = fields.get(&'V').cloned();
            let purl = Purl::new("apk", Some(namespace), name, version.as_deref())
                .qualifier("arch", fields.get(&'A').map_or("", String::as_str))
                .qualifier("distro", &os.distro());
            out.push(Package {
                ecosystem: Ecosystem::Apk,
                name: name.clone(),
                version,
                purl: purl.to_string(),
                location: location.to_string(),
            });
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut fields);
            continue;
        }
        let mut chars = line.chars();
        if let (Some(k), Some(':')) = (chars.next(), chars.next()) {
            fields
                .entry(k)
                .or_insert_with(|| chars.as_str().to_string());
        }
    }
    flush(&mut fields);
    out
}

/// PEP 503 normalisation of a Python distribution name, as purls want it.
fn pep503(name: &str) -> String {
    let mut out = String::new();
    let mut last_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !last_sep {
                out.push('-');
            }
            last_sep = true;
        } else {
            out.extend(c.to_lowercase());
            last_sep = false;
        }
    }
    out
}

/// A Python distribution's core metadata (`METADATA`, `PKG-INFO`): the
/// `Name:` and `Version:` headers before the first blank line.
pub fn python(text: &str, location: &str) -> Option<Package> {
    let mut name = None;
    let mut version = None;
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("Name:") {
            name.get_or_insert_with(|| v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("Version:") {
            version.get_or_insert_with(|| v.trim().to_string());
        }
    }
    let name = name.filter(|n| !n.is_empty())?;
    let purl = Purl::new("pypi", None, &pep503(&name), version.as_deref());
    Some(Package {
        ecosystem: Ecosystem::Python,
        name,
        version,
        purl: purl.to_string(),
        location: location.to_string(),
    })
}

/// An installed npm package's `package.json`.
pub fn npm(bytes: &[u8], location: &str) -> Option<Package> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let name = value.get("name")?.as_str()?.to_string();
    let version = value
        .get("version")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let (namespace, short) = match name.split_once('/') {
        Some((scope, n)) if scope.starts_with('@') => (Some(scope), n),
        _ => (None, name.as_str()),
    };
    if short.is_empty() {
        return None;
    }
    let purl = Purl::new("npm", namespace, short, version.as_deref());
    Some(Package {
        ecosystem: Ecosystem::Npm,
        name: name.clone(),
        version,
        purl: purl.to_string(),
        location: location.to_string(),
    })
}

/// The Go toolchain version and module information a Go binary embeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoBuildInfo {
    /// `go1.21.5`.
    pub go_version: String,
    /// `modinfo` text: `path`, `mod`, `dep`, `=>` and `build` lines.
    pub modinfo: String,
}

/// The magic that starts a Go build info blob (always 16-byte aligned).
pub const GO_BUILDINFO_MAGIC: &[u8] = b"\xff Go buildinf:";

/// Parses a build info blob starting at [`GO_BUILDINFO_MAGIC`]. Only the
/// Go 1.18+ form (strings inline, flag bit 2) is read; older binaries keep
/// pointers into the data segment and are left out.
pub fn go_buildinfo(blob: &[u8]) -> Option<GoBuildInfo> {
    if !blob.starts_with(GO_BUILDINFO_MAGIC) || blob.len() < 32 {
        return None;
    }
    let flags = blob[15];
    if flags & 0x2 == 0 {
        return None;
    }
    let mut pos = 32;
    let read_string = |pos: &mut usize| -> Option<String> {
        let mut len: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *blob.get(*pos)?;
            *pos += 1;
            len |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
        let end = pos.checked_add(usize::try_from(len).ok()?)?;
        let s = String::from_utf8_lossy(blob.get(*pos..end)?).into_owned();
        *pos = end;
        Some(s)
    };
    let go_version = read_string(&mut pos)?;
    let mut modinfo = read_string(&mut pos)?;
    // The module info is framed by 16-byte sentinels.
    if modinfo.len() >= 33 && modinfo.as_bytes()[modinfo.len() - 17] == b'\n' {
        modinfo = modinfo[16..modinfo.len() - 16].to_string();
    }
    if !go_version.starts_with("go") {
        return None;
    }
    Some(GoBuildInfo {
        go_version,
        modinfo,
    })
}

/// The packages a Go binary was built from: the main module (or the main
/// package's path when built outside module mode, as Debian does), its
/// dependencies (replacements applied) and the standard library.
pub fn go_packages(info: &GoBuildInfo, location: &str) -> Vec<Package> {
    let module = |path: &str, version: Option<&str>| {
        let version = version.filter(|v| !v.is_empty() && *v != "(devel)");
        let (ns, name) = match path.rsplit_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, path),
        };
        Package {
            ecosystem: Ecosystem::Go,
            name: path.to_string(),
            version: version.map(str::to_string),
            purl: Purl::new("golang", ns, name, version).to_string(),
            location: location.to_string(),
        }
    };
    let mut out: Vec<Package> = Vec::new();
    let mut main_path = None;
    let mut have_main_module = false;
    for line in info.modinfo.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["path", path, ..] => main_path = Some(path.to_string()),
            ["mod", path, version, ..] => {
                have_main_module = true;
                out.push(module(path, Some(version)));
            }
            ["dep", path, version, ..] => out.push(module(path, Some(version))),
            // A replacement applies to the module listed just before it.
            ["=>", path, version, ..] => {
                if let Some(last) = out.pop() {
                    let mut replaced = module(path, Some(version));
                    replaced.location = last.location;
                    out.push(replaced);
                }
            }
            _ => {}
        }
    }
    if !have_main_module {
        if let Some(path) = main_path {
            out.insert(0, module(&path, None));
        }
    }
    let std_version = info.go_version.trim_start_matches("go");
    let std_version = std_version.split([' ', '-']).next().unwrap_or(std_version);
    out.push(Package {
        ecosystem: Ecosystem::Go,
        name: "stdlib".to_string(),
        version: Some(std_version.to_string()),
        purl: Purl::new("golang", None, "stdlib", Some(std_version)).to_string(),
        location: location.to_string(),
    });
    out
}

/// The version in busybox's banner (`BusyBox v1.35.0 (Debian 1:1.35.0-4+b3)`).
pub fn busybox(banner: &str, location: &str) -> Option<Package> {
    let rest = banner.split("BusyBox v").nth(1)?;
    let version: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    if version.is_empty() || !version.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some(Package {
        ecosystem: Ecosystem::Binary,
        name: "busybox".to_string(),
        purl: Purl::new("generic", None, "busybox", Some(&version)).to_string(),
        version: Some(version),
        location: location.to_string(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn debian() -> OsRelease {
        OsRelease::parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
             VERSION_ID=\"12\"\nID=debian\n",
        )
    }

    #[test]
    fn os_release_fields() {
        let os = debian();
        assert_eq!(os.id, "debian");
        assert_eq!(os.version_id.as_deref(), Some("12"));
        assert_eq!(os.distro(), "debian-12");
        assert_eq!(
            os.pretty_name.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(OsRelease::parse("ID='alpine'\n").distro(), "alpine");
    }

    #[test]
    fn dpkg_status_lists_installed_packages() {
        let status = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\n\
            Source: glibc\nVersion: 2.36-9+deb12u4\nDescription: GNU C Library\n more text\n\n\
            Package: python3\nStatus: install ok installed\nArchitecture: amd64\n\
            Version: 3.11.2-1+b1\n\n\
            Package: removed\nStatus: deinstall ok config-files\nVersion: 1\n";
        let pkgs = dpkg(status, &debian(), "var/lib/dpkg/status");
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[0].name, "libc6");
        assert_eq!(
            pkgs[0].purl,
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc"
        );
        assert_eq!(pkgs[1].version.as_deref(), Some("3.11.2-1+b1"));
        assert_eq!(
            pkgs[1].purl,
            "pkg:deb/debian/python3@3.11.2-1%2Bb1?arch=amd64&distro=debian-12"
        );
    }

    #[test]
    fn apk_database() {
        let db = "C:Q1abc\nP:musl\nV:1.2.4-r2\nA:x86_64\nT:the musl c library\n\n\
                  P:busybox\nV:1.36.1-r15\nA:x86_64\n";
        let os = OsRelease::parse("ID=alpine\nVERSION_ID=3.19.1\n");
        let pkgs = apk(db, &os, "lib/apk/db/installed");
        assert_eq!(pkgs.len(), 2);
        assert_eq!(
            pkgs[1].purl,
            "pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64&distro=alpine-3.19.1"
        );
    }

    #[test]
    fn python_metadata() {
        let meta = "Metadata-Version: 2.1\nName: Flask_Login\nVersion: 0.6.3\n\nName: not-this\n";
        let p = python(meta, "usr/lib/python3/dist-packages/x.dist-info/METADATA").unwrap();
        assert_eq!(p.name, "Flask_Login");
        assert_eq!(p.purl, "pkg:pypi/flask-login@0.6.3");
        assert!(python("Metadata-Version: 2.1\n", "x").is_none());
    }

    #[test]
    fn npm_package_json() {
        let p = npm(br#"{"name":"@types/node","version":"20.1.0"}"#, "x").unwrap();
        assert_eq!(p.purl, "pkg:npm/%40types/node@20.1.0");
        let p = npm(br#"{"name":"left-pad","version":"1.3.0"}"#, "x").unwrap();
        assert_eq!(p.purl, "pkg:npm/left-pad@1.3.0");
        assert!(npm(b"not json", "x").is_none());
        assert!(npm(br#"{"version":"1"}"#, "x").is_none());
    }

    /// A Go 1.18+ build info blob as the linker writes it.
    pub(crate) fn go_blob(version: &str, modinfo: &str) -> Vec<u8> {
        let mut blob = GO_BUILDINFO_MAGIC.to_vec();
        blob.push(8); // pointer size
        blob.push(2); // flags: inline strings
        blob.resize(32, 0);
        let framed = format!("0123456789abcdef{modinfo}0123456789abcdef");
        for s in [version, framed.as_str()] {
            let mut len = s.len();
            while len >= 0x80 {
                blob.push((len as u8) | 0x80);
                len >>= 7;
            }
            blob.push(len as u8);
            blob.extend_from_slice(s.as_bytes());
        }
        blob
    }

    #[test]
    fn go_build_info() {
        let modinfo = "path\texample.com/cmd/app\nmod\texample.com\tv1.2.3\th1:x=\n\
            dep\tgithub.com/pkg/errors\tv0.9.1\th1:y=\n\
            dep\tgolang.org/x/sys\tv0.1.0\th1:z=\n=>\tgolang.org/x/sys\tv0.2.0\th1:w=\n\
            build\tGOOS=linux\n";
        let info = go_buildinfo(&go_blob("go1.21.5", modinfo)).unwrap();
        assert_eq!(info.go_version, "go1.21.5");
        assert!(info.modinfo.starts_with("path\t"), "{:?}", info.modinfo);
        let pkgs = go_packages(&info, "usr/bin/app");
        let purls: Vec<&str> = pkgs.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(
            purls,
            vec![
                "pkg:golang/example.com@v1.2.3",
                "pkg:golang/github.com/pkg/errors@v0.9.1",
                "pkg:golang/golang.org/x/sys@v0.2.0",
                "pkg:golang/stdlib@1.21.5",
            ]
        );
        // Built outside module mode (Debian): the main package's path.
        let debian = go_buildinfo(&go_blob(
            "go1.19.8",
            "path\tgithub.com/opencontainers/runc\nbuild\t-compiler=gc\n",
        ))
        .unwrap();
        let pkgs = go_packages(&debian, "usr/sbin/runc");
        assert_eq!(pkgs[0].name, "github.com/opencontainers/runc");
        assert_eq!(pkgs[0].version, None);
        assert_eq!(pkgs[1].purl, "pkg:golang/stdlib@1.19.8");
        // Pre-1.18 layout (pointers) and garbage are refused.
        let mut old = go_blob("go1.16", "");
        old[15] = 0;
        assert!(go_buildinfo(&old).is_none());
        assert!(go_buildinfo(b"\xff Go buildinf:\x08\x02").is_none());
        let mut truncated = go_blob("go1.21.5", modinfo);
        truncated.truncate(60);
        assert!(go_buildinfo(&truncated).is_none());
    }

    #[test]
    fn busybox_banner() {
        let p = busybox(
            "BusyBox v1.35.0 (Debian 1:1.35.0-4+b3) multi-call binary.",
            "bin/busybox",
        )
        .unwrap();
        assert_eq!(p.version.as_deref(), Some("1.35.0"));
        assert_eq!(p.purl, "pkg:generic/busybox@1.35.0");
        assert!(busybox("BusyBox vX", "bin/busybox").is_none());
    }
}
