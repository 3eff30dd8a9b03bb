//! Standalone .npy files: ours read by numpy, numpy's read by us, and bad files refused.

#[test]
fn npy_files_roundtrip_and_match_numpy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.npy");
    let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
    sparse::write_npy(&path, &[2, 3, 4], &data).unwrap();
    let back = sparse::read_npy::<f32>(&path).unwrap();
    assert_eq!(back.shape, vec![2, 3, 4]);
    assert_eq!(back.data, data);
    assert!(sparse::read_npy::<u8>(&path).is_err());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let err = sparse::read_npy::<f32>(&path).unwrap_err().to_string();
    assert!(err.contains("a.npy"), "{err}");
    if !testkit::python_has(&["numpy"]) {
        return;
    }
    // numpy writes one; we read it; numpy reads ours.
    let theirs = dir.path().join("np.npy");
    let ours = dir.path().join("ours.npy");
    sparse::write_npy(&ours, &[3], &[1u8, 2, 255]).unwrap();
    let script = format!(
        "import numpy as np; np.save('{}', np.arange(6, dtype=np.int64).reshape(2, 3)); a = np.load('{}'); assert a.dtype == np.uint8 and list(a) == [1, 2, 255]",
        theirs.display(),
        ours.display()
    );
    let status = std::process::Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success());
    let a = sparse::read_npy::<i64>(&theirs).unwrap();
    assert_eq!((a.shape, a.data), (vec![2, 3], vec![0, 1, 2, 3, 4, 5]));
}
