//! A small layer over `heed` 0.23 (the same vendored `mdb.master` LMDB, whose data file format is LMDB 0.9's, the
//! one Caffe's liblmdb writes and reads), shaped by three rules of LMDB:
//! * one environment per folder per process (a second handle's close would drop the first one's POSIX file
//!   locks; heed refuses a second open with `EnvAlreadyOpened` while one is open or closing), hence the
//!   registry that hands out a shared [`Environment`];
//! * a read transaction and the pages it returns stay valid until it ends, hence [`ReadCursor`] owning its
//!   transaction and cursor together and lending out slices only until its next move;
//! * the map may only be resized while no transaction is open in the process, hence writable environments
//!   are never shared and every write transaction begins and ends inside [`Environment::put_all`].
//!
//! Why heed, and what stays unsafe: heed does everything Caffe's access needs (`MDB_RDONLY`, `MDB_NOLOCK` and
//! `MDB_NOTLS`, the unnamed database, key-order cursors lending `&'txn [u8]`, `MDB_MAP_FULL` and map resizing),
//! and took this module from 31 `unsafe` (27 blocks over `lmdb-master-sys`) to 3: heed's `open` and `flags`
//! (one block: memory maps and `MDB_NOLOCK` are unsafe by heed's contract), `Env::resize` (no transaction may be
//! open), and `Send` for [`ReadCursor`], because heed's cursor type is private and its iterator, which borrows
//! the transaction, is not `Send` even under `WithoutTls`. Without that iterator (finding each next record with
//! `get_greater_than`, all safe) reading Caffe's MNIST test LMDB took 7.5 times as long for the bare walk and
//! 3 to 4 times as long with Datum decoding; with it, the walk and the decoding run as fast as the former
//! direct FFI (benches `mnist_test_lmdb_raw` and `mnist_test_lmdb_records`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, MdbError, RoIter, RoTxn, WithoutTls};
use lmdb_master_sys as ffi;

use crate::Error;

/// How a read-only environment guards its readers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Locking {
    /// Caffe's `MDB_RDONLY` (readers registered in `lock.mdb`); `MDB_NOLOCK` when the lock file cannot be used.
    Auto,
    /// `MDB_RDONLY | MDB_NOLOCK` from the start: nothing is ever written, not even `lock.mdb`.
    Off,
}

/// How an open LMDB guards its readers, and why ([`crate::LmdbDataset::lock_state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockState {
    /// Readers are registered in `lock.mdb` (`MDB_RDONLY`), as Caffe registers them; a writer's handle.
    Registered,
    /// `MDB_NOLOCK` because the caller asked for it ([`crate::LmdbDataset::open_unlocked`]).
    NotRequested,
    /// `MDB_NOLOCK` because `lock.mdb` could not be created or opened for writing (a read-only folder, file
    /// or mount).
    LockFileNotWritable,
    /// `MDB_NOLOCK` because `lock.mdb` belongs to another LMDB version (a Caffe linked against liblmdb 0.9
    /// reading the same folder right now).
    OtherLmdbVersion,
}

/// Environments open in this process, by canonical folder. A dead `Weak` means its last owner is closing it
/// right now; openers wait on [`CLOSED`] until its `Drop` has removed the entry.
static OPEN: Mutex<Vec<(PathBuf, Weak<Environment>)>> = Mutex::new(Vec::new());
static CLOSED: Condvar = Condvar::new();

/// Owner of one heed environment (opened with `MDB_NOTLS`, so read transactions may move between threads) and
/// of the handle of its main (unnamed) database.
pub(crate) struct Environment {
    env: Env<WithoutTls>,
    db: Database<'static, Bytes, Bytes>,
    /// The folder as the caller named it, for messages.
    path: PathBuf,
    /// The registry key.
    canonical: PathBuf,
    writable: bool,
    lock_state: LockState,
}

impl Drop for Environment {
    fn drop(&mut self) {
        let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|(path, _)| *path != self.canonical);
        drop(open);
        CLOSED.notify_all();
    }
}

/// `mdb_strerror` for LMDB's own codes, the OS text for errno values.
fn describe(code: i32) -> String {
    if (ffi::MDB_KEYEXIST..=ffi::MDB_LAST_ERRCODE).contains(&code) {
        MdbError::from_err_code(code).to_string()
    } else {
        // The code is printed next to the text anyway.
        let text = std::io::Error::from_raw_os_error(code).to_string();
        text.strip_suffix(&format!(" (os error {code})"))
            .unwrap_or(&text)
            .to_string()
    }
}

