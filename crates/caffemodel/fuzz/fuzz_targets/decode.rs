//! Any bytes, read as each kind of Caffe binary: must return Ok or Err, never panic, and what reads must roundtrip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    caffemodel::fuzzing::decode_all_kinds(data);
});
