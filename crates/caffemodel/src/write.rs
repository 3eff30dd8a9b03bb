//! Writing files so that nothing is lost: a temporary file beside the target, then a rename.

use crate::error::{Error, Result};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes `path` atomically: `fill` writes into a temporary file in the same folder, which is flushed, synced and
/// renamed over `path` only when `fill` succeeds. On any error the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(path, "output path has no file name"))?;
    if path.is_dir() {
        return Err(Error::IsDirectory { path: path.into() });
    }
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let file = File::create(&tmp)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        fill(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Refuses to write `output` when it is one of `inputs` (the same file, through any path), unless `overwrite`.
pub fn refuse_overwriting_input(output: &Path, inputs: &[&Path], overwrite: bool) -> Result<()> {
    if overwrite {
        return Ok(());
    }
    let Ok(out) = fs::canonicalize(output) else {
        return Ok(()); // the output does not exist yet
    };
    for input in inputs {
        if fs::canonicalize(input).is_ok_and(|i| i == out) {
            return Err(Error::invalid(
                output,
                "refusing to overwrite an input file (pass --force to allow it)",
            ));
        }
    }
    Ok(())
}
