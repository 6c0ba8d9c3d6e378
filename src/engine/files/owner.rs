//! `--chown` and `--chmod` of COPY/ADD, as Docker applies them.
//!
//! Docker compatibility: `--chown=user` without a group uses the user's
//! numeric id as the gid too (documented Docker behaviour), names are looked
//! up in the image's own `/etc/passwd` and `/etc/group`, and `--chmod`
//! accepts octal and symbolic (`u+x,g-w`) modes.

/// Why an owner or mode spec is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    #[error("unable to find user {0:?} in the image's /etc/passwd")]
    UnknownUser(String),
    #[error("unable to find group {0:?} in the image's /etc/group")]
    UnknownGroup(String),
    #[error(
        "invalid --chmod {0:?}: expected an octal mode like 0755 or a symbolic one like u+x,g-w"
    )]
    BadMode(String),
    #[error("invalid --chown {0:?}: expected USER[:GROUP]")]
    BadOwner(String),
}

/// A numeric owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Resolves `USER[:GROUP]`. `passwd` and `group` are the image's files, if
/// it has them; numeric ids never need them.
pub fn resolve_chown(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<Owner, OwnerError> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || grp.is_some_and(|g| g.is_empty()) {
        return Err(OwnerError::BadOwner(spec.to_string()));
    }
    let uid = match user.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => lookup(passwd, user).ok_or_else(|| OwnerError::UnknownUser(user.to_string()))?,
    };
    let gid = match grp {
        None => uid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup(group, g).ok_or_else(|| OwnerError::UnknownGroup(g.to_string()))?,
        },
    };
    Ok(Owner { uid, gid })
}

/// The id (third field) of `name` in a passwd- or group-format file.
fn lookup(file: Option<&str>, name: &str) -> Option<u32> {
    file?.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then(|| fields.nth(1)?.parse().ok())?
    })
}

/// A parsed `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

/// One symbolic clause: `who op perms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    who: u32,
    op: char,
    perms: Vec<char>,
}

impl Chmod {
    pub fn parse(spec: &str) -> Result<Chmod, OwnerError> {
        let bad = || OwnerError::BadMode(spec.to_string());
        if !spec.is_empty() && spec.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            let mode = u32::from_str_radix(spec, 8).map_err(|_| bad())?;
            return if mode <= 0o7777 {
                Ok(Chmod::Octal(mode))
            } else {
                Err(bad())
            };
        }
        let mut clauses = Vec::new();
        for part in spec.split(',') {
            let op_at = part.find(['+', '-', '=']).ok_or_else(bad)?;
            let mut who = 0;
            for c in part[..op_at].chars() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return Err(bad()),
                };
            }
            let op = part[op_at..].chars().next().ok_or_else(bad)?;
            let perms: Vec<char> = part[op_at + 1..].chars().collect();
            if perms.iter().any(|c| !"rwxXst".contains(*c)) {
                return Err(bad());
            }
            clauses.push(Clause { who, op, perms });
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The new permission bits for an entry with `mode` (permission bits
    /// only) that is a directory or not.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => {
                let mut mode = mode & 0o7777;
                for clause in clauses {
                    // No who: like chmod with umask 0, all of ugo (not s/t).
                    let who = if clause.who == 0 { 0o7777 } else { clause.who };
                    let mut bits = 0;
                    for p in &clause.perms {
                        bits |= match p {
                            'r' => 0o444,
                            'w' => 0o222,
                            'x' => 0o111,
                            'X' if is_dir || mode & 0o111 != 0 => 0o111,
                            'X' => 0,
                            's' => 0o6000,
                            't' => 0o1000,
                            _ => 0,
                        };
                    }
                    let bits = bits & who;
                    mode = match clause.op {
                        '+' => mode | bits,
                        '-' => mode & !bits,
                        _ => (mode & !(who & 0o7777)) | bits,
                    };
                }
                mode
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:\napp:x:1001:\n";

    #[test]
    fn chown_numeric_and_names() {
        let r = |s| resolve_chown(s, Some(PASSWD), Some(GROUP));
        assert_eq!(r("10:20"), Ok(Owner { uid: 10, gid: 20 }));
        assert_eq!(
            r("10"),
            Ok(Owner { uid: 10, gid: 10 }),
            "gid defaults to the uid"
        );
        assert_eq!(
            r("app"),
            Ok(Owner {
                uid: 1000,
                gid: 1000
            }),
            "docker uses the uid as gid"
        );
        assert_eq!(r("app:staff"), Ok(Owner { uid: 1000, gid: 50 }));
        assert_eq!(r("app:7"), Ok(Owner { uid: 1000, gid: 7 }));
        assert_eq!(r("ghost"), Err(OwnerError::UnknownUser("ghost".into())));
        assert_eq!(
            r("app:ghosts"),
            Err(OwnerError::UnknownGroup("ghosts".into()))
        );
        assert_eq!(
            resolve_chown("app", None, None),
            Err(OwnerError::UnknownUser("app".into()))
        );
        assert!(matches!(r(":5"), Err(OwnerError::BadOwner(_))));
        assert!(matches!(r("5:"), Err(OwnerError::BadOwner(_))));
    }

    #[test]
    fn chmod_octal_and_symbolic() {
        assert_eq!(Chmod::parse("755").unwrap().apply(0o644, false), 0o755);
        assert_eq!(Chmod::parse("0600").unwrap().apply(0o777, true), 0o600);
        assert_eq!(Chmod::parse("u+x").unwrap().apply(0o644, false), 0o744);
        assert_eq!(
            Chmod::parse("g-w,o-rwx").unwrap().apply(0o775, false),
            0o750
        );
        assert_eq!(Chmod::parse("a=r").unwrap().apply(0o777, false), 0o444);
        assert_eq!(Chmod::parse("+x").unwrap().apply(0o600, false), 0o711);
        assert_eq!(Chmod::parse("a+X").unwrap().apply(0o644, false), 0o644);
        assert_eq!(Chmod::parse("a+X").unwrap().apply(0o644, true), 0o755);
        assert_eq!(Chmod::parse("u+s").unwrap().apply(0o755, false), 0o4755);
        for bad in ["", "8", "99999", "u+q", "z+x", "u", "17777"] {
            assert!(Chmod::parse(bad).is_err(), "{bad}");
        }
    }
}
