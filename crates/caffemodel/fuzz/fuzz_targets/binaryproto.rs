//! Any bytes as a `.binaryproto` (a mean file): roundtrip, views against prost.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    caffemodel::fuzzing::binaryproto(data);
});
