//! NPZ writing and reading: round trips, exact bytes, determinism, atomicity,
//! and errors on damaged or hostile archives.

use std::io::{Cursor, Write};
use std::path::Path;

use proptest::prelude::*;
use sparse::{write_scipy_sparse, Array, Csc, DType, NpyHeader, NpzError, NpzReader, NpzWriter};
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Files in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn round_trip_every_dtype_and_shape_kind() {
    let dir = temp_dir();
    let path = dir.path().join("all.npz");
    let mut writer = NpzWriter::create(&path).unwrap();
    writer
        .add(
            "f32",
            &[2, 3],
            &[1.5f32, -0.0, f32::NAN, f32::INFINITY, f32::MIN_POSITIVE, -7.25],
        )
        .unwrap();
    writer.add("f64", &[2], &[1e300f64, -2.5]).unwrap();
    writer.add("conv1/3x3", &[1, 1, 3], &[0u8, 128, 255]).unwrap();
    writer.add("u16", &[3], &[0u16, 40_000, 65_535]).unwrap();
    writer.add("i32", &[], &[-123i32]).unwrap();
    writer.add("i64", &[0, 4], &[] as &[i64]).unwrap();
    writer.add_byte_strings("names", &[3], &[b"csc", b"a", b""]).unwrap();
    writer.finish().unwrap();

    let mut reader = NpzReader::open(&path).unwrap();
    assert_eq!(reader.keys(), ["f32", "f64", "conv1/3x3", "u16", "i32", "i64", "names"]);
    let f32s = reader.read::<f32>("f32").unwrap();
    assert_eq!(f32s.shape, [2, 3]);
    let bits: Vec<u32> = f32s.data.iter().map(|v| v.to_bits()).collect();
    let expected = [1.5f32, -0.0, f32::NAN, f32::INFINITY, f32::MIN_POSITIVE, -7.25].map(f32::to_bits);
    assert_eq!(bits, expected);
    assert_eq!(
        reader.read::<f64>("f64").unwrap(),
        Array {
            shape: vec![2],
            data: vec![1e300, -2.5]
        }
    );
    assert_eq!(
        reader.read::<u8>("conv1/3x3").unwrap(),
        Array {
            shape: vec![1, 1, 3],
            data: vec![0, 128, 255]
        }
    );
    assert_eq!(reader.read::<u16>("u16").unwrap().data, [0, 40_000, 65_535]);
    assert_eq!(
        reader.read::<i32>("i32").unwrap(),
        Array {
            shape: vec![],
            data: vec![-123]
        }
    );
    assert_eq!(
        reader.read::<i64>("i64").unwrap(),
        Array {
            shape: vec![0, 4],
            data: vec![]
        }
    );
    assert_eq!(
        reader.header("names").unwrap(),
        NpyHeader {
            dtype: DType::Bytes(3),
            shape: vec![3]
        }
    );
    let names = reader.read_byte_strings("names").unwrap();
    assert_eq!((names.shape.as_slice(), names.width(), names.len()), (&[3][..], 3, 3));
    assert_eq!(names.iter().collect::<Vec<_>>(), [&b"csc"[..], b"a", b""]);
    assert_eq!(
        (names.get(1), names.get(3), names.get(usize::MAX)),
        (Some(&b"a"[..]), None, None)
    );
}

/// The bytes of a one-member archive, checked field by field against the zip
/// specification (APPNOTE 4.3.7) and numpy's .npy layout.
#[test]
fn member_bytes_by_hand() {
    let dir = temp_dir();
    let path = dir.path().join("one.npz");
    let mut writer = NpzWriter::create(&path).unwrap();
    writer.add("a", &[2], &[1.0f32, -2.0]).unwrap();
    writer.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    assert_eq!(&bytes[0..4], b"PK\x03\x04");
    assert_eq!(u16_at(8), 0, "compression method: stored");
    assert_eq!(u16_at(10), 0, "DOS time 00:00:00");
    assert_eq!(u16_at(12), (1 << 5) | 1, "DOS date 1980-01-01");
    // 128-byte .npy header + 8 data bytes.
    assert_eq!(u32_at(18), 136, "compressed size");
    assert_eq!(u32_at(22), 136, "uncompressed size");
    assert_eq!(u16_at(26), 5, "name length");
    let extra_len = usize::from(u16_at(28));
    assert_eq!(extra_len, 0, "no extra fields (timestamps, uid/gid)");
    assert_eq!(&bytes[30..35], b"a.npy");
    let data = &bytes[30 + 5 + extra_len..30 + 5 + extra_len + 136];
    let mut expected = b"\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }".to_vec();
    expected.resize(127, b' ');
    expected.push(b'\n');
    expected.extend_from_slice(&[0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0]);
    assert_eq!(data, expected.as_slice());
}

