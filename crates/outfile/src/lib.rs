//! Writing outputs so that nothing is lost: the one way every tool of the workspace writes a file.
//!
//! - [`AtomicFile`]: a temporary file with a random name in the target's folder; [`AtomicFile::commit`] flushes it,
//!   syncs it to disk, renames it over the target and syncs the folder. A crash or `kill -9` at any moment leaves
//!   either the old target or the complete new one (plus, at worst, a stray `.NAME.*.tmp` file), never a mix.
//!   Dropped without `commit`, the temporary file is removed.
//! - [`write_atomic`]: the same for output produced in one go.
//! - [`check_outputs`]: run before any work starts, it refuses an output that is one of the inputs (through any
//!   path: `./`, `..`, symbolic or hard links), that lies inside an input folder, or that is named twice.
//!
//! ```
//! use std::io::Write;
//! let dir = tempfile::tempdir()?;
//! let (input, output) = (dir.path().join("in.txt"), dir.path().join("out.txt"));
//! std::fs::write(&input, "x")?;
//! outfile::check_outputs(&[&output], &[&input])?;
//! outfile::write_atomic(&output, |w| w.write_all(b"hello"))?;
//! assert_eq!(std::fs::read(&output)?, b"hello");
//! // The input itself, under another spelling, is refused.
//! assert!(outfile::check_outputs(&[&dir.path().join("./in.txt")], &[&input]).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// What can go wrong when writing an output.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A file-system call failed; `action` says which step.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        /// The step: "create a temporary file beside", "write", "sync", "rename into place", ...
        action: &'static str,
        /// The target the step was for.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The target is a folder: a file cannot replace it.
    #[error("{}: is a folder, not a file", path.display())]
    IsFolder {
        /// The target.
        path: PathBuf,
    },
    /// The target path ends in `..`, `/` or nothing: it names no file.
    #[error("{}: names no file", path.display())]
    NoFileName {
        /// The target.
        path: PathBuf,
    },
    /// An output is one of the command's inputs (the same file under any path): writing it would destroy the input.
    #[error("{}: refusing to write an output over the input {}", output.display(), input.display())]
    OutputIsInput {
        /// The output as given.
        output: PathBuf,
        /// The input as given.
        input: PathBuf,
    },
    /// An output lies inside a folder the command reads (an LMDB, a data folder).
    #[error("{}: refusing to write an output inside the input folder {}", output.display(), input.display())]
    OutputInsideInput {
        /// The output as given.
        output: PathBuf,
        /// The input folder as given.
        input: PathBuf,
    },
    /// An input lies inside an output folder, which the command would replace.
    #[error("{}: refusing to replace a folder that holds the input {}", output.display(), input.display())]
    InputInsideOutput {
        /// The output folder as given.
        output: PathBuf,
        /// The input as given.
        input: PathBuf,
    },
    /// Two outputs name the same file: the second would replace the first.
    #[error("{}: named as two outputs (also as {})", first.display(), second.display())]
    OutputTwice {
        /// One spelling.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> OutputError + 'a {
    move |source| OutputError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The folder a target lives in (`.` for a bare file name).
fn folder_of(target: &Path) -> PathBuf {
    match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A new file that replaces its target only when [`commit`](AtomicFile::commit)ted (see the crate docs). It is
/// `Write` and `Seek` (zip archives seek back to patch sizes); writes go straight to the file, so wrap it in a
/// `BufWriter` for small writes.
#[derive(Debug)]
pub struct AtomicFile {
    temp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl AtomicFile {
    /// Starts a file that will become `target`.
    ///
    /// # Errors
    /// [`OutputError::IsFolder`] or [`OutputError::NoFileName`] for a target that cannot be a file, or
    /// [`OutputError::Io`] when the folder does not exist or is not writable.
    pub fn create(target: impl AsRef<Path>) -> Result<Self, OutputError> {
        let target = target.as_ref().to_path_buf();
        let Some(name) = target.file_name() else {
            return Err(OutputError::NoFileName { path: target });
        };
        if target.is_dir() {
            return Err(OutputError::IsFolder { path: target });
        }
        let mut builder = tempfile::Builder::new();
        let prefix = format!(".{}.", name.to_string_lossy());
        builder.prefix(&prefix).suffix(".tmp");
        // tempfile creates 0600 files; ask for 0666 so the umask decides, as for any newly created file.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(fs::Permissions::from_mode(0o666));
        }
        let temp = builder
            .tempfile_in(folder_of(&target))
            .map_err(io_error("create a temporary file beside", &target))?;
        Ok(AtomicFile { temp, target })
    }

    /// The path the file will take.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Syncs the file, renames it over the target and syncs the folder, so the new file survives a power cut.
    ///
    /// # Errors
    /// [`OutputError::Io`]; the target is then untouched and the temporary file removed.
    pub fn commit(self) -> Result<(), OutputError> {
        let AtomicFile { temp, target } = self;
        temp.as_file().sync_all().map_err(io_error("sync", &target))?;
        temp.persist(&target)
            .map_err(|e| io_error("rename into place", &target)(e.error))?;
        sync_folder(&folder_of(&target)).map_err(io_error("sync the folder of", &target))
    }
}

/// A new folder (an LMDB, say) built beside its target under a temporary holder folder and renamed into place by
/// [`commit`](AtomicFolder::commit). Dropped without `commit`, the holder is removed with everything in it.
#[derive(Debug)]
pub struct AtomicFolder {
    holder: tempfile::TempDir,
    target: PathBuf,
}

impl AtomicFolder {
    /// Starts a folder that will become `target`.
    ///
    /// # Errors
    /// [`OutputError::NoFileName`], or [`OutputError::Io`] when the parent folder is missing or not writable.
    pub fn create(target: impl AsRef<Path>) -> Result<Self, OutputError> {
        let target = target.as_ref().to_path_buf();
        let Some(name) = target.file_name() else {
            return Err(OutputError::NoFileName { path: target });
        };
        let prefix = format!(".{}.", name.to_string_lossy());
        let holder = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .tempdir_in(folder_of(&target))
            .map_err(io_error("create a temporary folder beside", &target))?;
        Ok(AtomicFolder { holder, target })
    }

    /// Where to build the folder: a path that does not exist yet (the writer creates it, as LMDB's tools do).
    pub fn path(&self) -> PathBuf {
        self.holder.path().join(self.target.file_name().unwrap_or_default())
    }

    /// Renames the built folder into place. Whatever is at the target (a file or folder) is first moved into the
    /// holder and removed only once the new folder is in place, so a crash never loses both.
    ///
    /// # Errors
    /// [`OutputError::Io`]; the target is then as it was.
    pub fn commit(self) -> Result<(), OutputError> {
        let built = self.path();
        let AtomicFolder { holder, target } = self;
        let aside = holder.path().join(".previous");
        let had_previous = target.symlink_metadata().is_ok();
        if had_previous {
            fs::rename(&target, &aside).map_err(io_error("move the previous output aside", &target))?;
        }
        if let Err(e) = fs::rename(&built, &target) {
            if had_previous {
                let _ = fs::rename(&aside, &target);
            }
            return Err(io_error("rename into place", &target)(e));
        }
        sync_folder(&folder_of(&target)).map_err(io_error("sync the folder of", &target))?;
        // Dropping the holder removes the previous output.
        drop(holder);
        Ok(())
    }
}

/// Makes a rename in `folder` durable (a no-op where folders cannot be opened, as on Windows).
fn sync_folder(folder: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(folder)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = folder;
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.temp.as_file_mut().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.temp.as_file_mut().write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.temp.as_file_mut().flush()
    }
}

impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.temp.as_file_mut().seek(pos)
    }
}

