//! Interoperability with numpy and scipy, run as a python3 subprocess.
//!
//! Each Python script asserts on its own and exits non-zero on a mismatch.
//! Without python3, numpy or scipy the tests fail when `CI=true` and
//! otherwise print a note and return.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use sparse::{encode_gaps, write_scipy_sparse, Csc, Csr, Gaps, NpzError, NpzReader, NpzWriter};

/// Whether python3 with numpy and scipy can run (probed once); panics in CI if not.
fn python_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    let ok = *READY.get_or_init(|| {
        Command::new("python3")
            .args(["-c", "import numpy, scipy.sparse"])
            .output()
            .map(|out| out.status.success())
            .unwrap_or(false)
    });
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("python3 with numpy and scipy is required in CI (pip install numpy scipy)");
        }
        eprintln!("note: python3 with numpy and scipy not found; skipping this interop test");
    }
    ok
}

/// Runs `script` with `args` in sys.argv[1:], failing the test with its output if it fails.
fn run_python(script: &str, args: &[&Path]) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python failed:\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// splitmix64, for deterministic test data.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn np_load_reads_our_arrays() {
    if !python_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ours.npz");
    let mut writer = NpzWriter::create(&path).unwrap();
    writer
        .add(
            "conv1/3x3",
            &[2, 3],
            &[1.5f32, -0.0, f32::NAN, f32::INFINITY, 1.0e-40, -7.25],
        )
        .unwrap();
    writer.add("fc6/w", &[2], &[1e300f64, -2.5]).unwrap();
    writer.add("gaps", &[1, 3], &[0u8, 200, 255]).unwrap();
    writer.add("u16", &[2], &[40_000u16, 65_535]).unwrap();
    writer.add("scalar", &[], &[-123i32]).unwrap();
    writer.add("empty", &[0, 4], &[] as &[i64]).unwrap();
    writer.add("couche_é", &[1], &[7i64]).unwrap();
    writer.add_byte_strings("format", &[], &[b"csc"]).unwrap();
    writer.add_byte_strings("names", &[2], &[b"ab", b"c"]).unwrap();
    writer.finish().unwrap();

    run_python(
        r#"
import sys, numpy as np
with np.load(sys.argv[1], allow_pickle=False) as f:
    assert f.files == ['conv1/3x3', 'fc6/w', 'gaps', 'u16', 'scalar', 'empty', 'couche_é', 'format', 'names'], f.files
    def same(key, expected):
        got = f[key]
        assert got.dtype == expected.dtype, (key, got.dtype, expected.dtype)
        assert got.shape == expected.shape, (key, got.shape, expected.shape)
        assert got.flags.c_contiguous
        assert got.tobytes() == expected.tobytes(), (key, got, expected)
    same('conv1/3x3', np.array([[1.5, -0.0, np.nan], [np.inf, 1.0e-40, -7.25]], np.float32))
    same('fc6/w', np.array([1e300, -2.5], np.float64))
    same('gaps', np.array([[0, 200, 255]], np.uint8))
    same('u16', np.array([40000, 65535], np.uint16))
    same('scalar', np.array(-123, np.int32))
    same('empty', np.zeros((0, 4), np.int64))
    same('couche_é', np.array([7], np.int64))
    same('format', np.array(b'csc'))
    assert f['format'].item() == b'csc'
    same('names', np.array([b'ab', b'c']))
"#,
        &[&path],
    );
}

