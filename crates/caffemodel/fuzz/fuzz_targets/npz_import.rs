//! Any bytes as an `.npz` imported into a small fixed net (caffemodel::npz::import_npz): a failure changes
//! nothing, a success exports and imports back to the same bytes. Inputs not starting with `PK` describe arrays
//! written into a valid archive first (see caffemodel::fuzzing::npz_import_input).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

/// A folder of this process for the input file and the export: in /dev/shm when there is one, since every
/// export is fsynced.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let base = if shm.is_dir() { shm } else { std::env::temp_dir() };
        let dir = base.join(format!("caffemodel-fuzz-npz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch folder");
        dir
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    caffemodel::fuzzing::npz_import_input(data, scratch());
});