pub(crate) fn lmdb_error(path: &Path, operation: &'static str, code: i32) -> Error {
    Error::Lmdb {
        path: path.to_path_buf(),
        operation,
        code,
        message: describe(code),
    }
}

/// LMDB's return code behind a heed error: an `MDB_*` code or an errno value; `None` for heed's own checks.
fn code_of(error: &heed::Error) -> Option<i32> {
    match error {
        heed::Error::Mdb(e) => Some(e.to_err_code()),
        heed::Error::Io(e) => e.raw_os_error(),
        _ => None,
    }
}

/// A failed heed call as this crate's error: [`Error::Lmdb`] with LMDB's code, or the error as heed words it.
fn heed_error(path: &Path, operation: &'static str, error: heed::Error) -> Error {
    match (code_of(&error), error) {
        (Some(code), _) => lmdb_error(path, operation, code),
        (None, heed::Error::Io(e)) => Error::io(path, e),
        (None, other) => Error::io(path, std::io::Error::other(other.to_string())),
    }
}

/// Whether a failed locked read-only open should be retried with `MDB_NOLOCK`, and why: the lock file cannot
/// be created or opened for writing (no permission, read-only mount, locked out), or it belongs to another LMDB
/// version (a Caffe linked against liblmdb 0.9 reading the same folder right now).
pub(crate) fn retry_without_lock(code: i32) -> Option<LockState> {
    if code == ffi::MDB_VERSION_MISMATCH {
        return Some(LockState::OtherLmdbVersion);
    }
    use std::io::ErrorKind::{PermissionDenied, ReadOnlyFilesystem, WouldBlock};
    let not_writable = code > 0
        && matches!(
            std::io::Error::from_raw_os_error(code).kind(),
            PermissionDenied | ReadOnlyFilesystem | WouldBlock
        );
    not_writable.then_some(LockState::LockFileNotWritable)
}

/// Creates `file` in an LMDB folder unless it exists, with Caffe's mode 0664 (less the umask). heed creates
/// LMDB's files with 0600, which would shut other users of the group out of a folder Caffe shares with them.
/// Failures are left to LMDB's own open to report.
fn precreate(file: &Path) {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o664);
    let _ = options.open(file);
}

/// heed's open of `path` with `flags` (plus `MDB_NOTLS`), and the handle of its main database.
fn raw_open(
    path: &Path,
    flags: EnvFlags,
    map_size: Option<usize>,
) -> Result<(Env<WithoutTls>, Database<'static, Bytes, Bytes>), heed::Error> {
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    if let Some(size) = map_size {
        options.map_size(size);
    }
    // SAFETY: `flags` is MDB_RDONLY and/or MDB_NOLOCK. heed marks MDB_NOLOCK unsafe because the caller must then
    // keep writers out itself: `LmdbDataset::open_unlocked` documents that contract, and the automatic fallback
    // only happens when the lock file cannot be written, where Caffe (built with ALLOW_LMDB_NOLOCK) reads so too.
    // The memory map is only ever read through heed's checked getters, and heed's own registry refuses a second
    // handle on the folder (this module shares one per folder, so it never asks for a second).
    let env = unsafe { options.flags(flags).open(path)? };
    let rtxn = env.read_txn()?;
    let db = env
        .open_databases_and_commit(rtxn, |opener, rtxn| {
            opener
                .open_database::<Bytes, Bytes>(rtxn, None)
                .map(CommitOrAbort::<_, ()>::Commit)
        })?
        .unwrap_commit()
        // The unnamed database always exists.
        .ok_or(heed::Error::Mdb(MdbError::NotFound))?;
    Ok((env, db))
}

/// Looks `canonical` up in the registry (waiting out an environment being closed) and, if absent, opens a new
/// environment with `open` while still holding the registry, so no second handle can appear in between.
fn shared(
    canonical: PathBuf,
    open: impl FnOnce() -> Result<Environment, Error>,
) -> Result<Result<Arc<Environment>, Arc<Environment>>, Error> {
    let mut registry = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
    while let Some((_, weak)) = registry.iter().find(|(path, _)| *path == canonical) {
        match weak.upgrade() {
            // Released after the registry lock (below), so dropping it can never re-enter the lock.
            Some(existing) => {
                drop(registry);
                return Ok(Err(existing));
            }
            None => registry = CLOSED.wait(registry).unwrap_or_else(PoisonError::into_inner),
        }
    }
    // The heed handle of an environment that just left the registry closes when its `Drop` has returned (every
    // transaction holds an Arc of it, so it is the last one); until then heed would refuse a new open.
    if let Some(closing) = heed::env_closing_event(&canonical) {
        closing.wait();
    }
    let env = Arc::new(open()?);
    registry.push((canonical, Arc::downgrade(&env)));
    Ok(Ok(env))
}