fn write_sample(path: &Path) {
    let mut writer = NpzWriter::create(path).unwrap();
    writer.add("conv1/3x3", &[2, 2], &[1.0f32, 0.0, 0.0, 4.0]).unwrap();
    writer.add("gaps", &[3], &[3u8, 0, 1]).unwrap();
    writer.add_byte_strings("format", &[], &[b"csc"]).unwrap();
    writer.finish().unwrap();
}

#[test]
fn same_arrays_give_same_bytes() {
    let first = temp_dir();
    let second = temp_dir();
    write_sample(&first.path().join("x.npz"));
    // Another folder and file name, another moment: nothing may differ (the
    // timestamp itself is pinned to 1980-01-01 by `member_bytes_by_hand`).
    write_sample(&second.path().join("y.npz"));
    let a = std::fs::read(first.path().join("x.npz")).unwrap();
    let b = std::fs::read(second.path().join("y.npz")).unwrap();
    assert_eq!(a, b);
}

#[test]
fn writer_rejects_bad_members_and_stays_usable() {
    let dir = temp_dir();
    let path = dir.path().join("w.npz");
    let mut writer = NpzWriter::create(&path).unwrap();
    writer.add("a", &[1], &[1.0f32]).unwrap();
    assert!(matches!(writer.add("a", &[1], &[2.0f32]), Err(NpzError::DuplicateKey { key }) if key == "a"));
    assert!(matches!(
        writer.add_byte_strings("a", &[], &[b"x"]),
        Err(NpzError::DuplicateKey { .. })
    ));
    assert!(matches!(
        writer.add("", &[1], &[1.0f32]),
        Err(NpzError::InvalidKey { .. })
    ));
    assert!(matches!(
        writer.add("a\0b", &[1], &[1.0f32]),
        Err(NpzError::InvalidKey { .. })
    ));
    assert!(matches!(
        writer.add("b", &[2, 2], &[1.0f32; 3]),
        Err(NpzError::ShapeLenMismatch {
            expected: 4,
            actual: 3,
            ..
        })
    ));
    assert!(matches!(
        writer.add("b", &[usize::MAX, 2], &[1.0f32]),
        Err(NpzError::ShapeOverflow { .. })
    ));
    assert!(matches!(
        writer.add("b", &[1; 65], &[1.0f32]),
        Err(NpzError::TooManyDims { ndim: 65, .. })
    ));
    writer.add("b", &[1; 64], &[5i64]).unwrap();
    writer.finish().unwrap();
    let mut reader = NpzReader::open(&path).unwrap();
    assert_eq!(reader.keys(), ["a", "b"]);
    assert_eq!(reader.read::<i64>("b").unwrap().shape, vec![1; 64]);
}

#[test]
fn unfinished_writer_leaves_nothing_and_keeps_the_old_file() {
    let dir = temp_dir();
    let path = dir.path().join("keep.npz");
    std::fs::write(&path, b"old contents").unwrap();
    {
        let mut writer = NpzWriter::create(&path).unwrap();
        writer.add("a", &[3], &[1.0f32, 2.0, 3.0]).unwrap();
        // Dropped without finish, as after an error in the caller.
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"old contents");
    assert_eq!(listing(dir.path()), ["keep.npz"]);

    let fresh = dir.path().join("fresh.npz");
    drop(NpzWriter::create(&fresh).unwrap());
    assert!(!fresh.exists());

    // finish replaces the old file atomically and leaves no temporary behind.
    let mut writer = NpzWriter::create(&path).unwrap();
    writer.add("a", &[1], &[9.0f32]).unwrap();
    writer.finish().unwrap();
    assert_eq!(listing(dir.path()), ["keep.npz"]);
    assert_eq!(NpzReader::open(&path).unwrap().read::<f32>("a").unwrap().data, [9.0]);
}

#[cfg(unix)]
#[test]
fn output_gets_the_permissions_of_an_ordinary_new_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    let path = dir.path().join("mode.npz");
    write_sample(&path);
    let ordinary = dir.path().join("ordinary");
    std::fs::File::create(&ordinary).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), mode(&ordinary));
}

