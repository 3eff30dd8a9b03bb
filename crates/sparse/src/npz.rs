//! `.npz` archives: a zip of `<key>.npy` members, as `np.savez` writes them.
//!
//! Writing is deterministic (same arrays, same calls: same bytes): members are
//! stored uncompressed (`ZIP_STORED`, like `np.savez`) in insertion order,
//! with a fixed 1980-01-01 00:00 timestamp, Unix 0644 permissions and no extra
//! fields that depend on the machine or the clock.
//!
//! Reading accepts stored and deflated members (`np.savez_compressed`,
//! scipy's default `save_npz`), and checks every size against the file before
//! allocating.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use outfile::AtomicFile;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, System, ZipArchive, ZipWriter};

use crate::compressed::CompressedMatrix;
use crate::error::NpzError;
use crate::npy::{self, element_count, read_full, Array, ByteStrings, DType, NpyElement, NpyHeader, MAX_DIMS};

/// Bytes converted per step when writing or reading array data.
const CHUNK_BYTES: usize = 1 << 20;

/// An archive is assembled in memory up to this size, then goes on in the file.
const IN_MEMORY_BYTES: u64 = 16 << 20;

/// Where an archive's bytes go while it is written: memory first, the temporary file once the archive outgrows
/// [`IN_MEMORY_BYTES`]. The zip writer seeks back over every member to fill in its size and checksum; in memory
/// that costs nothing, while on a file each member took five system calls (a LeNet export, 24 members, went from
/// 136 to 1 write call).
enum Sink {
    /// The archive so far, the file it will go to, and the size past which it goes there.
    Memory(std::io::Cursor<Vec<u8>>, AtomicFile, u64),
    /// The archive outgrew memory and goes on in the file.
    File(BufWriter<AtomicFile>),
    /// A spill to the file failed; the archive is lost.
    Failed,
}

impl Sink {
    /// Moves the archive so far to the file and goes on there, at the same position.
    fn spill(&mut self) -> std::io::Result<()> {
        let Sink::Memory(cursor, mut file, _) = std::mem::replace(self, Sink::Failed) else {
            return Ok(());
        };
        file.write_all(cursor.get_ref())?;
        file.seek(SeekFrom::Start(cursor.position()))?;
        *self = Sink::File(BufWriter::with_capacity(CHUNK_BYTES, file));
        Ok(())
    }

    /// The temporary file with every byte written to it.
    fn into_file(self) -> std::io::Result<AtomicFile> {
        match self {
            Sink::Memory(cursor, mut file, _) => {
                file.write_all(cursor.get_ref())?;
                Ok(file)
            }
            Sink::File(buffered) => buffered.into_inner().map_err(|e| e.into_error()),
            Sink::Failed => Err(Sink::failed()),
        }
    }

    fn failed() -> std::io::Error {
        std::io::Error::other("an earlier write to this archive failed")
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Sink::Memory(cursor, _, limit) = self {
            if cursor.position().saturating_add(buf.len() as u64) > *limit {
                self.spill()?;
            }
        }
        match self {
            Sink::Memory(cursor, ..) => cursor.write(buf),
            Sink::File(file) => file.write(buf),
            Sink::Failed => Err(Sink::failed()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Memory(..) => Ok(()),
            Sink::File(file) => file.flush(),
            Sink::Failed => Err(Sink::failed()),
        }
    }
}

impl Seek for Sink {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        match self {
            Sink::Memory(cursor, ..) => cursor.seek(to),
            Sink::File(file) => file.seek(to),
            Sink::Failed => Err(Sink::failed()),
        }
    }
}

/// Checks that `key` survives `np.load` unchanged.
fn validate_key(key: &str) -> Result<(), NpzError> {
    let invalid = |reason| {
        Err(NpzError::InvalidKey {
            key: key.to_string(),
            reason,
        })
    };
    if key.is_empty() {
        return invalid("keys must not be empty");
    }
    if key.contains('\0') {
        return invalid("keys must not contain NUL (Python's zipfile truncates names there)");
    }
    Ok(())
}