#[test]
fn python_decoder_from_the_rule_rebuilds_our_encoding() {
    if !python_ready() {
        return;
    }
    // "small": runs of zeros up to 600 around random values, -0.0 among the
    // zeros, a trailing run; checked for every B. "long": runs around 2^16 and
    // 2^17 and a 70 000-zero tail, checked for B = 15 and 16 (kept apart
    // because the Python loops are slow).
    let mut state = 7u64;
    let mut small = Vec::new();
    for _ in 0..300 {
        let r = next(&mut state);
        let run = if r.is_multiple_of(3) {
            (r >> 8) as usize % 600
        } else {
            (r >> 8) as usize % 8
        };
        for k in 0..run {
            small.push(if k % 13 == 5 { -0.0f32 } else { 0.0 });
        }
        small.push(((r >> 40) as f32 / 1e6) - 8.0);
    }
    small.extend(std::iter::repeat_n(0.0f32, 1500));
    let mut long = Vec::new();
    for (i, run) in [65_534usize, 65_535, 65_536, 65_537, 131_073, 3]
        .into_iter()
        .enumerate()
    {
        long.extend(std::iter::repeat_n(0.0f32, run));
        long.push(i as f32 + 0.25);
    }
    long.extend(std::iter::repeat_n(0.0f32, 70_000));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gaps.npz");
    let mut writer = NpzWriter::create(&path).unwrap();
    let mut cases = Vec::new();
    for (name, dense, all_bits) in [
        ("small", &small, (1u8..=16).collect::<Vec<_>>()),
        ("long", &long, vec![15, 16]),
    ] {
        writer.add(&format!("{name}/dense"), &[dense.len()], dense).unwrap();
        for bits in all_bits {
            let encoded = encode_gaps(dense, bits).unwrap();
            writer
                .add(
                    &format!("{name}/b{bits}/values"),
                    &[encoded.values.len()],
                    &encoded.values,
                )
                .unwrap();
            let key = format!("{name}/b{bits}/gaps");
            match &encoded.gaps {
                Gaps::U8(g) => writer.add(&key, &[g.len()], g).unwrap(),
                Gaps::U16(g) => writer.add(&key, &[g.len()], g).unwrap(),
            }
            cases.push(format!("{name}:{bits}"));
        }
    }
    writer.finish().unwrap();

    run_python(
        r#"
import sys, numpy as np
f = np.load(sys.argv[1], allow_pickle=False)
for case in sys.argv[2].split(','):
    name, b = case.split(':')
    b = int(b)
    dense = f[f'{name}/dense']
    expected = dense.copy()
    expected[expected == 0] = 0.0          # -0.0 decodes as +0.0
    values, gaps = f[f'{name}/b{b}/values'], f[f'{name}/b{b}/gaps']
    assert values.dtype == np.float32
    assert gaps.dtype == (np.uint8 if b <= 8 else np.uint16), (case, gaps.dtype)
    assert int(gaps.max()) <= 2**b - 1
    # Decoder, from the rule: for each entry, emit gap zeros, then the value.
    out = []
    for v, g in zip(values.tolist(), gaps.tolist()):
        out.extend([0.0] * g)
        out.append(v)
    out = np.array(out, np.float32)
    assert out.shape == dense.shape, (case, out.shape, dense.shape)
    assert out.view(np.uint32).tolist() == expected.view(np.uint32).tolist(), case
    # Encoder, from the rule, must give the very same entries.
    mx, run, ev, eg = 2**b - 1, 0, [], []
    for v in dense.tolist():
        if v != 0.0:
            ev.append(v); eg.append(run); run = 0
        elif run == mx:
            ev.append(0.0); eg.append(mx); run = 0
        else:
            run += 1
    if run > 0:
        ev.append(0.0); eg.append(run - 1)
    assert np.array(ev, np.float32).view(np.uint32).tolist() == values.view(np.uint32).tolist(), case
    assert eg == gaps.tolist(), case
"#,
        &[&path, Path::new(&cases.join(","))],
    );
}

#[test]
fn scipy_load_npz_reads_our_matrices() {
    if !python_ready() {
        return;
    }
    // A 6 x 3 x 2 x 2 blob (6 x 12 matrix) at ~30 % density with -0.0 and a
    // zero row and column, plus a 1-D blob (a 40 x 1 matrix).
    let mut state = 11u64;
    let mut blob: Vec<f32> = (0..72)
        .map(|_| {
            let r = next(&mut state);
            match r % 10 {
                0..=2 => ((r >> 40) as f32 / 1e5) - 80.0,
                3 => -0.0,
                _ => 0.0,
            }
        })
        .collect();
    blob[24..36].fill(0.0); // row 2
    for row in 0..6 {
        blob[row * 12 + 5] = 0.0; // column 5
    }
    let column: Vec<f32> = (0..40).map(|i| if i % 7 == 3 { i as f32 } else { 0.0 }).collect();

    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    write_scipy_sparse(p("csc.npz"), &Csc::from_dense(&blob, &[6, 3, 2, 2]).unwrap()).unwrap();
    write_scipy_sparse(p("csr.npz"), &Csr::from_dense(&blob, &[6, 3, 2, 2]).unwrap()).unwrap();
    write_scipy_sparse(p("col.npz"), &Csc::from_dense(&column, &[40]).unwrap()).unwrap();
    let mut writer = NpzWriter::create(p("dense.npz")).unwrap();
    writer.add("blob", &[6, 3, 2, 2], &blob).unwrap();
    writer.add("column", &[40], &column).unwrap();
    writer.finish().unwrap();

    run_python(
        r#"
import sys, io, zipfile, numpy as np, scipy.sparse as sp
csc_path, csr_path, col_path, dense_path = sys.argv[1:5]
d = np.load(dense_path, allow_pickle=False)
for path, fmt, dense in [(csc_path, 'csc', d['blob'].reshape(6, -1)),
                         (csr_path, 'csr', d['blob'].reshape(6, -1)),
                         (col_path, 'csc', d['column'].reshape(40, -1))]:
    m = sp.load_npz(path)
    assert m.format == fmt, (path, m.format)
    assert m.shape == dense.shape, (m.shape, dense.shape)
    assert m.dtype == np.float32 and m.indices.dtype == np.int32 and m.indptr.dtype == np.int32
    assert m.has_sorted_indices and m.has_canonical_format
    assert np.array_equal(m.toarray(), dense)
    # scipy's own conversion of the dense matrix gives the same arrays ...
    ref = (sp.csc_matrix if fmt == 'csc' else sp.csr_matrix)(dense)
    assert ref.data.tobytes() == m.data.tobytes()
    assert ref.indices.tolist() == m.indices.tolist() and ref.indptr.tolist() == m.indptr.tolist()
    # ... and save_npz(compressed=False) writes the same members, byte for byte.
    buf = io.BytesIO()
    sp.save_npz(buf, ref, compressed=False)
    with zipfile.ZipFile(buf) as theirs, zipfile.ZipFile(path) as ours:
        assert theirs.namelist() == ours.namelist(), (theirs.namelist(), ours.namelist())
        for name in theirs.namelist():
            assert ours.getinfo(name).compress_type == zipfile.ZIP_STORED
            assert theirs.read(name) == ours.read(name), name
"#,
        &[&p("csc.npz"), &p("csr.npz"), &p("col.npz"), &p("dense.npz")],
    );
}

