//! The cache tests need no privileges: run as root (as CI does), this test
//! runs them again as `nobody` (uid and gid 65534), from a copy of the test
//! binary that user can read.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::Command;

#[test]
fn the_cache_tests_pass_as_a_non_root_user() {
    // /proc/self belongs to the process's effective uid.
    let euid = std::fs::metadata("/proc/self").unwrap().uid();
    if euid != 0 {
        // Running as a user already: the cache tests themselves show it.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("engine-tests");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = Command::new(&exe)
        .args(["engine::tests::cache::", "--test-threads", "2"])
        .env("TMPDIR", "/tmp")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "as uid 65534:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("test result: ok. 3 passed"),
        "the cache tests ran as uid 65534:\n{stdout}"
    );
}
