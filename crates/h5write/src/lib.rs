//! A minimal HDF5 writer: float32 datasets in the root group of a new file, as Caffe's `HDF5Output` layer writes
//! them (`H5LTmake_dataset_float`).
//!
//! The file uses the format's version 2 structures, which HDF5 1.8 and later read (h5py, `h5dump`, the
//! `hdf5-reader` crate): a version 2 superblock, version 2 object headers (the root group holds its links compactly
//! in its header), each dataset's values contiguous, little-endian IEEE float32. Every structure of version 2
//! carries its Jenkins lookup3 checksum, computed as the format defines it. Nothing else of HDF5 is written: no
//! attributes, chunking, compression or nested groups.
//!
//! [`write()`] replaces the target atomically through the workspace's one output path ([`outfile::write_atomic`]);
//! [`encode`] gives the bytes.
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("out.h5");
//! h5write::write(
//!     &path,
//!     &[
//!         h5write::Dataset { name: "data", shape: &[2, 3], values: &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0] },
//!         h5write::Dataset { name: "label", shape: &[2], values: &[7.0, 8.0] },
//!     ],
//! )?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

/// One dataset to write: its name in the root group, its shape and its values in row-major (C) order.
#[derive(Clone, Copy, Debug)]
pub struct Dataset<'a> {
    /// The link name: not empty, not `.`, without `/`.
    pub name: &'a str,
    /// The dimensions (at most 32, as HDF5 allows; none for a scalar of one value).
    pub shape: &'a [usize],
    /// Exactly as many values as the shape holds.
    pub values: &'a [f32],
}

