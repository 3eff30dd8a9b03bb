//! Any bytes as a Caffe LMDB record's Datum, read, batched and transformed (see ../checks.rs).
#![no_main]

#[path = "../checks.rs"]
mod checks;

use std::path::PathBuf;
use std::sync::OnceLock;

/// A folder of this process for the LMDB: in /dev/shm when there is one, since every LMDB is synced.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let base = if shm.is_dir() { shm } else { std::env::temp_dir() };
        let dir = base.join(format!("datasets-fuzz-datum-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch folder");
        dir
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::datum(data, scratch());
});
