//! The body of the decoder fuzz target (`crates/caffez/fuzz`), shared with the test that replays its corpus.

use crate::CaffezFile;

/// Parses and decodes `data` as a `.caffez` file. Panics only on a real bug, which is what the fuzzer looks
/// for: whatever decodes has exactly the length and checksum the header promised. Files whose model would
/// exceed 64 MiB are parsed only (a chunk of 2^24 pruned weights takes two bytes, so tiny files can ask for
/// gigabytes, as with any compressor).
pub fn check_decode(data: &[u8]) {
    let Ok(file) = CaffezFile::parse(data) else {
        return;
    };
    if file.output_len > 1 << 26 {
        return;
    }
    if let Ok(model) = file.decompress() {
        assert_eq!(model.len() as u64, file.output_len);
        assert_eq!(crc32fast::hash(&model), file.output_crc);
    }
}
