//! The guarantees of `outfile`: outputs never replace inputs, and a write killed at any moment leaves the old file
//! or the complete new one.
#![cfg(unix)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use outfile::{check_outputs, write_atomic, AtomicFile, OutputError};

#[test]
fn an_output_that_is_an_input_under_any_spelling_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("model.caffemodel");
    std::fs::write(&input, b"weights").unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::os::unix::fs::symlink(&input, d.join("link.caffemodel")).unwrap();
    std::os::unix::fs::symlink(d, d.join("sub/up")).unwrap();
    std::fs::hard_link(&input, d.join("hard.caffemodel")).unwrap();
    for spelling in [
        input.clone(),
        d.join("./model.caffemodel"),
        d.join("sub/../model.caffemodel"),
        d.join("link.caffemodel"),
        d.join("sub/up/model.caffemodel"),
        d.join("hard.caffemodel"),
    ] {
        let err = check_outputs(&[&spelling], &[Path::new("/nonexistent/other"), &input]).unwrap_err();
        assert!(matches!(err, OutputError::OutputIsInput { .. }), "{spelling:?}: {err}");
        assert!(err.to_string().contains("refusing to write an output over the input"));
    }
    // A new file beside it, also through the linked folder, is fine.
    check_outputs(&[&d.join("sub/up/new.caffemodel"), &d.join("other.npz")], &[&input]).unwrap();
}

#[test]
fn outputs_inside_input_folders_folders_holding_inputs_and_twice_named_outputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lmdb = d.join("db");
    std::fs::create_dir(&lmdb).unwrap();
    std::fs::write(lmdb.join("data.mdb"), b"").unwrap();
    let err = check_outputs(&[&lmdb.join("data.mdb")], &[&lmdb]).unwrap_err();
    assert!(matches!(err, OutputError::OutputInsideInput { .. }), "{err}");
    let err = check_outputs(&[&lmdb.join("predictions.npy")], &[&lmdb]).unwrap_err();
    assert!(matches!(err, OutputError::OutputInsideInput { .. }), "{err}");
    let err = check_outputs(&[d], &[&lmdb.join("data.mdb")]).unwrap_err();
    assert!(matches!(err, OutputError::InputInsideOutput { .. }), "{err}");
    let err = check_outputs(&[&d.join("a.npy"), &d.join("./a.npy")], &[]).unwrap_err();
    assert!(matches!(err, OutputError::OutputTwice { .. }), "{err}");
}

#[test]
fn a_failed_write_leaves_the_target_and_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.bin");
    std::fs::write(&target, b"old").unwrap();
    let err = write_atomic(&target, |w| {
        w.write_all(&[7; 100_000])?;
        Err(std::io::Error::other("disk on fire"))
    })
    .unwrap_err();
    assert!(err.to_string().contains("disk on fire"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"old");
    // Dropped without commit: gone too.
    let mut file = AtomicFile::create(&target).unwrap();
    file.write_all(b"half").unwrap();
    drop(file);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["out.bin"]);
    // A folder is not replaced by a file; a path without a file name names nothing.
    assert!(matches!(
        write_atomic(dir.path(), |_| Ok(())),
        Err(OutputError::IsFolder { .. })
    ));
    assert!(matches!(AtomicFile::create(".."), Err(OutputError::NoFileName { .. })));
    write_atomic(&target, |w| w.write_all(b"new")).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
}

/// Bytes of each version the killed writer writes: large enough that a kill often lands mid-write.
const VERSION_BYTES: usize = 8 << 20;

/// Version `round` of the file: its number, then bytes that depend on it, so any mix of two versions shows.
fn version(round: u64) -> Vec<u8> {
    let mut bytes = round.to_le_bytes().to_vec();
    bytes.extend((0..VERSION_BYTES as u64).map(|i| (i.wrapping_mul(31) ^ round.wrapping_mul(0x9e37)) as u8));
    bytes
}

/// Not a test of its own: the writer the kill test starts in a child process (it does nothing otherwise).
#[test]
fn killed_writer_child() {
    let Some(target) = std::env::var_os("OUTFILE_KILL_TARGET") else {
        return;
    };
    for round in 1.. {
        write_atomic(Path::new(&target), |w| w.write_all(&version(round))).unwrap();
    }
}

#[test]
fn a_write_killed_at_any_moment_leaves_the_old_file_or_the_complete_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("model.caffemodel");
    write_atomic(&target, |w| w.write_all(&version(0))).unwrap();
    let mut seen_new = false;
    for attempt in 0..12u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "killed_writer_child", "--nocapture", "--test-threads=1"])
            .env("OUTFILE_KILL_TARGET", &target)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill at spread-out moments: during start-up, in a write, between a write and its rename.
        std::thread::sleep(Duration::from_millis(3 + attempt * 17));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let bytes = std::fs::read(&target).unwrap();
        assert_eq!(bytes.len(), 8 + VERSION_BYTES, "attempt {attempt}: a partial file");
        let round = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert!(
            bytes == version(round),
            "attempt {attempt}: version {round} mixed with another"
        );
        seen_new |= round > 0;
    }
    assert!(
        seen_new,
        "the writer never completed a version: the kills proved nothing"
    );
    // Only stray temporary files may remain beside it, never another name; they show kills landed mid-write.
    let mut strays = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            name == "model.caffemodel" || name.starts_with(".model.caffemodel."),
            "{name}"
        );
        strays += usize::from(name != "model.caffemodel");
    }
    assert!(strays > 0, "no kill landed during a write: the test proved nothing");
}