/// Bytes buffered between `fill` and the file.
const BUFFER_BYTES: usize = 1 << 20;

/// Writes `target` atomically: `fill` writes into a buffered [`AtomicFile`], committed only when `fill` succeeds.
///
/// # Errors
/// As [`AtomicFile::create`] and [`AtomicFile::commit`], or `fill`'s error as [`OutputError::Io`]; the target is
/// then untouched.
pub fn write_atomic(
    target: impl AsRef<Path>,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), OutputError> {
    let target = target.as_ref();
    let mut out = BufWriter::with_capacity(BUFFER_BYTES, AtomicFile::create(target)?);
    fill(&mut out).map_err(io_error("write", target))?;
    let file = out
        .into_inner()
        .map_err(|e| io_error("write", target)(e.into_error()))?;
    file.commit()
}

/// Where a path leads, for comparing: the canonical path of what exists, else the canonical folder joined with the
/// name (an output that does not exist yet), plus the file's identity where it exists (hard links).
#[derive(Debug, PartialEq, Eq)]
struct Resolved {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

fn resolve(path: &Path) -> Resolved {
    if let Ok(canonical) = fs::canonicalize(path) {
        return Resolved {
            identity: identity(&canonical),
            path: canonical,
        };
    }
    // Not there yet: resolve the folder (it may be a link) and keep the name.
    let resolved = match (fs::canonicalize(folder_of(path)), path.file_name()) {
        (Ok(folder), Some(name)) => folder.join(name),
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
    };
    Resolved {
        path: resolved,
        identity: None,
    }
}

#[cfg(unix)]
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn identity(_: &Path) -> Option<(u64, u64)> {
    None
}

/// Refuses, before any work starts, outputs that would destroy an input or each other: an output that is an input
/// (under any spelling or link), lies inside an input folder, is a folder holding an input, or is named twice.
///
/// # Errors
/// [`OutputError::OutputIsInput`], [`OutputError::OutputInsideInput`], [`OutputError::InputInsideOutput`] or
/// [`OutputError::OutputTwice`], naming the paths as given.
pub fn check_outputs(outputs: &[&Path], inputs: &[&Path]) -> Result<(), OutputError> {
    let inputs: Vec<(&Path, Resolved)> = inputs.iter().map(|&p| (p, resolve(p))).collect();
    let mut seen: Vec<(&Path, Resolved)> = Vec::new();
    for &output in outputs {
        let out = resolve(output);
        for (input, resolved) in &inputs {
            let same_file = out.identity.is_some() && out.identity == resolved.identity;
            if out.path == resolved.path || same_file {
                return Err(OutputError::OutputIsInput {
                    output: output.into(),
                    input: input.to_path_buf(),
                });
            }
            if out.path.starts_with(&resolved.path) {
                return Err(OutputError::OutputInsideInput {
                    output: output.into(),
                    input: input.to_path_buf(),
                });
            }
            if resolved.path.starts_with(&out.path) {
                return Err(OutputError::InputInsideOutput {
                    output: output.into(),
                    input: input.to_path_buf(),
                });
            }
        }
        if let Some((first, _)) = seen
            .iter()
            .find(|(_, r)| r.path == out.path || (r.identity.is_some() && r.identity == out.identity))
        {
            return Err(OutputError::OutputTwice {
                first: first.to_path_buf(),
                second: output.into(),
            });
        }
        seen.push((output, out));
    }
    Ok(())
}
