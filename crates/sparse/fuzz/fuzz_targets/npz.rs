//! Any bytes as an `.npz` archive and as a standalone `.npy` file (see ../checks.rs).
#![no_main]

#[path = "../checks.rs"]
mod checks;

use std::path::PathBuf;
use std::sync::OnceLock;

/// A folder of this process for the npy file: in /dev/shm when there is one.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let base = if shm.is_dir() { shm } else { std::env::temp_dir() };
        let dir = base.join(format!("sparse-fuzz-npz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch folder");
        dir
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::check(data, scratch());
});
