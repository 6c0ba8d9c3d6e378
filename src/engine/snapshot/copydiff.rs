//! The copy snapshotter's diff: a full copy of the rootfs, after the run,
//! pruned in place to what differs from the rootfs, with 0/0 character
//! devices for deletions and the opaque xattr where a directory replaced a
//! non-directory: exactly the shape of an overlay upper dir, so both
//! snapshotters go through the same layer writer and give the same layer.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{FileType, Mode, Timespec, Timestamps, UTIME_OMIT};

use super::super::fsops::io;
use super::EngineError;

pub fn mtime(path: &Path) -> Result<Timespec, EngineError> {
    let meta = fs::symlink_metadata(path).map_err(io(path))?;
    Ok(Timespec {
        tv_sec: meta.mtime(),
        tv_nsec: meta.mtime_nsec() as _,
    })
}

pub fn set_mtime(path: &Path, time: Timespec) -> Result<(), EngineError> {
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: time,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io(path)(e.into()))
}

/// Whether a non-directory is unchanged: type, permissions, owner, size,
/// mtime (to the nanosecond), link target or device number.
fn same_entry(old: &Path, new: &Path, a: &fs::Metadata, b: &fs::Metadata) -> bool {
    if a.file_type() != b.file_type()
        || a.mode() != b.mode()
        || a.uid() != b.uid()
        || a.gid() != b.gid()
        || a.size() != b.size()
        || a.mtime() != b.mtime()
        || a.mtime_nsec() != b.mtime_nsec()
        || a.rdev() != b.rdev()
    {
        return false;
    }
    if a.file_type().is_symlink() {
        return fs::read_link(old).ok() == fs::read_link(new).ok();
    }
    true
}

/// Prunes directory `new` to what differs from `old` (`None`: all of it is
/// new), adding 0/0 character devices for deleted entries, as an overlay
/// upper dir has them. Returns whether anything is left in `new`.
pub fn prune(old: Option<&Path>, new: &Path) -> Result<bool, EngineError> {
    let dir_time = mtime(new)?;
    let mut kept = false;
    let mut names: Vec<_> = fs::read_dir(new)
        .map_err(io(new))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io(new))?;
    names.sort();
    for name in &names {
        let n = new.join(name);
        let nm = fs::symlink_metadata(&n).map_err(io(&n))?;
        let o = old.map(|d| d.join(name));
        let om = o.as_ref().and_then(|o| fs::symlink_metadata(o).ok());
        match (&om, nm.is_dir()) {
            (Some(om), true) if om.is_dir() => {
                let changed = om.mode() != nm.mode()
                    || om.uid() != nm.uid()
                    || om.gid() != nm.gid()
                    || om.mtime() != nm.mtime()
                    || om.mtime_nsec() != nm.mtime_nsec();
                let inner = prune(o.as_deref(), &n)?;
                if changed || inner {
                    kept = true;
                } else {
                    fs::remove_dir(&n).map_err(io(&n))?;
                }
            }
            (Some(_), true) => {
                // A directory where a lower non-directory was: overlay
                // marks such a directory opaque.
                rustix::fs::lsetxattr(
                    &n,
                    crate::layer::OVERLAY_OPAQUE_XATTR,
                    b"y",
                    rustix::fs::XattrFlags::empty(),
                )
                .map_err(|e| io(&n)(e.into()))?;
                kept = true;
            }
            (None, _) => kept = true,
            (Some(om), false) => {
                if let Some(o) = &o {
                    if same_entry(o, &n, om, &nm) {
                        fs::remove_file(&n).map_err(io(&n))?;
                        continue;
                    }
                }
                kept = true;
            }
        }
    }
    if let Some(old) = old {
        let mut gone: Vec<_> = fs::read_dir(old)
            .map_err(io(old))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io(old))?;
        gone.sort();
        for name in gone {
            let n = new.join(&name);
            if fs::symlink_metadata(&n).is_ok() || names.contains(&name) {
                continue;
            }
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &n,
                FileType::CharacterDevice,
                Mode::from_raw_mode(0),
                0,
            )
            .map_err(|e| io(&n)(e.into()))?;
            kept = true;
        }
    }
    set_mtime(new, dir_time)?;
    Ok(kept)
}
