//! Tar headers built by hand, so every byte is ours to decide: ustar headers
//! with numeric uid/gid only (empty uname/gname), no atime/ctime, and PAX
//! extended headers (records sorted by key) for what ustar cannot hold: long
//! names and link targets, xattrs, sizes of 8 GiB and more, large ids.

use std::collections::BTreeMap;

pub const BLOCK: usize = 512;

/// Tar type flags imgb writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeFlag {
    File,
    Hardlink,
    Symlink,
    CharDevice,
    BlockDevice,
    Dir,
    Fifo,
    Pax,
}

impl TypeFlag {
    fn byte(self) -> u8 {
        match self {
            TypeFlag::File => b'0',
            TypeFlag::Hardlink => b'1',
            TypeFlag::Symlink => b'2',
            TypeFlag::CharDevice => b'3',
            TypeFlag::BlockDevice => b'4',
            TypeFlag::Dir => b'5',
            TypeFlag::Fifo => b'6',
            TypeFlag::Pax => b'x',
        }
    }
}

/// Everything that goes into one entry's header(s).
#[derive(Debug, Clone)]
pub struct HeaderFields<'a> {
    pub name: &'a [u8],
    pub link: &'a [u8],
    pub flag: TypeFlag,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: u64,
    pub devmajor: u32,
    pub devminor: u32,
    pub xattrs: &'a BTreeMap<String, Vec<u8>>,
}

const NAME_LEN: usize = 100;
/// Largest value of an 8-byte octal field (7 digits).
const MAX_OCTAL_8: u64 = 0o7_777_777;
/// Largest value of a 12-byte octal field (11 digits).
const MAX_OCTAL_12: u64 = 0o77_777_777_777;

/// The bytes of the header(s) for one entry: an optional PAX header with its
/// data, then the ustar header. The entry's content (for files) follows.
pub fn encode(f: &HeaderFields<'_>) -> Vec<u8> {
    let mut records: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    if f.name.len() > NAME_LEN {
        records.insert("path".into(), f.name.to_vec());
    }
    if f.link.len() > NAME_LEN {
        records.insert("linkpath".into(), f.link.to_vec());
    }
    if f.size > MAX_OCTAL_12 {
        records.insert("size".into(), f.size.to_string().into_bytes());
    }
    if f.mtime > MAX_OCTAL_12 {
        records.insert("mtime".into(), f.mtime.to_string().into_bytes());
    }
    if f.uid > MAX_OCTAL_8 {
        records.insert("uid".into(), f.uid.to_string().into_bytes());
    }
    if f.gid > MAX_OCTAL_8 {
        records.insert("gid".into(), f.gid.to_string().into_bytes());
    }
    for (name, value) in f.xattrs {
        records.insert(format!("SCHILY.xattr.{name}"), value.clone());
    }

    let mut out = Vec::with_capacity(BLOCK * 3);
    if !records.is_empty() {
        let data = pax_data(&records);
        let pax = ustar(&HeaderFields {
            name: b"././@PaxHeader",
            link: b"",
            flag: TypeFlag::Pax,
            mode: 0,
            uid: 0,
            gid: 0,
            size: data.len() as u64,
            mtime: 0,
            devmajor: 0,
            devminor: 0,
            xattrs: f.xattrs,
        });
        out.extend_from_slice(&pax);
        out.extend_from_slice(&data);
        out.resize(out.len() + padding(data.len() as u64), 0);
    }
    out.extend_from_slice(&ustar(f));
    out
}

/// Zero bytes needed after `len` bytes of content to end on a block.
pub fn padding(len: u64) -> usize {
    let rem = (len % BLOCK as u64) as usize;
    if rem == 0 {
        0
    } else {
        BLOCK - rem
    }
}

