//! Files written by h5write, read back by h5py (libhdf5; skipped without it, except under CI=true) and by the
//! pure-Rust `hdf5-reader` the datasets crate reads HDF5Data sources with: same names, shapes, dtype and values.

use h5write::Dataset;

/// Datasets covering what the writer handles: Caffe's 4-D blobs, a 1-D label, a scalar, an empty dataset, a
/// non-ASCII name and a name longer than 255 bytes (a two-byte length field).
fn cases() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let blob: Vec<f32> = (0..2 * 3 * 4 * 5).map(|i| i as f32 * 0.25 - 7.0).collect();
    vec![
        ("data".into(), vec![2, 3, 4, 5], blob),
        ("label".into(), vec![2], vec![3.0, -1.5]),
        ("scalar".into(), vec![], vec![f32::MIN_POSITIVE]),
        ("empty".into(), vec![0, 4], vec![]),
        ("größe".into(), vec![3], vec![f32::MAX, -0.0, 1e-40]),
        ("n".repeat(300), vec![1, 1], vec![42.0]),
    ]
}

fn write_cases(path: &std::path::Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let cases = cases();
    let datasets: Vec<Dataset<'_>> = cases
        .iter()
        .map(|(name, shape, values)| Dataset { name, shape, values })
        .collect();
    h5write::write(path, &datasets).unwrap();
    cases
}

#[test]
fn hdf5_reader_reads_back_every_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("out.h5");
    let cases = write_cases(&path);
    let file = hdf5_reader::Hdf5File::open(&path).unwrap();
    for (name, shape, values) in &cases {
        let dataset = file.dataset(name).unwrap();
        let found: Vec<usize> = dataset.shape().iter().map(|&d| d as usize).collect();
        assert_eq!(&found, shape, "{name}");
        if values.is_empty() {
            continue;
        }
        let read: Vec<f32> = dataset.read_array::<f32>().unwrap().into_iter().collect();
        assert_eq!(
            read.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{name}"
        );
    }
}

#[test]
fn h5py_reads_back_every_dataset_exactly() {
    if !testkit::python_has(&["h5py", "numpy"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("out.h5");
    let cases = write_cases(&path);
    // h5py prints each dataset as: name (hex), shape, dtype, the values' bits.
    let script = r#"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    names = []
    f.visit(names.append)
    for name in sorted(names):
        d = f[name]
        bits = np.asarray(d[()], dtype=np.float32).reshape(-1).view(np.uint32)
        print(name.encode().hex(), list(d.shape), d.dtype.str, " ".join(str(b) for b in bits))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut expected: Vec<String> = cases
        .iter()
        .map(|(name, shape, values)| {
            let bits: Vec<String> = values.iter().map(|v| v.to_bits().to_string()).collect();
            let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
            format!("{hex} {shape:?} <f4 {}", bits.join(" "))
        })
        .collect();
    expected.sort();
    let found: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect();
    let expected: Vec<String> = expected.iter().map(|l| l.trim_end().to_string()).collect();
    assert_eq!(found, expected);
}

#[test]
fn a_bad_dataset_leaves_the_target_untouched_and_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("out.h5");
    std::fs::write(&path, b"before").unwrap();
    let err = h5write::write(
        &path,
        &[Dataset {
            name: "data",
            shape: &[2, 2],
            values: &[1.0],
        }],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("out.h5") && err.contains("dataset 'data'"), "{err}");
    assert!(!err.contains('\n'));
    assert_eq!(std::fs::read(&path).unwrap(), b"before");
}