/// Writes an `.npz` archive atomically and deterministically.
///
/// Same arrays added in the same order give the same bytes: members
/// `<key>.npy` are stored uncompressed (`ZIP_STORED`, like `np.savez`) in
/// insertion order, with a fixed 1980-01-01 00:00 timestamp, Unix 0644
/// permissions and no extra fields; each member's bytes are what `np.save`
/// writes for the array. Keys may contain `/` (`"conv1/3x3"`); `np.load`
/// returns them unchanged.
///
/// Members go to a temporary file in the destination's folder; [`finish`]
/// syncs it and renames it over the destination. If the writer is dropped
/// without `finish`, or any step fails, the temporary file is removed and the
/// destination is left untouched.
///
/// [`finish`]: NpzWriter::finish
pub struct NpzWriter {
    zip: ZipWriter<Sink>,
    destination: PathBuf,
    keys: HashSet<String>,
    /// Set when a write failed half-way: the archive is then unusable.
    broken: bool,
}

impl NpzWriter {
    /// Starts an archive that [`finish`](NpzWriter::finish) will place at `path`.
    ///
    /// # Errors
    /// [`NpzError::Output`] if the temporary file cannot be created in `path`'s folder.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, NpzError> {
        let destination = path.as_ref().to_path_buf();
        let temp = AtomicFile::create(&destination)?;
        Ok(NpzWriter {
            zip: ZipWriter::new(Sink::Memory(std::io::Cursor::new(Vec::new()), temp, IN_MEMORY_BYTES)),
            destination,
            keys: HashSet::new(),
            broken: false,
        })
    }

    /// Adds a numeric array `key` of the given `shape` (C order).
    ///
    /// # Errors
    /// [`NpzError::InvalidKey`], [`NpzError::DuplicateKey`],
    /// [`NpzError::TooManyDims`], [`NpzError::ShapeOverflow`] or
    /// [`NpzError::ShapeLenMismatch`] (nothing written; the writer stays
    /// usable); [`NpzError::Zip`] or [`NpzError::MemberIo`] if writing failed
    /// (the archive is then discarded).
    pub fn add<T: NpyElement>(&mut self, key: &str, shape: &[usize], data: &[T]) -> Result<(), NpzError> {
        self.check_new_member(key, shape, data.len())?;
        let header = npy::encode_header(&T::DTYPE, shape);
        // Cannot overflow: the data is in memory.
        let data_bytes = (data.len() * T::DTYPE.item_size()) as u64;
        self.write_member(key, &header, data_bytes, |out| {
            // No larger than the member: a fresh 1 MiB buffer per small member was an mmap, page faults and a
            // munmap each.
            let mut buf = Vec::with_capacity((data_bytes as usize).min(CHUNK_BYTES));
            for chunk in data.chunks(CHUNK_BYTES / T::DTYPE.item_size()) {
                buf.clear();
                T::extend_le_bytes(chunk, &mut buf);
                out.write_all(&buf)?;
            }
            Ok(())
        })
    }

    /// Adds an array `key` of fixed-width byte strings (numpy `|S<n>`), with
    /// `n` the longest string's length (at least 1). Shorter strings are
    /// NUL-padded, so, as in numpy, trailing NULs do not survive a round trip.
    /// `np.array(b"csc")` is `add_byte_strings(key, &[], &[b"csc"])`.
    ///
    /// # Errors
    /// As [`add`](NpzWriter::add).
    pub fn add_byte_strings(&mut self, key: &str, shape: &[usize], strings: &[&[u8]]) -> Result<(), NpzError> {
        self.check_new_member(key, shape, strings.len())?;
        let width = strings.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        let header = npy::encode_header(&DType::Bytes(width), shape);
        let overflow = || NpzError::ShapeOverflow {
            key: key.to_string(),
            shape: shape.to_vec(),
        };
        let data_bytes = strings.len().checked_mul(width).ok_or_else(overflow)? as u64;
        self.write_member(key, &header, data_bytes, |out| {
            let mut buf = Vec::with_capacity(width);
            for string in strings {
                buf.clear();
                buf.extend_from_slice(string);
                buf.resize(width, 0);
                out.write_all(&buf)?;
            }
            Ok(())
        })
    }

    /// Validates a member before anything is written.
    fn check_new_member(&self, key: &str, shape: &[usize], len: usize) -> Result<(), NpzError> {
        if self.broken {
            return Err(NpzError::MemberIo {
                key: key.to_string(),
                source: std::io::Error::other("an earlier write to this archive failed; it is discarded"),
            });
        }
        validate_key(key)?;
        if self.keys.contains(key) {
            return Err(NpzError::DuplicateKey { key: key.to_string() });
        }
        if shape.len() > MAX_DIMS {
            return Err(NpzError::TooManyDims {
                key: key.to_string(),
                ndim: shape.len(),
            });
        }
        let expected = element_count(shape).ok_or_else(|| NpzError::ShapeOverflow {
            key: key.to_string(),
            shape: shape.to_vec(),
        })?;
        if expected != len {
            return Err(NpzError::ShapeLenMismatch {
                key: key.to_string(),
                shape: shape.to_vec(),
                expected,
                actual: len,
            });
        }
        Ok(())
    }

    fn write_member(
        &mut self,
        key: &str,
        header: &[u8],
        data_bytes: u64,
        write_data: impl FnOnce(&mut ZipWriter<Sink>) -> std::io::Result<()>,
    ) -> Result<(), NpzError> {
        let member_bytes = header.len() as u64 + data_bytes;
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .last_modified_time(DateTime::default())
            .system(System::Unix)
            .unix_permissions(0o644)
            // ZIP64 only where the 32-bit size fields cannot hold the member.
            .large_file(member_bytes >= u64::from(u32::MAX));
        // Any failure past this point leaves a partial member: poison the writer.
        self.broken = true;
        self.zip
            .start_file(format!("{key}.npy"), options)
            .map_err(|source| NpzError::Zip {
                key: Some(key.to_string()),
                source,
            })?;
        let io_error = |source| NpzError::MemberIo {
            key: key.to_string(),
            source,
        };
        self.zip.write_all(header).map_err(io_error)?;
        write_data(&mut self.zip).map_err(io_error)?;
        self.broken = false;
        self.keys.insert(key.to_string());
        Ok(())
    }

    /// Completes the archive, syncs it to disk and renames it to the
    /// destination (replacing any file there).
    ///
    /// # Errors
    /// [`NpzError::Zip`] or [`NpzError::Io`]; the destination is then untouched.
    pub fn finish(self) -> Result<(), NpzError> {
        let destination = self.destination;
        if self.broken {
            return Err(NpzError::Io {
                action: "finish",
                path: destination,
                source: std::io::Error::other("an earlier write to this archive failed; it is discarded"),
            });
        }
        let io_error = |action, source| NpzError::Io {
            action,
            path: destination.clone(),
            source,
        };
        let sink = self
            .zip
            .finish()
            .map_err(|source| NpzError::Zip { key: None, source })?;
        let file = sink.into_file().map_err(|e| io_error("write temporary file for", e))?;
        file.commit()?;
        Ok(())
    }
}

