//! Byte-exact roundtrip: parse each file losslessly, encode it again, compare.

use anyhow::Result;
use caffemodel::{BinaryKind, ModelFile};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// True for files that are Caffe binaries by name: .caffemodel, .solverstate, .binaryproto, and the extensionless
/// weight files legacy Caffe wrote (`lenet_iter_10000`) next to other model files.
fn is_caffe_binary(path: &Path) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) => matches!(ext, "caffemodel" | "solverstate" | "binaryproto"),
        None => path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains("_iter_")),
    }
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.path());
        for entry in entries {
            collect(&entry.path(), out)?;
        }
    } else if is_caffe_binary(path) {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// One file's outcome.
enum Outcome {
    Identical,
    Differs(String),
    Failed(String),
}

fn roundtrip(path: &Path) -> (Outcome, String, usize) {
    let model = match ModelFile::open(path) {
        Ok(m) => m,
        Err(e) => return (Outcome::Failed(e.to_string()), String::new(), 0),
    };
    let kind = BinaryKind::from_path(path);
    let (bytes, what) = match kind {
        BinaryKind::Net => match model.net() {
            Ok(net) => (
                net.to_bytes(),
                format!("net {}, {} layers", net.generation(), net.layers().len()),
            ),
            Err(e) => return (Outcome::Failed(e.to_string()), String::new(), model.bytes().len()),
        },
        BinaryKind::SolverState => match model.solver_state() {
            Ok(s) => (
                s.to_bytes(),
                format!("solverstate, {} history blobs", s.history().count()),
            ),
            Err(e) => return (Outcome::Failed(e.to_string()), String::new(), model.bytes().len()),
        },
        BinaryKind::Blob => match model.blob() {
            Ok(b) => (b.to_bytes(), format!("blob {}", b.view().shape())),
            Err(e) => return (Outcome::Failed(e.to_string()), String::new(), model.bytes().len()),
        },
    };
    let original = model.bytes();
    let outcome = if bytes == original {
        Outcome::Identical
    } else {
        let at = bytes
            .iter()
            .zip(original)
            .position(|(a, b)| a != b)
            .unwrap_or(bytes.len().min(original.len()));
        Outcome::Differs(format!(
            "first difference at byte {at} (sizes {} -> {})",
            original.len(),
            bytes.len()
        ))
    };
    (outcome, what, original.len())
}

/// Runs the roundtrip over `paths`; returns whether every file was identical.
pub fn run(paths: Vec<PathBuf>) -> Result<bool> {
    let paths = if paths.is_empty() {
        let root = crate::repo_root();
        vec![root.join("testdata"), root.join("../shared/fixtures")]
    } else {
        paths
    };
    let mut files = Vec::new();
    for path in &paths {
        if !path.exists() {
            anyhow::bail!("{}: no such file or folder", path.display());
        }
        if path.is_file() {
            files.push(path.clone());
        } else {
            collect(path, &mut files)?;
        }
    }
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(vec!["file", "bytes", "content", "result", "ms"]);
    let mut ok = true;
    for file in &files {
        let start = Instant::now();
        let (outcome, what, size) = roundtrip(file);
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let result = match outcome {
            Outcome::Identical => "identical".to_string(),
            Outcome::Differs(d) => {
                ok = false;
                format!("DIFFERS: {d}")
            }
            Outcome::Failed(e) => {
                ok = false;
                format!("ERROR: {e}")
            }
        };
        table.add_row(vec![
            file.display().to_string(),
            size.to_string(),
            what,
            result,
            format!("{ms:.1}"),
        ]);
    }
    println!("{table}");
    println!(
        "{} files, {}",
        files.len(),
        if ok {
            "all byte-identical"
        } else {
            "SOME DIFFER OR FAILED"
        }
    );
    Ok(ok && !files.is_empty())
}
