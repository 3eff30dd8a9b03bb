//! A small safe layer over the LMDB C library (`lmdb-master-sys`, the vendored `mdb.master` branch whose data
//! file format is LMDB 0.9's, the one Caffe's liblmdb writes and reads).
//!
//! Three rules of LMDB shape this module:
//! * one environment per folder per process (a second handle's close would drop the first one's POSIX file
//!   locks), hence the registry that hands out a shared [`Environment`];
//! * a read transaction and the pages it returns stay valid until it ends, hence [`ReadCursor`] owning its
//!   transaction and lending out slices only until its next move;
//! * the map may only be resized while no transaction is open in the process, hence writable environments
//!   are never shared and every write transaction begins and ends inside [`Environment::put_all`].

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};

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

/// Environments open in this process, by canonical folder. A dead `Weak` means its last owner is closing it
/// right now; openers wait on [`CLOSED`] until its `Drop` has removed the entry.
static OPEN: Mutex<Vec<(PathBuf, Weak<Environment>)>> = Mutex::new(Vec::new());
static CLOSED: Condvar = Condvar::new();

/// Owner of one `MDB_env`.
pub(crate) struct Environment {
    raw: NonNull<ffi::MDB_env>,
    /// The folder as the caller named it, for messages.
    path: PathBuf,
    /// The registry key.
    canonical: PathBuf,
    writable: bool,
    locked: bool,
}

// SAFETY: LMDB environment handles are meant to be shared by threads; every environment here is opened with
// MDB_NOTLS, so read transactions are tied to their MDB_txn object, not to the thread that began them.
unsafe impl Send for Environment {}
// SAFETY: as above; the only mutation after opening (map resize in `put_all`) happens on unshared environments.
unsafe impl Sync for Environment {}

impl Drop for Environment {
    fn drop(&mut self) {
        let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|(path, _)| *path != self.canonical);
        // SAFETY: every transaction and cursor holds an Arc of this environment, so none is left.
        unsafe { ffi::mdb_env_close(self.raw.as_ptr()) };
        drop(open);
        CLOSED.notify_all();
    }
}