/// Writes `matrix` the way `scipy.sparse.save_npz(path, m, compressed=False)`
/// does, so `scipy.sparse.load_npz` reads it back: members `indices` (int32),
/// `indptr` (int32), `format` (`b'csc'` or `b'csr'`), `shape` (`int64[2]`) and
/// `data` (float32), in scipy's order. Atomic, like [`NpzWriter`].
///
/// # Errors
/// As [`NpzWriter::create`], [`NpzWriter::add`] and [`NpzWriter::finish`].
pub fn write_scipy_sparse<M: CompressedMatrix>(path: impl AsRef<Path>, matrix: &M) -> Result<(), NpzError> {
    let mut writer = NpzWriter::create(path)?;
    writer.add("indices", &[matrix.indices().len()], matrix.indices())?;
    writer.add("indptr", &[matrix.indptr().len()], matrix.indptr())?;
    writer.add_byte_strings("format", &[], &[matrix.format().as_bytes()])?;
    // Dimensions are <= i32::MAX, guaranteed by the matrix constructors.
    let [rows, cols] = matrix.shape();
    writer.add("shape", &[2], &[rows as i64, cols as i64])?;
    writer.add("data", &[matrix.nnz()], matrix.data())?;
    writer.finish()
}

/// Reads arrays from an `.npz` archive.
///
/// Keys are the names of the `.npy` members without the suffix, in archive
/// order, as `np.load(...).files` lists them; other members are ignored.
pub struct NpzReader<R = BufReader<File>> {
    archive: ZipArchive<R>,
    keys: Vec<String>,
    /// Length of the whole archive: stored members cannot be longer.
    archive_len: u64,
}

