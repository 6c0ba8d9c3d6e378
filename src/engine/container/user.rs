//! The user a RUN runs as: USER resolved through the image's `/etc/passwd`
//! and `/etc/group`, read from the stage's layer dirs where possible.

use crate::store::ContentStore;

use super::super::snapshot::{Lookup, Lower, Snapshots};
use super::super::EngineError;

/// A resolved USER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Resolves USER (`name`, `uid`, `name:group`, `uid:gid`) through the
/// image's /etc/passwd and /etc/group, as Docker does: without a group, the
/// user's primary group from passwd (0 for an unknown numeric uid) plus the
/// groups listing the user as a member.
pub fn resolve_user(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<User, EngineError> {
    if spec.is_empty() {
        return Ok(User {
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
        });
    }
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = passwd.and_then(|p| {
        p.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let matches = f.first() == Some(&user) || f.get(2) == Some(&user);
            if f.len() >= 4 && matches {
                Some((
                    f[0].to_string(),
                    f[2].parse::<u32>().ok()?,
                    f[3].parse::<u32>().ok()?,
                ))
            } else {
                None
            }
        })
    });
    let (name, uid, primary) = match (user.parse::<u32>(), entry) {
        (_, Some((name, uid, gid))) => (Some(name), uid, gid),
        (Ok(uid), None) => (None, uid, 0),
        (Err(_), None) => {
            return Err(EngineError::UnknownUser {
                user: user.to_string(),
            })
        }
    };
    let group_id = |g: &str| -> Result<u32, EngineError> {
        if let Ok(gid) = g.parse::<u32>() {
            return Ok(gid);
        }
        group
            .and_then(|f| {
                f.lines().find_map(|line| {
                    let f: Vec<&str> = line.split(':').collect();
                    (f.first() == Some(&g)).then(|| f.get(2)?.parse().ok())?
                })
            })
            .ok_or_else(|| EngineError::UnknownGroup {
                group: g.to_string(),
            })
    };
    match grp {
        Some(g) => Ok(User {
            uid,
            gid: group_id(g)?,
            additional_gids: Vec::new(),
        }),
        None => {
            let mut additional = Vec::new();
            if let (Some(name), Some(group)) = (&name, group) {
                for line in group.lines() {
                    let f: Vec<&str> = line.split(':').collect();
                    let member = f
                        .get(3)
                        .is_some_and(|m| m.split(',').any(|m| m.trim() == name));
                    if let Some(gid) = f.get(2).and_then(|g| g.parse::<u32>().ok()) {
                        if member && gid != primary && !additional.contains(&gid) {
                            additional.push(gid);
                        }
                    }
                }
            }
            Ok(User {
                uid,
                gid: primary,
                additional_gids: additional,
            })
        }
    }
}

/// The content of `/etc/passwd` and `/etc/group`, where they exist.
pub type AccountFiles = (Option<String>, Option<String>);

/// The stage's `/etc/passwd` and `/etc/group` for USER, read from its layer
/// dirs (see `Snapshots::read_file`); `None` when a symlink is involved or
/// the layers cannot be unpacked in overlay's format (a hard link to a lower
/// layer's file): the caller then reads them from the layers' tars.
pub fn account_files(
    snapshots: &Snapshots,
    store: &ContentStore,
    lower: &Lower,
) -> Option<AccountFiles> {
    let mut out = Vec::new();
    for path in ["etc/passwd", "etc/group"] {
        out.push(match snapshots.read_file(store, lower, path).ok()? {
            Lookup::Content(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            Lookup::Missing => None,
            Lookup::Symlink => return None,
        });
    }
    let group = out.pop().flatten();
    let passwd = out.pop().flatten();
    Some((passwd, group))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app,other\napp:x:1001:\nwheel:x:10:root\n";

    fn u(uid: u32, gid: u32, extra: &[u32]) -> User {
        User {
            uid,
            gid,
            additional_gids: extra.to_vec(),
        }
    }

    #[test]
    fn users_resolve_through_passwd_and_group() {
        let r = |s| resolve_user(s, Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(r(""), u(0, 0, &[]));
        assert_eq!(r("root"), u(0, 0, &[10]));
        assert_eq!(r("app"), u(1000, 1001, &[50]));
        assert_eq!(
            r("1000"),
            u(1000, 1001, &[50]),
            "a known uid gets its groups"
        );
        assert_eq!(r("4242"), u(4242, 0, &[]), "unknown uid: gid 0");
        assert_eq!(r("app:staff"), u(1000, 50, &[]));
        assert_eq!(r("app:7"), u(1000, 7, &[]));
        assert_eq!(r("5:6"), u(5, 6, &[]));
        assert!(matches!(
            resolve_user("ghost", Some(PASSWD), Some(GROUP)),
            Err(EngineError::UnknownUser { .. })
        ));
        assert!(matches!(
            resolve_user("app:ghosts", Some(PASSWD), Some(GROUP)),
            Err(EngineError::UnknownGroup { .. })
        ));
    }
}