impl Environment {
    /// Opens an existing LMDB folder for reading, or shares this process's read-only handle on it.
    pub(crate) fn open_read(path: &Path, locking: Locking) -> Result<Arc<Self>, Error> {
        check_lmdb_folder(path)?;
        let canonical = path.canonicalize().map_err(|e| Error::io(path, e))?;
        let opened = shared(canonical.clone(), || {
            let unlocked = EnvFlags::READ_ONLY | EnvFlags::NO_LOCK;
            let (opened, lock_state) = match locking {
                Locking::Off => (raw_open(path, unlocked, None), LockState::NotRequested),
                Locking::Auto => {
                    precreate(&path.join("lock.mdb"));
                    match raw_open(path, EnvFlags::READ_ONLY, None) {
                        Err(e) => match code_of(&e).and_then(retry_without_lock) {
                            Some(why) => (raw_open(path, unlocked, None), why),
                            None => (Err(e), LockState::Registered),
                        },
                        ok => (ok, LockState::Registered),
                    }
                }
            };
            let (env, db) = opened.map_err(|e| open_error(path, e))?;
            Ok(Self {
                env,
                db,
                path: path.to_path_buf(),
                canonical,
                writable: false,
                lock_state,
            })
        })?;
        match opened {
            Ok(env) => Ok(env),
            Err(existing) if existing.writable => Err(Error::AlreadyOpen {
                path: path.to_path_buf(),
                writing: true,
            }),
            Err(existing) => Ok(existing),
        }
    }

    /// Creates an LMDB in `path`, a folder that must not exist yet (Caffe's `db::NEW`: `mkdir` then open).
    pub(crate) fn create(path: &Path, map_size: usize) -> Result<Arc<Self>, Error> {
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o744); // Caffe's mkdir mode
        builder.create(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::Exists {
                path: path.to_path_buf(),
            },
            _ => Error::io(path, e),
        })?;
        let canonical = path.canonicalize().map_err(|e| Error::io(path, e))?;
        let opened = shared(canonical.clone(), || {
            precreate(&path.join("data.mdb"));
            precreate(&path.join("lock.mdb"));
            let (env, db) =
                raw_open(path, EnvFlags::empty(), Some(map_size)).map_err(|e| heed_error(path, "mdb_env_open", e))?;
            Ok(Self {
                env,
                db,
                path: path.to_path_buf(),
                canonical,
                writable: true,
                lock_state: LockState::Registered,
            })
        })?;
        // Only possible if the folder was deleted and re-created while a handle on the old one was open.
        opened.map_err(|existing| Error::AlreadyOpen {
            path: path.to_path_buf(),
            writing: existing.writable,
        })
    }

    /// How readers are guarded (see [`LockState`]).
    pub(crate) fn lock_state(&self) -> LockState {
        self.lock_state
    }

    /// Writes `items` in one transaction (Caffe's `LMDBTransaction::Commit`): on `MDB_MAP_FULL` the transaction
    /// is abandoned, the map doubled and the whole batch written again, so a batch is committed whole or not at all.
    pub(crate) fn put_all<'a>(
        self: &Arc<Self>,
        items: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
    ) -> Result<(), Error> {
        let path = &self.path;
        let env = &self.env;
        loop {
            let mut txn = env.write_txn().map_err(|e| heed_error(path, "mdb_txn_begin", e))?;
            let mut failed = None;
            for (key, value) in items.clone() {
                if let Err(e) = self.db.put(&mut txn, key, value) {
                    failed = Some(e);
                    break;
                }
            }
            let (operation, error) = match failed {
                Some(e) => {
                    // Aborts it: the map can only be resized with no transaction open.
                    drop(txn);
                    ("mdb_put", e)
                }
                None => match txn.commit() {
                    Ok(()) => return Ok(()),
                    Err(e) => ("mdb_txn_commit", e),
                },
            };
            if code_of(&error) != Some(ffi::MDB_MAP_FULL) {
                return Err(heed_error(path, operation, error));
            }
            self.double_map()?;
        }
    }

    fn double_map(&self) -> Result<(), Error> {
        let env = &self.env;
        let Some(doubled) = env.info().map_size.checked_mul(2) else {
            return Err(lmdb_error(&self.path, "mdb_env_set_mapsize", ffi::MDB_MAP_FULL));
        };
        // SAFETY: no transaction is open in this process on this environment: it is writable, so not shared (the
        // registry hands it to no reader), and `put_all`, the only place that begins transactions on it, has
        // ended its own before calling this.
        unsafe { env.resize(doubled) }.map_err(|e| heed_error(&self.path, "mdb_env_set_mapsize", e))
    }

    /// Flushes the data file to disk (`mdb_env_sync(force)`).
    pub(crate) fn sync(&self) -> Result<(), Error> {
        self.env
            .force_sync()
            .map_err(|e| heed_error(&self.path, "mdb_env_sync", e))
    }
}