impl NpzReader<BufReader<File>> {
    /// Opens the archive at `path`.
    ///
    /// # Errors
    /// [`NpzError::Io`] if the file cannot be opened; [`NpzError::Zip`] if it
    /// is not a readable zip archive.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, NpzError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| NpzError::Io {
            action: "open",
            path: path.to_path_buf(),
            source,
        })?;
        NpzReader::new(BufReader::new(file))
    }
}

impl<R: Read + Seek> NpzReader<R> {
    /// Reads the archive directory from `reader` (any seekable source).
    ///
    /// # Errors
    /// [`NpzError::Zip`] if it is not a readable zip archive.
    pub fn new(mut reader: R) -> Result<Self, NpzError> {
        let zip_error = |source| NpzError::Zip { key: None, source };
        let archive_len = reader.seek(SeekFrom::End(0)).map_err(|e| zip_error(e.into()))?;
        reader.seek(SeekFrom::Start(0)).map_err(|e| zip_error(e.into()))?;
        let archive = ZipArchive::new(reader).map_err(zip_error)?;
        let mut keys = Vec::new();
        let mut seen = HashSet::new();
        for index in 0..archive.len() {
            let Some(Ok(name)) = archive.name_for_index(index) else {
                continue;
            };
            if let Some(key) = name.strip_suffix(".npy") {
                if seen.insert(key.to_string()) {
                    keys.push(key.to_string());
                }
            }
        }
        Ok(NpzReader {
            archive,
            keys,
            archive_len,
        })
    }

    /// The array keys, in archive order.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Dtype and shape of array `key`, without reading its data.
    ///
    /// # Errors
    /// [`NpzError::MissingKey`], or any header error of [`read`](NpzReader::read).
    pub fn header(&mut self, key: &str) -> Result<NpyHeader, NpzError> {
        self.with_member(key, |_, header, _| Ok(header.clone()))
    }

    /// Reads numeric array `key`, whose dtype must be `T`'s.
    ///
    /// # Errors
    /// [`NpzError::MissingKey`]; [`NpzError::Header`],
    /// [`NpzError::UnsupportedDtype`] or [`NpzError::FortranOrder`] for a bad
    /// header; [`NpzError::DtypeMismatch`]; [`NpzError::ShapeOverflow`] or
    /// [`NpzError::SizeMismatch`] when the shape does not match the member's
    /// size; [`NpzError::Truncated`] or [`NpzError::MemberIo`] when the data
    /// cannot be read in full (including checksum errors).
    pub fn read<T: NpyElement>(&mut self, key: &str) -> Result<Array<T>, NpzError> {
        self.with_member(key, |member, header, preallocate| {
            if header.dtype != T::DTYPE {
                return Err(NpzError::DtypeMismatch {
                    key: key.to_string(),
                    expected: T::DTYPE.descr(),
                    found: header.dtype.descr(),
                });
            }
            let count = element_count(&header.shape).expect("checked by with_member");
            let data = read_elements::<T, _>(member, key, count, preallocate)?;
            Ok(Array {
                shape: header.shape.clone(),
                data,
            })
        })
    }