/// What can go wrong writing a file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A dataset cannot be written as given.
    #[error("dataset '{name}': {problem}")]
    Dataset {
        /// The dataset's name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// A dataset could not be written to this file.
    #[error("{}: {source}", path.display())]
    File {
        /// The target file.
        path: PathBuf,
        /// The dataset's error.
        source: Box<Error>,
    },
    /// Writing the file failed (the target is then untouched).
    #[error(transparent)]
    Output(#[from] outfile::OutputError),
}

/// Writes `datasets` as a new HDF5 file at `path`, atomically replacing what was there.
///
/// # Errors
/// [`Error::File`] for a dataset that cannot be written (bad name, shape or size), [`Error::Output`] when the file
/// system fails; either way the target is untouched.
pub fn write(path: impl AsRef<Path>, datasets: &[Dataset<'_>]) -> Result<(), Error> {
    let path = path.as_ref();
    let bytes = encode(datasets).map_err(|e| Error::File {
        path: path.to_path_buf(),
        source: Box::new(e),
    })?;
    outfile::write_atomic(path, |w| w.write_all(&bytes))?;
    Ok(())
}

/// The bytes of an HDF5 file holding `datasets` in its root group, in the order given.
///
/// # Errors
/// [`Error::Dataset`] for an empty, `.` or `/`-holding name, a name given twice, more than 32 dimensions, values
/// that do not fill the shape, or sizes past what the file's 64-bit addresses hold.
pub fn encode(datasets: &[Dataset<'_>]) -> Result<Vec<u8>, Error> {
    for (i, dataset) in datasets.iter().enumerate() {
        check(dataset)?;
        if datasets[..i].iter().any(|d| d.name == dataset.name) {
            return Err(bad(dataset, "named twice".into()));
        }
    }
    // Sizes first (every address field has a fixed width), then the same structures with their addresses.
    let root_len = object_header(&root_messages(datasets, &vec![0; datasets.len()])?)?.len();
    let mut header_lens = Vec::with_capacity(datasets.len());
    for dataset in datasets {
        header_lens.push(object_header(&dataset_messages(dataset, 0)?)?.len());
    }
    let too_large = || Error::Dataset {
        name: datasets.last().map_or_else(String::new, |d| d.name.to_string()),
        problem: "the file would pass 2^64 bytes".into(),
    };
    let mut at = (SUPERBLOCK_LEN + root_len) as u64;
    let mut header_at = Vec::with_capacity(datasets.len());
    for len in &header_lens {
        header_at.push(at);
        at = at.checked_add(*len as u64).ok_or_else(too_large)?;
    }
    let mut data_at = Vec::with_capacity(datasets.len());
    for dataset in datasets {
        data_at.push(at);
        at = at.checked_add(data_bytes(dataset)?).ok_or_else(too_large)?;
    }
    let end = at;
    let capacity = usize::try_from(end).map_err(|_| too_large())?;
    let mut out = Vec::with_capacity(capacity);
    superblock(&mut out, end, SUPERBLOCK_LEN as u64);
    out.extend(object_header(&root_messages(datasets, &header_at)?)?);
    for (dataset, &address) in datasets.iter().zip(&data_at) {
        out.extend(object_header(&dataset_messages(dataset, address)?)?);
    }
    for dataset in datasets {
        for value in dataset.values {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    debug_assert_eq!(out.len(), capacity);
    Ok(out)
}

/// The format signature every HDF5 file starts with.
const SIGNATURE: [u8; 8] = [0x89, b'H', b'D', b'F', b'\r', b'\n', 0x1a, b'\n'];
/// The undefined address (all bits set).
const UNDEF: u64 = u64::MAX;
/// A version 2 superblock with 8-byte offsets and lengths.
const SUPERBLOCK_LEN: usize = 48;
/// HDF5's limit on a dataspace's rank.
const MAX_RANK: usize = 32;

/// Header message types (HDF5 file format specification, IV.A.2).
const DATASPACE: u8 = 0x01;
const LINK_INFO: u8 = 0x02;
const DATATYPE: u8 = 0x03;
const FILL_VALUE: u8 = 0x05;
const LINK: u8 = 0x06;
const LAYOUT: u8 = 0x08;
const GROUP_INFO: u8 = 0x0A;
/// Header message flag: the message never changes.
const CONSTANT: u8 = 0x01;

fn bad(dataset: &Dataset<'_>, problem: String) -> Error {
    Error::Dataset {
        name: dataset.name.to_string(),
        problem,
    }
}

fn check(dataset: &Dataset<'_>) -> Result<(), Error> {
    if dataset.name.is_empty() || dataset.name == "." || dataset.name.contains('/') {
        return Err(bad(
            dataset,
            "a name must be non-empty, not '.', and hold no '/'".into(),
        ));
    }
    if dataset.shape.len() > MAX_RANK {
        return Err(bad(
            dataset,
            format!("{} dimensions; HDF5 allows at most {MAX_RANK}", dataset.shape.len()),
        ));
    }
    let count = dataset.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if count != Some(dataset.values.len()) {
        return Err(bad(
            dataset,
            format!(
                "shape {:?} does not hold the {} values given",
                dataset.shape,
                dataset.values.len()
            ),
        ));
    }
    Ok(())
}

fn data_bytes(dataset: &Dataset<'_>) -> Result<u64, Error> {
    (dataset.values.len() as u64)
        .checked_mul(4)
        .ok_or_else(|| bad(dataset, "too many values".into()))
}

/// A message: type, flags, data.
type Message = (u8, u8, Vec<u8>);

/// The root group's messages: compact link storage (Link Info, Group Info) and a hard link per dataset to its
/// object header at `addresses[i]`.
fn root_messages(datasets: &[Dataset<'_>], addresses: &[u64]) -> Result<Vec<Message>, Error> {
    let mut link_info = vec![0u8, 0u8]; // version 0, no creation order
    link_info.extend(UNDEF.to_le_bytes()); // no fractal heap: links are in the header
    link_info.extend(UNDEF.to_le_bytes()); // no name index
    let mut messages = vec![(LINK_INFO, 0, link_info), (GROUP_INFO, 0, vec![0u8, 0u8])];
    for (dataset, &address) in datasets.iter().zip(addresses) {
        let name = dataset.name.as_bytes();
        let (size_bits, size_len) = width(name.len() as u64);
        let mut flags = size_bits;
        let ascii = dataset.name.is_ascii();
        if !ascii {
            flags |= 0x10; // character set present: UTF-8
        }
        let mut link = vec![1u8, flags];
        if !ascii {
            link.push(1);
        }
        link.extend(&(name.len() as u64).to_le_bytes()[..size_len]);
        link.extend(name);
        link.extend(address.to_le_bytes());
        messages.push((LINK, 0, link));
    }
    Ok(messages)
}

/// A dataset's messages: dataspace, float32 datatype, fill value (never written), contiguous layout at `address`.
fn dataset_messages(dataset: &Dataset<'_>, address: u64) -> Result<Vec<Message>, Error> {
    let rank = dataset.shape.len();
    // Version 2; no maximum dimensions (they equal the dimensions); simple, or scalar for no dimension.
    let mut space = vec![2u8, rank as u8, 0, u8::from(rank > 0)];
    for &d in dataset.shape {
        space.extend((d as u64).to_le_bytes());
    }
    // Version 1, class 1 (floating point); little-endian, mantissa's leading bit implied, sign at bit 31.
    let mut datatype = vec![0x11u8, 0x20, 0x1f, 0x00];
    datatype.extend(4u32.to_le_bytes()); // bytes per value
    datatype.extend(0u16.to_le_bytes()); // bit offset
    datatype.extend(32u16.to_le_bytes()); // bit precision
    datatype.extend([23u8, 8, 0, 23]); // exponent at bit 23, 8 bits; mantissa at bit 0, 23 bits
    datatype.extend(127u32.to_le_bytes()); // exponent bias
                                           // Version 3: space allocated late, fill value written if set, none set.
    let fill = vec![3u8, 0x02 | (0x02 << 2)];
    let bytes = data_bytes(dataset)?;
    let mut layout = vec![3u8, 1]; // version 3, contiguous
    layout.extend((if bytes == 0 { UNDEF } else { address }).to_le_bytes());
    layout.extend(bytes.to_le_bytes());
    Ok(vec![
        (DATASPACE, 0, space),
        (DATATYPE, CONSTANT, datatype),
        (FILL_VALUE, CONSTANT, fill),
        (LAYOUT, 0, layout),
    ])
}

/// The flag bits and byte count of a size field wide enough for `n` (1, 2, 4 or 8 bytes).
fn width(n: u64) -> (u8, usize) {
    if n <= 0xff {
        (0, 1)
    } else if n <= 0xffff {
        (1, 2)
    } else if n <= 0xffff_ffff {
        (2, 4)
    } else {
        (3, 8)
    }
}

/// A version 2 object header ("OHDR") holding `messages` in its one chunk, with its checksum.
fn object_header(messages: &[Message]) -> Result<Vec<u8>, Error> {
    let chunk: usize = messages.iter().map(|(_, _, data)| 4 + data.len()).sum();
    let (size_bits, size_len) = width(chunk as u64);
    let mut out = Vec::with_capacity(6 + size_len + chunk + 4);
    out.extend(b"OHDR");
    out.push(2); // version
    out.push(size_bits); // no times, no attribute phase change values, no creation order
    out.extend(&(chunk as u64).to_le_bytes()[..size_len]);
    for (kind, flags, data) in messages {
        let size = u16::try_from(data.len()).map_err(|_| Error::Dataset {
            name: String::new(),
            problem: format!(
                "a header message of {} bytes passes HDF5's 65535 (name too long)",
                data.len()
            ),
        })?;
        out.push(*kind);
        out.extend(size.to_le_bytes());
        out.push(*flags);
        out.extend(data);
    }
    let checksum = lookup3(&out);
    out.extend(checksum.to_le_bytes());
    Ok(out)
}

/// A version 2 superblock: 8-byte offsets and lengths, no extension, the root group's header at `root`.
fn superblock(out: &mut Vec<u8>, end_of_file: u64, root: u64) {
    let start = out.len();
    out.extend(SIGNATURE);
    out.extend([2u8, 8, 8, 0]); // version, offset size, length size, consistency flags
    out.extend(0u64.to_le_bytes()); // base address
    out.extend(UNDEF.to_le_bytes()); // superblock extension
    out.extend(end_of_file.to_le_bytes());
    out.extend(root.to_le_bytes());
    let checksum = lookup3(&out[start..]);
    out.extend(checksum.to_le_bytes());
}

/// Bob Jenkins' lookup3 `hashlittle` with initial value 0: HDF5's metadata checksum (`H5_checksum_metadata`).
pub fn lookup3(data: &[u8]) -> u32 {
    let init = 0xdead_beef_u32.wrapping_add(data.len() as u32);
    let (mut a, mut b, mut c) = (init, init, init);
    let word = |bytes: &[u8]| {
        let mut w = [0u8; 4];
        w[..bytes.len()].copy_from_slice(bytes);
        u32::from_le_bytes(w)
    };
    let mut rest = data;
    while rest.len() > 12 {
        a = a.wrapping_add(word(&rest[0..4]));
        b = b.wrapping_add(word(&rest[4..8]));
        c = c.wrapping_add(word(&rest[8..12]));
        // mix
        a = a.wrapping_sub(c) ^ c.rotate_left(4);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a) ^ a.rotate_left(6);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b) ^ b.rotate_left(8);
        b = b.wrapping_add(a);
        a = a.wrapping_sub(c) ^ c.rotate_left(16);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a) ^ a.rotate_left(19);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b) ^ b.rotate_left(4);
        b = b.wrapping_add(a);
        rest = &rest[12..];
    }
    if rest.is_empty() {
        return c;
    }
    // The last 1..=12 bytes, zero-padded (hashlittle's byte-wise tail).
    let mut tail = [0u8; 12];
    tail[..rest.len()].copy_from_slice(rest);
    a = a.wrapping_add(word(&tail[0..4]));
    b = b.wrapping_add(word(&tail[4..8]));
    c = c.wrapping_add(word(&tail[8..12]));
    // final
    c = (c ^ b).wrapping_sub(b.rotate_left(14));
    a = (a ^ c).wrapping_sub(c.rotate_left(11));
    b = (b ^ a).wrapping_sub(a.rotate_left(25));
    c = (c ^ b).wrapping_sub(b.rotate_left(16));
    a = (a ^ c).wrapping_sub(c.rotate_left(4));
    b = (b ^ a).wrapping_sub(a.rotate_left(14));
    (c ^ b).wrapping_sub(b.rotate_left(24))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup3_gives_the_reference_hashes() {
        // lookup3.c's own self-test values (driver5) for hashlittle with initial value 0.
        assert_eq!(lookup3(b""), 0xdead_beef);
        assert_eq!(lookup3(b"Four score and seven years ago"), 0x1777_0551);
    }

    #[test]
    fn bad_datasets_are_refused_by_name() {
        let ok = [1.0f32, 2.0];
        for (dataset, problem) in [
            (
                Dataset {
                    name: "",
                    shape: &[2],
                    values: &ok,
                },
                "non-empty",
            ),
            (
                Dataset {
                    name: "a/b",
                    shape: &[2],
                    values: &ok,
                },
                "no '/'",
            ),
            (
                Dataset {
                    name: "x",
                    shape: &[3],
                    values: &ok,
                },
                "does not hold the 2 values",
            ),
            (
                Dataset {
                    name: "x",
                    shape: &[usize::MAX, 2],
                    values: &ok,
                },
                "does not hold",
            ),
            (
                Dataset {
                    name: "x",
                    shape: &[1; 33],
                    values: &ok[..1],
                },
                "at most 32",
            ),
        ] {
            let err = encode(&[dataset]).unwrap_err().to_string();
            assert!(err.contains(problem), "{err}");
        }
        let twice = Dataset {
            name: "x",
            shape: &[2],
            values: &ok,
        };
        assert!(encode(&[twice, twice]).unwrap_err().to_string().contains("named twice"));
    }

    #[test]
    fn the_superblock_points_past_everything() {
        let bytes = encode(&[Dataset {
            name: "d",
            shape: &[3],
            values: &[1.0, 2.0, 3.0],
        }])
        .unwrap();
        assert_eq!(&bytes[..8], &SIGNATURE);
        let eof = u64::from_le_bytes(bytes[28..36].try_into().unwrap());
        assert_eq!(eof, bytes.len() as u64);
        assert_eq!(lookup3(&bytes[..44]).to_le_bytes(), bytes[44..48]);
        assert_eq!(
            &bytes[bytes.len() - 12..],
            [1.0f32, 2.0, 3.0].map(f32::to_le_bytes).concat()
        );
    }
}