#[test]
fn we_read_what_numpy_and_scipy_write() {
    if !python_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    run_python(
        r#"
import sys, numpy as np, scipy.sparse as sp
stored, compressed, odd, sparse_path = sys.argv[1:5]
arrays = {
    'conv1/3x3': np.arange(12, dtype=np.float32).reshape(3, 4) * 0.5 - 1,
    'f64': np.array([1e300, -2.5]),
    'u8': np.array([[0, 200], [255, 7]], np.uint8),
    'u16': np.array([65535, 1], np.uint16),
    'scalar': np.array(-123, np.int32),
    'i64': np.arange(5, dtype=np.int64) - 2,
    'empty': np.zeros((0, 3), np.float32),
    'names': np.array([b'ab', b'c']),
}
np.savez(stored, **arrays)
np.savez_compressed(compressed, **arrays)
np.savez(odd, fortran=np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
         big=np.array([1, 2], dtype='>f4'), text=np.array(['unicode']))
m = sp.csc_matrix(np.array([[0, 1.5, 0], [2, 0, 0], [0, 0, -3]], np.float32))
sp.save_npz(sparse_path, m)   # scipy's default: compressed
"#,
        &[&p("stored.npz"), &p("compressed.npz"), &p("odd.npz"), &p("sparse.npz")],
    );

    for name in ["stored.npz", "compressed.npz"] {
        let mut reader = NpzReader::open(p(name)).unwrap();
        assert_eq!(
            reader.keys(),
            ["conv1/3x3", "f64", "u8", "u16", "scalar", "i64", "empty", "names"]
        );
        let conv = reader.read::<f32>("conv1/3x3").unwrap();
        assert_eq!(conv.shape, [3, 4]);
        let expected: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 1.0).collect();
        assert_eq!(conv.data, expected);
        assert_eq!(reader.read::<f64>("f64").unwrap().data, [1e300, -2.5]);
        let u8s = reader.read::<u8>("u8").unwrap();
        assert_eq!((u8s.shape, u8s.data), (vec![2, 2], vec![0, 200, 255, 7]));
        assert_eq!(reader.read::<u16>("u16").unwrap().data, [65535, 1]);
        let scalar = reader.read::<i32>("scalar").unwrap();
        assert_eq!((scalar.shape, scalar.data), (vec![], vec![-123]));
        assert_eq!(reader.read::<i64>("i64").unwrap().data, [-2, -1, 0, 1, 2]);
        let empty = reader.read::<f32>("empty").unwrap();
        assert_eq!((empty.shape, empty.data), (vec![0, 3], vec![]));
        let names = reader.read_byte_strings("names").unwrap();
        assert_eq!(names.iter().collect::<Vec<_>>(), [&b"ab"[..], b"c"]);
    }

    let mut odd = NpzReader::open(p("odd.npz")).unwrap();
    assert!(matches!(odd.read::<f32>("fortran"), Err(NpzError::FortranOrder { .. })));
    assert!(matches!(odd.read::<f32>("big"), Err(NpzError::UnsupportedDtype { descr, .. }) if descr == ">f4"));
    assert!(matches!(odd.read_byte_strings("text"), Err(NpzError::UnsupportedDtype { descr, .. }) if descr == "<U7"));

    // The 3 x 3 CSC matrix, by hand: column 0: row 1 (2); column 1: row 0 (1.5); column 2: row 2 (-3).
    let mut sparse = NpzReader::open(p("sparse.npz")).unwrap();
    let format = sparse.read_byte_strings("format").unwrap();
    assert_eq!(format.iter().collect::<Vec<_>>(), [b"csc"]);
    assert_eq!(sparse.read::<i64>("shape").unwrap().data, [3, 3]);
    assert_eq!(sparse.read::<f32>("data").unwrap().data, [2.0, 1.5, -3.0]);
    assert_eq!(sparse.read::<i32>("indices").unwrap().data, [1, 0, 2]);
    assert_eq!(sparse.read::<i32>("indptr").unwrap().data, [0, 1, 2, 3]);
}