    /// Reads byte-string array `key` (dtype `|S<n>`).
    ///
    /// # Errors
    /// As [`read`](NpzReader::read).
    pub fn read_byte_strings(&mut self, key: &str) -> Result<ByteStrings, NpzError> {
        self.with_member(key, |member, header, preallocate| {
            let DType::Bytes(width) = header.dtype else {
                return Err(NpzError::DtypeMismatch {
                    key: key.to_string(),
                    expected: "|S<n>".to_string(),
                    found: header.dtype.descr(),
                });
            };
            let count = element_count(&header.shape).expect("checked by with_member");
            // count * width was checked by with_member.
            let bytes = read_elements::<u8, _>(member, key, count * width, preallocate)?;
            Ok(ByteStrings {
                shape: header.shape.clone(),
                width,
                bytes,
            })
        })
    }

    /// Opens member `key`, reads and checks its header against the member's
    /// size, then hands the positioned reader to `body` along with whether the
    /// data size is backed by the archive's length (so it may be allocated at once).
    fn with_member<T>(
        &mut self,
        key: &str,
        body: impl FnOnce(&mut zip::read::ZipFile<'_, R>, &NpyHeader, bool) -> Result<T, NpzError>,
    ) -> Result<T, NpzError> {
        if !self.keys.iter().any(|k| k == key) {
            return Err(NpzError::MissingKey { key: key.to_string() });
        }
        let mut member = self
            .archive
            .by_name(&format!("{key}.npy"))
            .map_err(|source| NpzError::Zip {
                key: Some(key.to_string()),
                source,
            })?;
        let member_size = member.size();
        // A stored member's bytes lie in the archive, so its size is backed by
        // the file's length (checked, since a damaged directory can lie).
        let stored_in_file = member.compression() == CompressionMethod::Stored && member.size() <= self.archive_len;
        let (header, header_len) = npy::read_header(&mut member, key, member_size)?;
        let overflow = || NpzError::ShapeOverflow {
            key: key.to_string(),
            shape: header.shape.clone(),
        };
        let claimed = element_count(&header.shape)
            .and_then(|count| count.checked_mul(header.dtype.item_size()))
            .and_then(|bytes| u64::try_from(bytes).ok())
            .ok_or_else(overflow)?;
        // read_header checked header_len <= member_size.
        let available = member_size - header_len;
        if claimed != available {
            return Err(NpzError::SizeMismatch {
                key: key.to_string(),
                claimed,
                available,
            });
        }
        body(&mut member, &header, stored_in_file)
    }
}

/// Reads `count` elements of `T` and checks the member ends right after them
/// (which also makes the zip reader verify the CRC). Without `preallocate`,
/// memory grows only as data actually arrives.
fn read_elements<T: NpyElement, M: Read>(
    member: &mut M,
    key: &str,
    count: usize,
    preallocate: bool,
) -> Result<Vec<T>, NpzError> {
    let item_size = T::DTYPE.item_size();
    // count * item_size was checked by the caller.
    let total = count * item_size;
    let mut data = Vec::with_capacity(if preallocate {
        count
    } else {
        count.min(CHUNK_BYTES / item_size)
    });
    let mut buf = vec![0u8; total.min(CHUNK_BYTES)];
    let mut done = 0usize;
    let io_error = |source| NpzError::MemberIo {
        key: key.to_string(),
        source,
    };
    while done < total {
        let want = (total - done).min(buf.len());
        let got = read_full(member, &mut buf[..want]).map_err(io_error)?;
        done += got;
        if got < want {
            return Err(NpzError::Truncated {
                key: key.to_string(),
                expected: total as u64,
                got: done as u64,
            });
        }
        T::extend_from_le_bytes(&buf[..got], &mut data);
    }
    let mut probe = [0u8; 1];
    if read_full(member, &mut probe).map_err(io_error)? != 0 {
        return Err(io_error(std::io::Error::other(
            "member holds more bytes than it declares",
        )));
    }
    Ok(data)
}

/// Reads a standalone `.npy` file (as `np.save` writes it) whose dtype must be `T`'s. Errors name the file as the
/// key; the same checks as [`NpzReader::read`] apply (header, dtype, shape against file size, truncation).
pub fn read_npy<T: NpyElement>(path: impl AsRef<Path>) -> Result<Array<T>, NpzError> {
    let path = path.as_ref();
    let key = path.display().to_string();
    let io = |source| NpzError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut reader = BufReader::new(file);
    let (header, header_len) = npy::read_header(&mut reader, &key, size)?;
    if header.dtype != T::DTYPE {
        return Err(NpzError::DtypeMismatch {
            key,
            expected: T::DTYPE.descr(),
            found: header.dtype.descr(),
        });
    }
    let count = element_count(&header.shape).ok_or_else(|| NpzError::ShapeOverflow {
        key: key.clone(),
        shape: header.shape.clone(),
    })?;
    let expected = (count as u64).checked_mul(T::DTYPE.item_size() as u64);
    if expected != Some(size - header_len) {
        return Err(NpzError::SizeMismatch {
            key,
            claimed: expected.unwrap_or(u64::MAX),
            available: size - header_len,
        });
    }
    let data = read_elements::<T, _>(&mut reader, &key, count, true)?;
    Ok(Array {
        shape: header.shape,
        data,
    })
}

/// Writes a standalone `.npy` file (format 1.0, as `np.save` writes it), atomically: a temporary file in the same
/// folder renamed over `path`.
pub fn write_npy<T: NpyElement>(path: impl AsRef<Path>, shape: &[usize], data: &[T]) -> Result<(), NpzError> {
    let path = path.as_ref();
    if element_count(shape) != Some(data.len()) {
        return Err(NpzError::ShapeOverflow {
            key: path.display().to_string(),
            shape: shape.to_vec(),
        });
    }
    outfile::write_atomic(path, |out| {
        out.write_all(&npy::encode_header(&T::DTYPE, shape))?;
        let mut buf = Vec::with_capacity(CHUNK_BYTES);
        for chunk in data.chunks(CHUNK_BYTES / T::DTYPE.item_size()) {
            buf.clear();
            T::extend_le_bytes(chunk, &mut buf);
            out.write_all(&buf)?;
        }
        Ok(())
    })?;
    Ok(())
}

#[cfg(test)]
mod sink_tests {
    use super::*;