/// PAX records: `"<len> <key>=<value>\n"`, where `<len>` counts the whole
/// record including its own digits.
fn pax_data(records: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        let rest = 1 + key.len() + 1 + value.len() + 1; // ' ' key '=' value '\n'
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

/// One 512-byte ustar header. Values too large for their field are written
/// as 0; `encode` has put them in PAX records.
fn ustar(f: &HeaderFields<'_>) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    put_bytes(&mut h[0..100], truncate(f.name));
    put_octal(&mut h[100..108], u64::from(f.mode & 0o7777));
    put_octal(&mut h[108..116], fit(f.uid, MAX_OCTAL_8));
    put_octal(&mut h[116..124], fit(f.gid, MAX_OCTAL_8));
    put_octal(&mut h[124..136], fit(f.size, MAX_OCTAL_12));
    put_octal(&mut h[136..148], fit(f.mtime, MAX_OCTAL_12));
    h[156] = f.flag.byte();
    put_bytes(&mut h[157..257], truncate(f.link));
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // uname/gname (265..329) stay empty: ownership is numeric only.
    if matches!(f.flag, TypeFlag::CharDevice | TypeFlag::BlockDevice) {
        put_octal(&mut h[329..337], u64::from(f.devmajor).min(MAX_OCTAL_8));
        put_octal(&mut h[337..345], u64::from(f.devminor).min(MAX_OCTAL_8));
    }
    // Checksum: sum of all bytes with the checksum field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let digits = format!("{sum:06o}");
    h[148..154].copy_from_slice(digits.as_bytes());
    h[154] = 0;
    h[155] = b' ';
    h
}

fn fit(v: u64, max: u64) -> u64 {
    if v > max {
        0
    } else {
        v
    }
}

fn truncate(b: &[u8]) -> &[u8] {
    &b[..b.len().min(NAME_LEN)]
}

fn put_bytes(field: &mut [u8], value: &[u8]) {
    field[..value.len()].copy_from_slice(value);
}

/// Zero-padded octal filling all but the last byte, which stays NUL.
fn put_octal(field: &mut [u8], v: u64) {
    let width = field.len() - 1;
    let s = format!("{v:0width$o}");
    field[..width].copy_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(name: &'a [u8], xattrs: &'a BTreeMap<String, Vec<u8>>) -> HeaderFields<'a> {
        HeaderFields {
            name,
            link: b"",
            flag: TypeFlag::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 5,
            mtime: 1_700_000_000,
            devmajor: 0,
            devminor: 0,
            xattrs,
        }
    }

    #[test]
    fn short_names_need_one_block_with_a_valid_checksum() {
        let none = BTreeMap::new();
        let h = encode(&fields(b"etc/passwd", &none));
        assert_eq!(h.len(), BLOCK);
        assert_eq!(&h[0..10], b"etc/passwd");
        assert_eq!(&h[100..108], b"0000644\0");
        assert_eq!(&h[124..136], b"00000000005\0");
        assert_eq!(&h[257..265], b"ustar\x0000");
        let mut copy = h.clone();
        copy[148..156].copy_from_slice(b"        ");
        let sum: u64 = copy.iter().map(|&b| u64::from(b)).sum();
        assert_eq!(&h[148..156], format!("{sum:06o}\0 ").as_bytes());
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        // "9 a=bcd\n" is 8 bytes long; a record whose length crosses a digit
        // boundary must count the extra digit.
        let mut r = BTreeMap::new();
        r.insert("a".to_string(), b"bc".to_vec());
        assert_eq!(pax_data(&r), b"7 a=bc\n");
        let mut r = BTreeMap::new();
        r.insert("k".to_string(), vec![b'v'; 5]);
        assert_eq!(pax_data(&r), b"11 k=vvvvv\n");
    }

    #[test]
    fn long_names_and_xattrs_go_to_a_pax_header() {
        let mut x = BTreeMap::new();
        x.insert("user.note".to_string(), b"hi".to_vec());
        let long = vec![b'n'; 150];
        let h = encode(&fields(&long, &x));
        assert_eq!(h[156], b'x');
        let text = String::from_utf8_lossy(&h[BLOCK..2 * BLOCK]);
        assert!(text.contains("SCHILY.xattr.user.note=hi\n"), "{text}");
        assert!(text.contains(&format!("path={}\n", "n".repeat(150))));
        assert_eq!(h.len(), 3 * BLOCK);
    }
}
