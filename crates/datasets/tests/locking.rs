//! `LmdbDataset::open` registers its reader in `lock.mdb` as Caffe does, and reads without locks when the lock
//! file cannot serve it: not writable (read-only fixture folders), or held by another LMDB version.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use caffe_proto::Datum;
use datasets::{Dataset, LmdbDataset, LmdbWriter, LockState, RecordValues};

fn write_one_record(path: &Path) {
    let mut writer = LmdbWriter::create(path).unwrap();
    let datum = Datum {
        channels: Some(1),
        height: Some(1),
        width: Some(1),
        data: Some(vec![42]),
        label: Some(7),
        ..Default::default()
    };
    writer.put_datum(b"00000000", &datum).unwrap();
    writer.finish().unwrap();
}

fn assert_reads_the_record(lmdb: &LmdbDataset) {
    let mut reader = lmdb.reader().unwrap();
    let record = reader.next().unwrap();
    assert_eq!((record.label(), record.values()), (7, RecordValues::Bytes(&[42])));
}

#[cfg(target_os = "linux")]
#[test]
fn a_lock_file_held_under_another_lmdb_version_means_reading_without_locks() {
    use std::os::fd::AsRawFd;

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("db");
    write_one_record(&path);
    // A lock file whose header is LMDB's magic with another lock format (what a Caffe linked against
    // liblmdb 0.9 leaves while it reads), held with a shared lock on byte 0 as a live reader process holds it.
    // An open file description lock conflicts with LMDB's fcntl locks even inside this process.
    let lock_path = path.join("lock.mdb");
    let mut header = vec![0u8; 8192];
    header[..4].copy_from_slice(&0xBEEF_C0DEu32.to_ne_bytes());
    header[4..8].copy_from_slice(&1u32.to_ne_bytes());
    std::fs::write(&lock_path, &header).unwrap();
    let held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock_path)
        .unwrap();
    let lock = libc::flock {
        l_type: libc::F_RDLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 1,
        l_pid: 0,
    };
    // SAFETY: a valid descriptor and a valid flock struct.
    assert_eq!(unsafe { libc::fcntl(held.as_raw_fd(), libc::F_OFD_SETLK, &lock) }, 0);

    let lmdb = LmdbDataset::open(&path).unwrap();
    assert_eq!(lmdb.lock_state(), LockState::OtherLmdbVersion);
    assert_reads_the_record(&lmdb);
    // The other version's lock file was left exactly as it was.
    assert_eq!(std::fs::read(&lock_path).unwrap(), header);
    drop(held);
}

/// Set in the child process the root run of `a_read_only_folder_is_read_without_locks` starts as user nobody:
/// the folder to check.
const CHILD_FOLDER: &str = "DATASETS_LOCKING_TEST_READ_ONLY_FOLDER";
/// Printed by that child when its check passed, so the parent knows the check ran (and was not filtered out).
const CHILD_PASSED: &str = "read-only folder check passed as uid";

/// The claim itself, for a process to which `path` (mode 0555, data.mdb 0444, no lock.mdb) really is read-only.
fn check_read_only_folder_is_read_without_locks(path: &Path) {
    // First that this process cannot create files there (so the lock file cannot be created either).
    let probe = std::fs::File::create(path.join("probe")).unwrap_err();
    assert_eq!(probe.kind(), std::io::ErrorKind::PermissionDenied, "{probe}");
    let lmdb = LmdbDataset::open(path).unwrap();
    // The fallback taken for this reason, not for another LMDB version's lock file or the caller's request.
    assert_eq!(lmdb.lock_state(), LockState::LockFileNotWritable);
    assert!(!lmdb.is_locked());
    assert_reads_the_record(&lmdb);
    assert!(!path.join("lock.mdb").exists());
}

/// Permissions do not stop root (CAP_DAC_OVERRIDE), and CI runs as root: there the check runs in a child
/// process of this test binary started as user and group nobody (65534), for whom the folder is read-only.
#[test]
fn a_read_only_folder_is_read_without_locks() {
    if let Some(folder) = std::env::var_os(CHILD_FOLDER) {
        check_read_only_folder_is_read_without_locks(Path::new(&folder));
        // SAFETY: geteuid has no preconditions.
        println!("{CHILD_PASSED} {}", unsafe { libc::geteuid() });
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Others (the child below) may enter the temporary folder.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = tmp.path().join("db");
    write_one_record(&path);
    std::fs::remove_file(path.join("lock.mdb")).unwrap();
    std::fs::set_permissions(path.join("data.mdb"), std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555)).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        check_read_only_folder_is_read_without_locks(&path);
    } else {
        use std::os::unix::process::CommandExt;
        // A copy of this test binary inside the open temporary folder: the target folder may sit where nobody cannot
        // reach (a CI checkout under /root).
        let exe = tmp.path().join("locking-test");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let output = std::process::Command::new(&exe)
            .args(["--exact", "a_read_only_folder_is_read_without_locks", "--nocapture"])
            .env(CHILD_FOLDER, &path)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap_or_else(|e| panic!("running {} as user nobody (65534): {e}", exe.display()));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.contains(&format!("{CHILD_PASSED} 65534")),
            "the check as user nobody failed ({}):\n{stdout}\n{stderr}",
            output.status
        );
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