/// `mdb_strerror` for LMDB's own codes, the OS text for errno values.
fn describe(code: i32) -> String {
    if (ffi::MDB_KEYEXIST..=ffi::MDB_LAST_ERRCODE).contains(&code) {
        // SAFETY: for LMDB's own codes mdb_strerror returns a pointer into a static table of C strings.
        let text = unsafe { std::ffi::CStr::from_ptr(ffi::mdb_strerror(code)) };
        text.to_string_lossy().into_owned()
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

/// Whether a failed locked read-only open should be retried with `MDB_NOLOCK`: the lock file cannot be created
/// or opened for writing (no permission, read-only mount, locked out), or it belongs to another LMDB version
/// (a Caffe linked against liblmdb 0.9 reading the same folder right now).
pub(crate) fn retry_without_lock(code: i32) -> bool {
    if code == ffi::MDB_VERSION_MISMATCH {
        return true;
    }
    use std::io::ErrorKind::{PermissionDenied, ReadOnlyFilesystem, WouldBlock};
    code > 0
        && matches!(
            std::io::Error::from_raw_os_error(code).kind(),
            PermissionDenied | ReadOnlyFilesystem | WouldBlock
        )
}

fn c_path(path: &Path) -> Result<CString, Error> {
    #[cfg(unix)]
    let bytes = {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    };
    #[cfg(not(unix))]
    let bytes = match path.to_str() {
        Some(text) => text.as_bytes().to_vec(),
        None => {
            return Err(Error::NotLmdb {
                path: path.to_path_buf(),
                reason: "the path is not valid Unicode".into(),
            })
        }
    };
    CString::new(bytes).map_err(|_| Error::NotLmdb {
        path: path.to_path_buf(),
        reason: "the path contains a NUL byte".into(),
    })
}

/// `mdb_env_create` + optional map size + `mdb_env_open`; the handle is closed again on failure.
fn raw_open(path: &CString, flags: u32, map_size: Option<usize>) -> Result<NonNull<ffi::MDB_env>, (&'static str, i32)> {
    let mut env = ptr::null_mut();
    // SAFETY: mdb_env_create writes a fresh handle into `env` or fails.
    let rc = unsafe { ffi::mdb_env_create(&mut env) };
    if rc != 0 {
        return Err(("mdb_env_create", rc));
    }
    let Some(env) = NonNull::new(env) else {
        return Err(("mdb_env_create", ffi::MDB_PANIC));
    };
    if let Some(size) = map_size {
        // SAFETY: the handle is created and not yet open.
        let rc = unsafe { ffi::mdb_env_set_mapsize(env.as_ptr(), size) };
        if rc != 0 {
            // SAFETY: a created handle is discarded with mdb_env_close.
            unsafe { ffi::mdb_env_close(env.as_ptr()) };
            return Err(("mdb_env_set_mapsize", rc));
        }
    }
    // SAFETY: `path` is a NUL-terminated string that outlives the call; LMDB copies it.
    let rc = unsafe { ffi::mdb_env_open(env.as_ptr(), path.as_ptr(), flags, 0o664) };
    if rc != 0 {
        // SAFETY: LMDB requires mdb_env_close after a failed mdb_env_open.
        unsafe { ffi::mdb_env_close(env.as_ptr()) };
        return Err(("mdb_env_open", rc));
    }
    Ok(env)
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
    let env = Arc::new(open()?);
    registry.push((canonical, Arc::downgrade(&env)));
    Ok(Ok(env))
}

impl Environment {
    /// Opens an existing LMDB folder for reading, or shares this process's read-only handle on it.
    pub(crate) fn open_read(path: &Path, locking: Locking) -> Result<Arc<Self>, Error> {
        check_lmdb_folder(path)?;
        let canonical = path.canonicalize().map_err(|e| Error::io(path, e))?;
        let c = c_path(path)?;
        let opened = shared(canonical.clone(), || {
            let base = ffi::MDB_RDONLY | ffi::MDB_NOTLS;
            let (raw, locked) = match locking {
                Locking::Off => (raw_open(&c, base | ffi::MDB_NOLOCK, None), false),
                Locking::Auto => match raw_open(&c, base, None) {
                    Err((_, code)) if retry_without_lock(code) => (raw_open(&c, base | ffi::MDB_NOLOCK, None), false),
                    other => (other, true),
                },
            };
            let raw = raw.map_err(|(operation, code)| open_error(path, operation, code))?;
            Ok(Self {
                raw,
                path: path.to_path_buf(),
                canonical,
                writable: false,
                locked,
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
        let c = c_path(path)?;
        let opened = shared(canonical.clone(), || {
            let raw = raw_open(&c, ffi::MDB_NOTLS, Some(map_size))
                .map_err(|(operation, code)| lmdb_error(path, operation, code))?;
            Ok(Self {
                raw,
                path: path.to_path_buf(),
                canonical,
                writable: true,
                locked: true,
            })
        })?;
        // Only possible if the folder was deleted and re-created while a handle on the old one was open.
        opened.map_err(|existing| Error::AlreadyOpen {
            path: path.to_path_buf(),
            writing: existing.writable,
        })
    }

    /// Whether readers are registered in `lock.mdb` (false: opened with `MDB_NOLOCK`).
    pub(crate) fn locked(&self) -> bool {
        self.locked
    }

    /// Writes `items` in one transaction (Caffe's `LMDBTransaction::Commit`): on `MDB_MAP_FULL` the transaction
    /// is abandoned, the map doubled and the whole batch written again, so a batch is committed whole or not at all.
    pub(crate) fn put_all<'a>(
        self: &Arc<Self>,
        items: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
    ) -> Result<(), Error> {
        let path = &self.path;
        loop {
            let mut txn = ptr::null_mut();
            // SAFETY: a writable environment; no other transaction of this process is open on it, because
            // writable environments are not shared and this function ends every transaction it begins.
            let rc = unsafe { ffi::mdb_txn_begin(self.raw.as_ptr(), ptr::null_mut(), 0, &mut txn) };
            if rc != 0 {
                return Err(lmdb_error(path, "mdb_txn_begin", rc));
            }
            let mut dbi = 0;
            // SAFETY: `txn` is the live write transaction; NULL names the main database.
            let mut rc = unsafe { ffi::mdb_dbi_open(txn, ptr::null(), 0, &mut dbi) };
            let mut operation = "mdb_dbi_open";
            if rc == 0 {
                operation = "mdb_put";
                for (key, value) in items.clone() {
                    let mut k = ffi::MDB_val {
                        mv_size: key.len(),
                        mv_data: key.as_ptr() as *mut _,
                    };
                    let mut v = ffi::MDB_val {
                        mv_size: value.len(),
                        mv_data: value.as_ptr() as *mut _,
                    };
                    // SAFETY: LMDB copies both buffers into its pages and does not write through these pointers
                    // (no MDB_RESERVE); they outlive the call.
                    rc = unsafe { ffi::mdb_put(txn, dbi, &mut k, &mut v, 0) };
                    if rc != 0 {
                        break;
                    }
                }
            }
            if rc != 0 {
                // SAFETY: ends the live transaction; `txn` is not used again.
                unsafe { ffi::mdb_txn_abort(txn) };
                if rc == ffi::MDB_MAP_FULL {
                    self.double_map(path)?;
                    continue;
                }
                return Err(lmdb_error(path, operation, rc));
            }
            // SAFETY: commits and frees the live transaction, on success or failure alike.
            let rc = unsafe { ffi::mdb_txn_commit(txn) };
            match rc {
                0 => return Ok(()),
                ffi::MDB_MAP_FULL => self.double_map(path)?,
                _ => return Err(lmdb_error(path, "mdb_txn_commit", rc)),
            }
        }
    }

    fn double_map(&self, path: &Path) -> Result<(), Error> {
        let mut info = std::mem::MaybeUninit::<ffi::MDB_envinfo>::zeroed();
        // SAFETY: fills the struct for an open environment.
        let rc = unsafe { ffi::mdb_env_info(self.raw.as_ptr(), info.as_mut_ptr()) };
        if rc != 0 {
            return Err(lmdb_error(path, "mdb_env_info", rc));
        }
        // SAFETY: mdb_env_info succeeded, so the struct is initialised.
        let current = unsafe { info.assume_init() }.me_mapsize;
        let Some(doubled) = current.checked_mul(2) else {
            return Err(lmdb_error(path, "mdb_env_set_mapsize", ffi::MDB_MAP_FULL));
        };
        // SAFETY: no transaction is open in this process on this unshared, writable environment.
        let rc = unsafe { ffi::mdb_env_set_mapsize(self.raw.as_ptr(), doubled) };
        if rc != 0 {
            return Err(lmdb_error(path, "mdb_env_set_mapsize", rc));
        }
        Ok(())
    }

    /// Flushes the data file to disk (`mdb_env_sync(force)`).
    pub(crate) fn sync(&self) -> Result<(), Error> {
        // SAFETY: an open, writable environment.
        let rc = unsafe { ffi::mdb_env_sync(self.raw.as_ptr(), 1) };
        if rc != 0 {
            return Err(lmdb_error(&self.path, "mdb_env_sync", rc));
        }
        Ok(())
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

fn open_error(path: &Path, operation: &'static str, code: i32) -> Error {
    match code {
        ffi::MDB_INVALID => Error::NotLmdb {
            path: path.to_path_buf(),
            reason: format!("data.mdb is not an LMDB data file ({})", describe(code)),
        },
        // An empty or cut data.mdb: LMDB finds no meta page to read.
        c if c > 0 && std::io::Error::from_raw_os_error(c).kind() == std::io::ErrorKind::NotFound => Error::NotLmdb {
            path: path.to_path_buf(),
            reason: format!("data.mdb holds no LMDB meta page ({})", describe(code)),
        },
        _ => lmdb_error(path, operation, code),
    }
}

/// A key and value borrowed from the memory map, and whether the walk (re)started at the first record.
pub(crate) type Entry<'a> = (&'a [u8], &'a [u8], bool);

/// A read transaction on the main database with one cursor, walking records in key order.
pub(crate) struct ReadCursor {
    txn: NonNull<ffi::MDB_txn>,
    cursor: NonNull<ffi::MDB_cursor>,
    /// Whether the cursor sits on a record (otherwise the next move is to the first one).
    positioned: bool,
    /// Kept alive until the cursor and transaction are closed (fields drop after `Drop::drop`).
    env: Arc<Environment>,
}

// SAFETY: with MDB_NOTLS a read-only transaction and its cursor may move between threads; `&mut self` on every
// move keeps their use to one thread at a time. (Not Sync: no shared use.)
unsafe impl Send for ReadCursor {}

impl Drop for ReadCursor {
    fn drop(&mut self) {
        // SAFETY: read-only cursors must be closed explicitly; then the transaction ends. Neither is used again.
        unsafe {
            ffi::mdb_cursor_close(self.cursor.as_ptr());
            ffi::mdb_txn_abort(self.txn.as_ptr());
        }
    }
}

impl ReadCursor {
    pub(crate) fn new(env: Arc<Environment>) -> Result<Self, Error> {
        let path = &env.path;
        let mut txn = ptr::null_mut();
        // SAFETY: an open environment; MDB_NOTLS lets this thread hold several read transactions.
        let rc = unsafe { ffi::mdb_txn_begin(env.raw.as_ptr(), ptr::null_mut(), ffi::MDB_RDONLY, &mut txn) };
        let txn = match NonNull::new(txn) {
            Some(txn) if rc == 0 => txn,
            _ => {
                return Err(lmdb_error(
                    path,
                    "mdb_txn_begin",
                    if rc == 0 { ffi::MDB_PANIC } else { rc },
                ))
            }
        };
        let abort = |operation, rc| {
            // SAFETY: ends the transaction begun above, which is not used again.
            unsafe { ffi::mdb_txn_abort(txn.as_ptr()) };
            Err(lmdb_error(path, operation, rc))
        };
        let mut dbi = 0;
        // SAFETY: a live transaction; NULL names the main database, which needs no shared state.
        let rc = unsafe { ffi::mdb_dbi_open(txn.as_ptr(), ptr::null(), 0, &mut dbi) };
        if rc != 0 {
            return abort("mdb_dbi_open", rc);
        }
        let mut cursor = ptr::null_mut();
        // SAFETY: a live transaction and a valid database handle.
        let rc = unsafe { ffi::mdb_cursor_open(txn.as_ptr(), dbi, &mut cursor) };
        let cursor = match NonNull::new(cursor) {
            Some(cursor) if rc == 0 => cursor,
            _ => return abort("mdb_cursor_open", if rc == 0 { ffi::MDB_PANIC } else { rc }),
        };
        Ok(Self {
            txn,
            cursor,
            positioned: false,
            env,
        })
    }

    /// Number of records in the snapshot this transaction reads.
    pub(crate) fn entries(&self) -> Result<usize, Error> {
        let mut stat = std::mem::MaybeUninit::<ffi::MDB_stat>::zeroed();
        // SAFETY: a live transaction; the main database's handle is the one the cursor uses.
        let rc = unsafe {
            ffi::mdb_stat(
                self.txn.as_ptr(),
                ffi::mdb_cursor_dbi(self.cursor.as_ptr()),
                stat.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(lmdb_error(&self.env.path, "mdb_stat", rc));
        }
        // SAFETY: mdb_stat succeeded, so the struct is initialised.
        Ok(unsafe { stat.assume_init() }.ms_entries)
    }

    /// Moves to the next record in key order (the first one on the first call) and lends it; `None` past the
    /// last record, after which the next call starts again at the first.
    pub(crate) fn next(&mut self) -> Result<Option<Entry<'_>>, Error> {
        let op = if self.positioned { ffi::MDB_NEXT } else { ffi::MDB_FIRST };
        Ok(self.get(op)?.map(|(key, value)| {
            // SAFETY: on success both point into the read-only memory map, valid until the transaction ends
            // (it lives as long as `self`); the borrow of `self` ends before the cursor can move again.
            unsafe { (slice(&key), slice(&value), op == ffi::MDB_FIRST) }
        }))
    }

    /// Like [`ReadCursor::next`], but past the last record moves on to the first; `None` only for an empty
    /// database.
    pub(crate) fn next_wrapping(&mut self) -> Result<Option<Entry<'_>>, Error> {
        let mut found = if self.positioned {
            self.get(ffi::MDB_NEXT)?
        } else {
            None
        };
        let is_first = found.is_none();
        if is_first {
            found = self.get(ffi::MDB_FIRST)?;
        }
        Ok(found.map(|(key, value)| {
            // SAFETY: as in `next`.
            let (key, value) = unsafe { (slice(&key), slice(&value)) };
            (key, value, is_first)
        }))
    }

    /// One `mdb_cursor_get`; the values are only meaningful until the cursor moves again.
    fn get(&mut self, op: ffi::MDB_cursor_op) -> Result<Option<(ffi::MDB_val, ffi::MDB_val)>, Error> {
        let mut key = ffi::MDB_val {
            mv_size: 0,
            mv_data: ptr::null_mut(),
        };
        let mut value = ffi::MDB_val {
            mv_size: 0,
            mv_data: ptr::null_mut(),
        };
        // SAFETY: a live cursor of a live transaction; LMDB fills both MDB_vals on success.
        let rc = unsafe { ffi::mdb_cursor_get(self.cursor.as_ptr(), &mut key, &mut value, op) };
        match rc {
            0 => {
                self.positioned = true;
                Ok(Some((key, value)))
            }
            ffi::MDB_NOTFOUND => {
                self.positioned = false;
                Ok(None)
            }
            _ => Err(lmdb_error(&self.env.path, "mdb_cursor_get", rc)),
        }
    }
}

/// # Safety
/// `val` must describe `mv_size` readable bytes that stay valid and unchanged for the returned lifetime.
unsafe fn slice<'a>(val: &ffi::MDB_val) -> &'a [u8] {
    if val.mv_size == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(val.mv_data as *const u8, val.mv_size) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_problems_fall_back_to_nolock_and_nothing_else_does() {
        // errno values of Linux and the BSDs alike for these four.
        assert!(retry_without_lock(13)); // EACCES
        assert!(retry_without_lock(1)); // EPERM
        assert!(retry_without_lock(30)); // EROFS
        assert!(retry_without_lock(ffi::MDB_VERSION_MISMATCH));
        assert!(!retry_without_lock(2)); // ENOENT
        assert!(!retry_without_lock(ffi::MDB_INVALID));
        assert!(!retry_without_lock(0));
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
        assert!(first.locked(), "a writable folder is opened with locks");
        drop((first, second));
        let third = Environment::open_read(&path, Locking::Off).unwrap();
        assert!(
            !third.locked(),
            "the shared handle was closed, so a new one was opened without locks"
        );
    }
}