    /// A zip writer's pattern: runs written at the end, jumps back to patch, and (at the end) a patch that runs on
    /// past the end, so that a spill can fall inside a write that does not start at the end.
    fn operations() -> Vec<(SeekFrom, Vec<u8>)> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut ops: Vec<(SeekFrom, Vec<u8>)> = (0..200u8)
            .map(|i| {
                let to = if next(4) == 0 {
                    SeekFrom::Start(next(1000))
                } else {
                    SeekFrom::End(0)
                };
                (to, vec![i; next(300) as usize])
            })
            .collect();
        ops.extend([(SeekFrom::End(-5), vec![201; 10]), (SeekFrom::End(0), vec![202; 7])]);
        ops
    }

    fn apply(ops: &[(SeekFrom, Vec<u8>)], out: &mut (impl Write + Seek)) {
        for (to, bytes) in ops {
            out.seek(*to).unwrap();
            out.write_all(bytes).unwrap();
        }
    }

    /// Sinks that spill at every kind of point write the same file as the operations give on a plain cursor.
    #[test]
    fn a_sink_spilling_anywhere_writes_what_a_cursor_holds() {
        let dir = tempfile::tempdir().unwrap();
        let ops = operations();
        let mut expected = std::io::Cursor::new(Vec::new());
        apply(&ops, &mut expected);
        let total = expected.get_ref().len() as u64;
        // The archive is total - 12 bytes long before the patch, which ends at total - 7: with total - 10 the spill
        // falls inside the patch.
        for limit in (0..60).map(|k| k * 499).chain([total - 10, u64::MAX]) {
            let target = dir.path().join(format!("spill-{limit}.bin"));
            let file = AtomicFile::create(&target).unwrap();
            let mut sink = Sink::Memory(std::io::Cursor::new(Vec::new()), file, limit);
            apply(&ops, &mut sink);
            assert_eq!(matches!(sink, Sink::File(_)), limit < total, "limit {limit}");
            sink.into_file().unwrap().commit().unwrap();
            assert_eq!(std::fs::read(&target).unwrap(), *expected.get_ref(), "limit {limit}");
        }
    }
}