#[test]
fn create_in_missing_folder_is_an_io_error() {
    let dir = temp_dir();
    let err = NpzWriter::create(dir.path().join("no/such/folder/x.npz"))
        .err()
        .unwrap();
    assert!(
        matches!(err, NpzError::Output(outfile::OutputError::Io { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("no/such/folder"), "{err}");
}

#[test]
fn scipy_members_by_hand() {
    // 2 x 3 matrix [[0, 1, 0], [2, 0, 3]] -> CSC by hand:
    // column 0: row 1 (2); column 1: row 0 (1); column 2: row 1 (3).
    let csc = Csc::from_dense(&[0.0, 1.0, 0.0, 2.0, 0.0, 3.0], &[2, 3]).unwrap();
    let dir = temp_dir();
    let path = dir.path().join("m.npz");
    write_scipy_sparse(&path, &csc).unwrap();
    let mut reader = NpzReader::open(&path).unwrap();
    assert_eq!(reader.keys(), ["indices", "indptr", "format", "shape", "data"]);
    assert_eq!(reader.read::<i32>("indices").unwrap().data, [1, 0, 1]);
    assert_eq!(reader.read::<i32>("indptr").unwrap().data, [0, 1, 2, 3]);
    let format = reader.read_byte_strings("format").unwrap();
    assert_eq!(format.shape, Vec::<usize>::new());
    assert_eq!(format.iter().collect::<Vec<_>>(), [b"csc"]);
    assert_eq!(
        reader.read::<i64>("shape").unwrap(),
        Array {
            shape: vec![2],
            data: vec![2, 3]
        }
    );
    assert_eq!(reader.read::<f32>("data").unwrap().data, [2.0, 1.0, 3.0]);
}

/// An archive whose members hold exactly the given bytes.
fn raw_archive(members: &[(&str, &[u8], CompressionMethod)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes, method) in members {
        zip.start_file(*name, SimpleFileOptions::default().compression_method(*method))
            .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// A .npy member with the given dict text (numpy's framing, 1.0).
fn npy(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(data);
    out
}

fn reader_of(bytes: Vec<u8>) -> NpzReader<Cursor<Vec<u8>>> {
    NpzReader::new(Cursor::new(bytes)).unwrap()
}

const STORED: CompressionMethod = CompressionMethod::Stored;

#[test]
fn reader_reports_bad_headers_with_key_and_offset() {
    let f4 = |shape: &str| format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n");
    let bad_magic = b"\x93NUMPZ\x01\x00\x00\x00".to_vec();
    let version4 = b"\x93NUMPY\x04\x00\x00\x00".to_vec();
    let long_header = b"\x93NUMPY\x01\x00\xff\x00{}".to_vec();
    let short = b"\x93NUM".to_vec();
    let syntax = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,) ", &[0; 8]);
    let fortran = npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", &[0; 16]);
    let big_endian = npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", &[0; 8]);
    let gigabytes = npy(&f4("(1000000000,)"), &[0; 8]);
    let overflow = npy(&f4("(18446744073709551615, 2)"), &[0; 8]);
    let too_short = npy(&f4("(3,)"), &[0; 8]);
    let archive = raw_archive(&[
        ("magic.npy", &bad_magic, STORED),
        ("version.npy", &version4, STORED),
        ("long.npy", &long_header, STORED),
        ("short.npy", &short, STORED),
        ("syntax.npy", &syntax, STORED),
        ("fortran.npy", &fortran, STORED),
        ("big.npy", &big_endian, STORED),
        ("gigabytes.npy", &gigabytes, STORED),
        ("overflow.npy", &overflow, STORED),
        ("too_short.npy", &too_short, STORED),
        ("readme.txt", b"not an array", STORED),
    ]);
    let mut reader = reader_of(archive);
    assert_eq!(
        reader.keys(),
        [
            "magic",
            "version",
            "long",
            "short",
            "syntax",
            "fortran",
            "big",
            "gigabytes",
            "overflow",
            "too_short"
        ]
    );
    let header_error = |err: NpzError| match err {
        NpzError::Header { key, offset, reason } => (key, offset, reason),
        other => panic!("expected a header error, got {other:?}"),
    };
    let (key, offset, _) = header_error(reader.read::<f32>("magic").unwrap_err());
    assert_eq!((key.as_str(), offset), ("magic", 0));
    let (_, offset, reason) = header_error(reader.read::<f32>("version").unwrap_err());
    assert_eq!((offset, reason.as_str()), (6, "unsupported .npy format version 4.0"));
    let (_, offset, reason) = header_error(reader.read::<f32>("long").unwrap_err());
    assert_eq!(
        (offset, reason.as_str()),
        (8, "header length 255 runs past the member's 12 bytes")
    );
    // "\x93NUM" is 4 bytes: the member ends at byte 4.
    let (_, offset, reason) = header_error(reader.read::<f32>("short").unwrap_err());
    assert_eq!(
        (offset, reason.as_str()),
        (4, "member ends after 4 bytes, inside the 8-byte magic and version")
    );
    let (_, offset, reason) = header_error(reader.read::<f32>("syntax").unwrap_err());
    // The dict starts at byte 10; the missing '}' is at its end (55 bytes).
    assert_eq!(
        (offset, reason.as_str()),
        (10 + 55, "expected ',' or '}', found end of header")
    );
    assert!(matches!(reader.read::<f32>("fortran"), Err(NpzError::FortranOrder { key }) if key == "fortran"));
    assert!(matches!(reader.read::<f32>("big"), Err(NpzError::UnsupportedDtype { descr, .. }) if descr == ">f4"));
    assert!(matches!(
        reader.read::<f32>("gigabytes"),
        Err(NpzError::SizeMismatch {
            claimed: 4_000_000_000,
            available: 8,
            ..
        })
    ));
    assert!(matches!(reader.header("overflow"), Err(NpzError::ShapeOverflow { .. })));
    let err = reader.read::<f32>("too_short").unwrap_err();
    assert!(
        matches!(
            err,
            NpzError::SizeMismatch {
                claimed: 12,
                available: 8,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("\"too_short\""), "{err}");
    assert!(matches!(reader.read::<f32>("readme"), Err(NpzError::MissingKey { .. })));
    assert!(matches!(reader.read::<f32>("absent"), Err(NpzError::MissingKey { .. })));
}

#[test]
fn reader_checks_dtypes() {
    let dir = temp_dir();
    let path = dir.path().join("d.npz");
    write_sample(&path);
    let mut reader = NpzReader::open(&path).unwrap();
    let err = reader.read::<f64>("conv1/3x3").unwrap_err();
    assert!(
        matches!(&err, NpzError::DtypeMismatch { key, expected, found } if key == "conv1/3x3" && expected == "<f8" && found == "<f4"),
        "{err}"
    );
    assert!(matches!(
        reader.read_byte_strings("gaps"),
        Err(NpzError::DtypeMismatch { .. })
    ));
    assert!(matches!(
        reader.read::<u8>("format"),
        Err(NpzError::DtypeMismatch { .. })
    ));
}

#[test]
fn reader_reads_deflated_members_and_detects_truncation_and_corruption() {
    let member = npy(
        "{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }",
        &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0],
    );
    let deflated = raw_archive(&[("x.npy", &member, CompressionMethod::Deflated)]);
    assert_eq!(reader_of(deflated.clone()).read::<i32>("x").unwrap().data, [1, 2, 3, 4]);

    // Claim 4 more elements than the deflate stream holds: patch the shape
    // and the declared uncompressed size (local header at 22, central
    // directory entry at +24), keeping the member self-consistent.
    let longer = npy(
        "{'descr': '<i4', 'fortran_order': False, 'shape': (8,), }",
        &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0],
    );
    let mut archive = raw_archive(&[("x.npy", &longer, CompressionMethod::Deflated)]);
    let declared = longer.len() as u32 + 16;
    archive[22..26].copy_from_slice(&declared.to_le_bytes());
    let central = archive.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    archive[central + 24..central + 28].copy_from_slice(&declared.to_le_bytes());
    let err = reader_of(archive).read::<i32>("x").unwrap_err();
    assert!(
        matches!(
            err,
            NpzError::Truncated {
                expected: 32,
                got: 16,
                ..
            }
        ),
        "{err}"
    );

    // Flip one data byte of a stored member: the CRC check fails.
    let mut archive = raw_archive(&[("x.npy", &member, STORED)]);
    let data_at = archive.windows(4).position(|w| w == [3, 0, 0, 0]).unwrap();
    archive[data_at] = 9;
    let err = reader_of(archive).read::<i32>("x").unwrap_err();
    assert!(matches!(&err, NpzError::MemberIo { key, .. } if key == "x"), "{err}");
}

#[test]
fn not_a_zip_is_an_error() {
    assert!(matches!(
        NpzReader::new(Cursor::new(b"hello".to_vec())),
        Err(NpzError::Zip { .. })
    ));
    let dir = temp_dir();
    let path = dir.path().join("sample.npz");
    write_sample(&path);
    let bytes = std::fs::read(&path).unwrap();
    // Cut before the central directory.
    assert!(NpzReader::new(Cursor::new(bytes[..bytes.len() / 2].to_vec())).is_err());
    assert!(matches!(
        NpzReader::open(dir.path().join("missing.npz")),
        Err(NpzError::Io { .. })
    ));
}

/// Every read path of `bytes`: must return, never panic.
fn read_everything(bytes: Vec<u8>) {
    let Ok(mut reader) = NpzReader::new(Cursor::new(bytes)) else {
        return;
    };
    for key in reader.keys().to_vec() {
        let _ = reader.header(&key);
        let _ = reader.read::<f32>(&key);
        let _ = reader.read::<u8>(&key);
        let _ = reader.read::<i64>(&key);
        let _ = reader.read_byte_strings(&key);
    }
}

fn sample_bytes() -> Vec<u8> {
    let dir = temp_dir();
    let path = dir.path().join("s.npz");
    write_sample(&path);
    std::fs::read(path).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        read_everything(bytes);
    }

    /// Valid archives with a few bytes overwritten and/or cut short.
    #[test]
    fn damaged_archives_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let mut bytes = sample_bytes();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if do_cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        read_everything(bytes);
    }
}
