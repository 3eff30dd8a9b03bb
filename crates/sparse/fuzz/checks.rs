//! The body of the `npz` fuzz target: any bytes read as an `.npz` archive (through [`sparse::NpzReader`]) and as a
//! standalone `.npy` file ([`sparse::read_npy`]). Shared by the fuzz target and `tests/fuzz_corpus.rs`.
//!
//! Promises checked: nothing panics or allocates beyond what the input backs; keys are unique; a member whose
//! header reads can be read with its own dtype (or fails with an error) and is refused with `DtypeMismatch` for
//! any other; an array read has the header's shape and exactly as many elements as the shape says.

use sparse::{read_npy, Array, DType, NpyElement, NpyHeader, NpzError, NpzReader};
use std::io::Cursor;
use std::path::Path;

/// `data` as an npz archive, then as a standalone npy file written to `scratch`.
pub fn check(data: &[u8], scratch: &Path) {
    npz(data);
    let path = scratch.join("input.npy");
    std::fs::write(&path, data).expect("write the npy");
    npy(&path);
}

fn count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

fn check_array<T>(array: &Array<T>, shape: &[usize]) {
    assert_eq!(array.shape, shape, "the array has its header's shape");
    assert_eq!(
        Some(array.data.len()),
        count(shape),
        "the array holds as many elements as its shape says"
    );
}

fn read_as<T: NpyElement, R: std::io::Read + std::io::Seek>(reader: &mut NpzReader<R>, key: &str, header: &NpyHeader) {
    match reader.read::<T>(key) {
        Ok(array) => check_array(&array, &header.shape),
        Err(e) => {
            assert!(
                !matches!(e, NpzError::DtypeMismatch { .. }),
                "its own dtype cannot mismatch: {e}"
            );
            let _ = e.to_string();
        }
    }
}

fn refused_as<T: NpyElement, R: std::io::Read + std::io::Seek>(reader: &mut NpzReader<R>, key: &str) {
    match reader.read::<T>(key) {
        Err(NpzError::DtypeMismatch { .. }) => {}
        Err(e) => panic!("reading '{key}' as another dtype must be a DtypeMismatch, not: {e}"),
        Ok(_) => panic!("reading '{key}' as another dtype must be a DtypeMismatch, not a success"),
    }
}

fn npz(data: &[u8]) {
    let Ok(mut reader) = NpzReader::new(Cursor::new(data)) else {
        return;
    };
    let keys = reader.keys().to_vec();
    let unique: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "keys are unique");
    for key in &keys {
        let header = match reader.header(key) {
            Ok(header) => header,
            Err(e) => {
                let _ = e.to_string();
                continue;
            }
        };
        assert!(
            count(&header.shape).is_some(),
            "a header that reads has a countable shape"
        );
        match header.dtype {
            DType::F32 => read_as::<f32, _>(&mut reader, key, &header),
            DType::F64 => read_as::<f64, _>(&mut reader, key, &header),
            DType::U8 => read_as::<u8, _>(&mut reader, key, &header),
            DType::U16 => read_as::<u16, _>(&mut reader, key, &header),
            DType::I32 => read_as::<i32, _>(&mut reader, key, &header),
            DType::I64 => read_as::<i64, _>(&mut reader, key, &header),
            DType::Bytes(width) => match reader.read_byte_strings(key) {
                Ok(strings) => {
                    assert_eq!(strings.shape, header.shape);
                    assert_eq!(strings.width(), width);
                    assert_eq!(Some(strings.len()), count(&header.shape));
                    assert_eq!(strings.iter().count(), strings.len());
                    assert!(strings.iter().all(|s| s.len() <= width));
                    assert!(strings.get(strings.len()).is_none());
                }
                Err(e) => {
                    let _ = e.to_string();
                }
            },
        }
        if header.dtype == DType::F32 {
            refused_as::<u8, _>(&mut reader, key);
        } else {
            refused_as::<f32, _>(&mut reader, key);
        }
    }
    let missing = "\u{1}not a key";
    if !keys.iter().any(|k| k == missing) {
        assert!(matches!(reader.read::<f32>(missing), Err(NpzError::MissingKey { .. })));
    }
}

fn npy_as<T: NpyElement>(path: &Path) {
    match read_npy::<T>(path) {
        Ok(array) => {
            let shape = array.shape.clone();
            check_array(&array, &shape);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fn npy(path: &Path) {
    npy_as::<f32>(path);
    npy_as::<f64>(path);
    npy_as::<u8>(path);
    npy_as::<u16>(path);
    npy_as::<i32>(path);
    npy_as::<i64>(path);
}