/// Clear messages for paths that are not LMDB folders, before LMDB reports a bare errno.
fn check_lmdb_folder(path: &Path) -> Result<(), Error> {
    let not = |reason: &str| Error::NotLmdb {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_dir() {
        return Err(not(
            "it is a file; a Caffe LMDB is a folder holding data.mdb (and lock.mdb)",
        ));
    }
    match std::fs::metadata(path.join("data.mdb")) {
        // LMDB would take an empty file for a new database it may not write (read-only) and fail obscurely.
        Ok(data) if data.is_file() && data.len() == 0 => Err(not("its data.mdb is empty")),
        Ok(data) if data.is_file() => Ok(()),
        Ok(_) => Err(not("its data.mdb is not a regular file")),
        Err(_) if path.join("CURRENT").is_file() => Err(not(
            "it looks like a LevelDB folder (it has CURRENT); only the LMDB backend is supported",
        )),
        Err(_) => Err(not("the folder has no data.mdb")),
    }
}

fn open_error(path: &Path, error: heed::Error) -> Error {
    match code_of(&error) {
        Some(code @ ffi::MDB_INVALID) => Error::NotLmdb {
            path: path.to_path_buf(),
            reason: format!("data.mdb is not an LMDB data file ({})", describe(code)),
        },
        // An empty or cut data.mdb: LMDB finds no meta page to read.
        Some(code) if code > 0 && std::io::Error::from_raw_os_error(code).kind() == std::io::ErrorKind::NotFound => {
            Error::NotLmdb {
                path: path.to_path_buf(),
                reason: format!("data.mdb holds no LMDB meta page ({})", describe(code)),
            }
        }
        _ => heed_error(path, "mdb_env_open", error),
    }
}

/// A key and value borrowed from the memory map, and whether the walk (re)started at the first record.
pub(crate) type Entry<'a> = (&'a [u8], &'a [u8], bool);

/// A walk over the main database in key order: heed's iterator (one LMDB cursor, `MDB_FIRST` then `MDB_NEXT`)
/// and the record it sits on, both borrowing the transaction they live beside in a [`Walk`].
struct Cursor<'t> {
    iter: RoIter<'t, Bytes, Bytes>,
    /// Set while the iterator has not moved yet.
    fresh: bool,
    /// Set when the iterator has gone past the last record: the next move starts a new one at the first.
    ended: bool,
    current: Option<(&'t [u8], &'t [u8])>,
}

impl<'t> Cursor<'t> {
    /// Moves to the first record (MDB_FIRST), on a new iterator unless this one has not moved yet; returns true.
    #[cold]
    fn restart(
        &mut self,
        txn: &'t RoTxn<'static, WithoutTls>,
        db: Database<'static, Bytes, Bytes>,
    ) -> heed::Result<bool> {
        if !self.fresh {
            self.iter = db.iter(txn)?;
        }
        self.fresh = false;
        self.current = self.iter.next().transpose()?;
        self.ended = self.current.is_none();
        Ok(true)
    }
}

self_cell::self_cell!(
    /// A read transaction (holding its heed environment) and the cursor that borrows it.
    struct Walk {
        owner: RoTxn<'static, WithoutTls>,
        #[covariant]
        dependent: Cursor,
    }
);

/// A read transaction on the main database with one cursor, walking records in key order.
pub(crate) struct ReadCursor {
    walk: Walk,
    /// Kept alive until the transaction ends.
    env: Arc<Environment>,
}

// SAFETY: the one field that is not Send is heed's iterator, for its raw `MDB_cursor` pointer. The cursor
// belongs to a read-only transaction of an environment opened with MDB_NOTLS (heed's `WithoutTls`, whose
// `RoTxn` heed itself declares Send), so neither is tied to the thread that began it; LMDB only asks that their
// use be serialised, which `&mut self` on every move does. (Not Sync: no shared use.)
unsafe impl Send for ReadCursor {}

