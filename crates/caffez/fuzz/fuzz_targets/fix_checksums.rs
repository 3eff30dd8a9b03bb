//! Recomputes the CRC-32 of a `.caffez` file's header and of every section that lies whole in the file, so a
//! mutated file still reaches the parsers and decoders behind the checks (only the model's own CRC-32, at bytes
//! 24..28, is left as it is: it needs the decoded model). Shared by the fuzz target and tests/fuzz_corpus.rs.

/// Magic, version, flags, section count, output length and CRC-32, then the header's CRC-32.
const HEADER_LEN: usize = 32;
/// Kind byte and body length before a section's body, its CRC-32 after it.
const SECTION_HEAD: usize = 1 + 8;

/// `data` with every checksum it has room for recomputed, or `None` when that changes nothing (the file is
/// already consistent, or is too short to have a header).
pub fn fix_checksums(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < HEADER_LEN {
        return None;
    }
    let mut fixed = data.to_vec();
    let crc = crc32fast::hash(&fixed[..28]);
    fixed[28..32].copy_from_slice(&crc.to_le_bytes());
    let sections = u32::from_le_bytes(fixed[12..16].try_into().expect("4 bytes"));
    let mut at = HEADER_LEN;
    for _ in 0..sections {
        let Some(len) = fixed.get(at + 1..at + SECTION_HEAD) else {
            break;
        };
        let body_len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
        // The body and its CRC-32 must lie in the file (a hostile length can be anything up to 2^64 - 1).
        let room = (fixed.len() - at - SECTION_HEAD) as u64;
        if room < 4 || body_len > room - 4 {
            break;
        }
        let end = at + SECTION_HEAD + body_len as usize;
        let crc = crc32fast::hash(&fixed[at..end]);
        fixed[end..end + 4].copy_from_slice(&crc.to_le_bytes());
        at = end + 4;
    }
    (fixed != data).then_some(fixed)
}

/// [`caffez::fuzzing::check_decode`] on `data`, then on `data` with its checksums recomputed.
pub fn check_decode_both(data: &[u8]) {
    caffez::fuzzing::check_decode(data);
    if let Some(fixed) = fix_checksums(data) {
        caffez::fuzzing::check_decode(&fixed);
    }
}
