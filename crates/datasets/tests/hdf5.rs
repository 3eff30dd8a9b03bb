//! HDF5Data sources on .h5 files written by h5py (skipped without python3 and h5py, except under CI=true).

use std::path::Path;
use std::process::Command;

use datasets::{Error, Hdf5Data};

/// Runs `script` with python3 (h5py, numpy) in `dir`.
fn python(dir: &Path, script: &str) {
    let out = Command::new("python3")
        .current_dir(dir)
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

const FILES: &str = r#"
import h5py, numpy as np
with h5py.File("a.h5", "w") as f:
    f["data"] = np.arange(12, dtype=np.float32).reshape(3, 1, 2, 2) / 4
    f["label"] = np.array([0, 1, 2], dtype=np.float64)
with h5py.File("b.h5", "w") as f:
    f.create_dataset("data", data=np.arange(100, 108, dtype=np.uint8).reshape(2, 1, 2, 2), compression="gzip", chunks=(1, 1, 2, 2))
    f["label"] = np.array([10, 11], dtype=np.int32)
    f["other"] = np.zeros(3)
with h5py.File("bad_rows.h5", "w") as f:
    f["data"] = np.zeros((3, 1, 2, 2), dtype=np.float32)
    f["label"] = np.zeros(2, dtype=np.float32)
with h5py.File("bad_shape.h5", "w") as f:
    f["data"] = np.zeros((2, 1, 3, 1), dtype=np.float32)
    f["label"] = np.zeros(2, dtype=np.float32)
with h5py.File("strings.h5", "w") as f:
    f["data"] = np.zeros((2, 4), dtype=np.float32)
    f["label"] = np.array([b"x", b"y"])
open("list.txt", "w").write("a.h5\n  b.h5\n")
"#;

fn tops() -> Vec<String> {
    vec!["data".into(), "label".into()]
}

#[test]
fn rows_in_caffes_order_across_files() {
    if !testkit::python_has(&["h5py", "numpy"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    python(tmp.path(), FILES);
    let mut data = Hdf5Data::open(&tmp.path().join("list.txt"), &tops(), false, 0, tmp.path()).unwrap();
    assert_eq!(data.top_shapes(4), [vec![4, 1, 2, 2], vec![4]]);
    let mut out = Vec::new();
    data.next_batch(4, &mut out).unwrap();
    // a.h5's three rows, then b.h5's first (gzip-chunked uint8, converted to float).
    let expected: Vec<f32> = (0..12)
        .map(|v| v as f32 / 4.0)
        .chain([100.0, 101.0, 102.0, 103.0])
        .collect();
    assert_eq!(out[0], expected);
    assert_eq!(out[1], [0.0, 1.0, 2.0, 10.0]);
    data.next_batch(2, &mut out).unwrap();
    assert_eq!(out[1], [11.0, 0.0]); // back to the first file after the last
    assert_eq!(out[0][..4], [104.0, 105.0, 106.0, 107.0]);
}

#[test]
fn shuffling_is_seeded_and_covers_every_row_each_pass() {
    if !testkit::python_has(&["h5py", "numpy"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    python(tmp.path(), FILES);
    let labels = |seed: u32| {
        let mut data = Hdf5Data::open(&tmp.path().join("list.txt"), &tops(), true, seed, tmp.path()).unwrap();
        let mut out = Vec::new();
        data.next_batch(15, &mut out).unwrap();
        out[1].clone()
    };
    let first = labels(5489);
    assert_eq!(first, labels(5489));
    assert_ne!(first, labels(1701));
    for pass in first.chunks(5) {
        let mut sorted = pass.to_vec();
        sorted.sort_by(f32::total_cmp);
        assert_eq!(sorted, [0.0, 1.0, 2.0, 10.0, 11.0]);
    }
    // A file's rows stay together within a pass (Caffe reads one file at a time).
    let in_a = |v: f32| v < 10.0;
    assert!(
        first[..5].windows(2).filter(|w| in_a(w[0]) != in_a(w[1])).count() == 1,
        "{first:?}"
    );
}

#[test]
fn bad_lists_files_and_datasets_are_named() {
    if !testkit::python_has(&["h5py", "numpy"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    python(tmp.path(), FILES);
    let dir = tmp.path();
    let open = |list: &str, tops: &[String]| {
        std::fs::write(dir.join("l.txt"), list).unwrap();
        let err: Error = Hdf5Data::open(&dir.join("l.txt"), tops, false, 0, dir).err().unwrap();
        let msg = err.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        msg
    };
    let msg = open("", &tops());
    assert_eq!(msg, format!("{}: the list names no file", dir.join("l.txt").display()));
    let msg = open("a.h5", &["data".into(), "nope".into()]);
    assert!(
        msg.starts_with(&format!("{}: dataset 'nope': ", dir.join("a.h5").display())),
        "{msg}"
    );
    let msg = open("bad_rows.h5", &tops());
    assert!(
        msg.ends_with("bad_rows.h5: dataset 'label' has 2 rows but 'data' has 3"),
        "{msg}"
    );
    let msg = open("strings.h5", &tops());
    assert!(msg.contains("strings.h5: dataset 'label' is not numeric"), "{msg}");
    let msg = open("list.txt", &tops());
    assert!(
        msg.starts_with(&format!("{}: ", dir.join("list.txt").display())),
        "{msg}"
    );
    let msg = open("missing.h5", &tops());
    assert!(
        msg.starts_with(&format!("{}: ", dir.join("missing.h5").display())),
        "{msg}"
    );
    // A later file whose rows differ in shape fails when it is reached.
    std::fs::write(dir.join("l.txt"), "a.h5 bad_shape.h5").unwrap();
    let mut data = Hdf5Data::open(&dir.join("l.txt"), &tops(), false, 0, dir).unwrap();
    let msg = data.next_batch(3, &mut Vec::new()).err().unwrap().to_string();
    assert!(
        msg.ends_with("bad_shape.h5: dataset 'data' has rows of shape [1, 3, 1] but the first file's have [1, 2, 2]"),
        "{msg}"
    );
}