impl ReadCursor {
    pub(crate) fn new(env: Arc<Environment>) -> Result<Self, Error> {
        let txn = env
            .env
            .clone()
            .static_read_txn()
            .map_err(|e| heed_error(&env.path, "mdb_txn_begin", e))?;
        let db = env.db;
        let walk = Walk::try_new(txn, |txn| {
            Ok(Cursor {
                iter: db.iter(txn)?,
                fresh: true,
                ended: false,
                current: None,
            })
        })
        .map_err(|e| heed_error(&env.path, "mdb_cursor_open", e))?;
        Ok(Self { walk, env })
    }

    /// Number of records in the snapshot this transaction reads.
    pub(crate) fn entries(&self) -> Result<usize, Error> {
        let stat = self
            .env
            .db
            .stat(self.walk.borrow_owner())
            .map_err(|e| heed_error(&self.env.path, "mdb_stat", e))?;
        Ok(stat.entries)
    }

    /// Moves to the next record in key order (the first one on the first call) and lends it; `None` past the
    /// last record, after which the next call starts again at the first.
    #[inline]
    pub(crate) fn next(&mut self) -> Result<Option<Entry<'_>>, Error> {
        self.advance(false)
    }

    /// Like [`ReadCursor::next`], but past the last record moves on to the first; `None` only for an empty
    /// database.
    #[inline]
    pub(crate) fn next_wrapping(&mut self) -> Result<Option<Entry<'_>>, Error> {
        self.advance(true)
    }

    #[inline]
    fn advance(&mut self, wrap: bool) -> Result<Option<Entry<'_>>, Error> {
        let is_first = self.step(wrap)?;
        Ok(self
            .walk
            .borrow_dependent()
            .current
            .map(|(key, value)| (key, value, is_first)))
    }

    /// One move of the cursor, leaving the record it reaches (if any) in `current`; returns whether the move
    /// (re)started at the first record. With `wrap`, a move past the last record goes on to the first.
    #[inline]
    fn step(&mut self, wrap: bool) -> Result<bool, Error> {
        let db = self.env.db;
        self.walk
            .with_dependent_mut(|txn, cursor| {
                if !cursor.fresh && !cursor.ended {
                    // The common move: MDB_NEXT.
                    match cursor.iter.next() {
                        Some(Ok(found)) => {
                            cursor.current = Some(found);
                            return Ok(false);
                        }
                        Some(Err(e)) => return Err(e),
                        None if !wrap => {
                            cursor.ended = true;
                            cursor.current = None;
                            return Ok(false);
                        }
                        None => cursor.ended = true,
                    }
                }
                cursor.restart(txn, db)
            })
            .map_err(|e| self.cursor_error(e))
    }

    #[cold]
    fn cursor_error(&self, error: heed::Error) -> Error {
        heed_error(&self.env.path, "mdb_cursor_get", error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_problems_fall_back_to_nolock_and_nothing_else_does() {
        // errno values of Linux and the BSDs alike for these four.
        assert_eq!(retry_without_lock(13), Some(LockState::LockFileNotWritable)); // EACCES
        assert_eq!(retry_without_lock(1), Some(LockState::LockFileNotWritable)); // EPERM
        assert_eq!(retry_without_lock(30), Some(LockState::LockFileNotWritable)); // EROFS
        assert_eq!(
            retry_without_lock(ffi::MDB_VERSION_MISMATCH),
            Some(LockState::OtherLmdbVersion)
        );
        assert_eq!(retry_without_lock(2), None); // ENOENT
        assert_eq!(retry_without_lock(ffi::MDB_INVALID), None);
        assert_eq!(retry_without_lock(0), None);
    }

    #[test]
    fn a_full_map_is_doubled_and_the_whole_batch_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        // 64 KiB (16 pages) cannot hold 200 values of 1000 bytes: the map must grow several times.
        let env = Environment::create(&path, 64 * 1024).unwrap();
        let keys: Vec<String> = (0..200).map(|i| format!("{i:08}")).collect();
        let values: Vec<Vec<u8>> = (0..200u32).map(|i| vec![(i % 251) as u8; 1000]).collect();
        env.put_all(
            keys.iter()
                .map(|k| k.as_bytes())
                .zip(values.iter().map(|v| v.as_slice())),
        )
        .unwrap();
        assert!(env.env.info().map_size >= 200 * 1000);
        drop(env);
        let env = Environment::open_read(&path, Locking::Off).unwrap();
        let mut cursor = ReadCursor::new(env).unwrap();
        assert_eq!(cursor.entries().unwrap(), 200);
        for i in 0..200 {
            let (key, value, is_first) = cursor.next().unwrap().unwrap();
            assert_eq!(is_first, i == 0);
            assert_eq!(key, keys[i].as_bytes());
            assert_eq!(value, &values[i][..]);
        }
        assert!(cursor.next().unwrap().is_none());
        // After the end the walk starts again at the first record.
        assert_eq!(cursor.next().unwrap().unwrap().0, b"00000000");
        // The wrapping walk moves on from the last record to the first.
        for key in &keys[1..] {
            let (found, _, is_first) = cursor.next_wrapping().unwrap().unwrap();
            assert_eq!((found, is_first), (key.as_bytes(), false));
        }
        let (key, _, is_first) = cursor.next_wrapping().unwrap().unwrap();
        assert_eq!((key, is_first), (&b"00000000"[..], true));
    }

    #[test]
    fn one_handle_per_folder_is_shared_and_closed_with_its_last_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let env = Environment::create(&path, 1 << 20).unwrap();
        env.put_all(std::iter::once((&b"k"[..], &b"v"[..]))).unwrap();
        // A folder being written is not handed to readers.
        assert!(matches!(
            Environment::open_read(&path, Locking::Auto),
            Err(Error::AlreadyOpen { writing: true, .. })
        ));
        drop(env);
        let first = Environment::open_read(&path, Locking::Auto).unwrap();
        let second = Environment::open_read(&dir.path().join("./db"), Locking::Off).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(
            first.lock_state(),
            LockState::Registered,
            "a writable folder is opened with locks"
        );
        drop((first, second));
        let third = Environment::open_read(&path, Locking::Off).unwrap();
        assert_eq!(
            third.lock_state(),
            LockState::NotRequested,
            "the shared handle was closed, so a new one was opened without locks"
        );
    }

    #[test]
    fn threads_opening_reading_and_closing_one_folder_share_handles_and_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let env = Environment::create(&path, 1 << 20).unwrap();
        let keys: Vec<String> = (0..50).map(|i| format!("{i:08}")).collect();
        env.put_all(keys.iter().map(|k| (k.as_bytes(), k.as_bytes()))).unwrap();
        drop(env);
        // Opens and closes race each other: heed refuses a second handle while one is open or still closing, so
        // every open has to either share the live handle or wait until the last one is closed.
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let (path, keys) = (&path, &keys);
                scope.spawn(move || {
                    for round in 0..50 {
                        let locking = if (thread + round) % 2 == 0 {
                            Locking::Auto
                        } else {
                            Locking::Off
                        };
                        let env = Environment::open_read(path, locking).unwrap();
                        let mut cursor = ReadCursor::new(env).unwrap();
                        // A cursor may move to another thread between moves (MDB_NOTLS).
                        let mut cursor = std::thread::scope(|inner| {
                            inner
                                .spawn(move || {
                                    assert_eq!(cursor.next().unwrap().unwrap().0, keys[0].as_bytes());
                                    cursor
                                })
                                .join()
                                .unwrap()
                        });
                        for key in &keys[1..] {
                            assert_eq!(cursor.next().unwrap().unwrap().0, key.as_bytes());
                        }
                        assert!(cursor.next().unwrap().is_none());
                    }
                });
            }
        });
    }

    #[test]
    fn new_files_get_caffes_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // What mode 0664 becomes under this process's umask.
        let reference = dir.path().join("reference");
        precreate(&reference);
        let expected = std::fs::metadata(&reference).unwrap().permissions().mode() & 0o777;
        let path = dir.path().join("db");
        let env = Environment::create(&path, 1 << 20).unwrap();
        env.put_all(std::iter::once((&b"k"[..], &b"v"[..]))).unwrap();
        drop(env);
        for file in ["data.mdb", "lock.mdb"] {
            let mode = std::fs::metadata(path.join(file)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, expected, "{file}");
        }
        // A reader creating the lock file gives it the same mode.
        std::fs::remove_file(path.join("lock.mdb")).unwrap();
        let env = Environment::open_read(&path, Locking::Auto).unwrap();
        assert_eq!(env.lock_state(), LockState::Registered);
        let mode = std::fs::metadata(path.join("lock.mdb")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, expected);
    }
}
