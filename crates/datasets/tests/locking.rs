//! `LmdbDataset::open` registers its reader in `lock.mdb` as Caffe does, and reads without locks when the lock
//! file cannot serve it: not writable (read-only fixture folders), or held by another LMDB version.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use caffe_proto::Datum;
use datasets::{Dataset, LmdbDataset, LmdbWriter, RecordValues};

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
    assert!(!lmdb.is_locked());
    assert_reads_the_record(&lmdb);
    // The other version's lock file was left exactly as it was.
    assert_eq!(std::fs::read(&lock_path).unwrap(), header);
    drop(held);
}

#[test]
fn a_read_only_folder_is_read_without_locks() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("db");
    write_one_record(&path);
    std::fs::remove_file(path.join("lock.mdb")).unwrap();
    std::fs::set_permissions(path.join("data.mdb"), std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555)).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Permissions do not stop root: the lock file can be created, so the open is a locked one.
        eprintln!("note: running as root, the read-only folder is writable; checking the locked open instead");
        let lmdb = LmdbDataset::open(&path).unwrap();
        assert!(lmdb.is_locked());
        assert_reads_the_record(&lmdb);
    } else {
        let lmdb = LmdbDataset::open(&path).unwrap();
        assert!(!lmdb.is_locked());
        assert_reads_the_record(&lmdb);
        assert!(!path.join("lock.mdb").exists());
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
