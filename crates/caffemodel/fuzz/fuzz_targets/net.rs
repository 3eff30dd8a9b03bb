//! Any bytes as a `.caffemodel` of any generation: views, lossless roundtrip, payload edits, typed decoding, the
//! V0/V1 upgrade and printing as prototxt (see caffemodel::fuzzing::net).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    caffemodel::fuzzing::net(data);
});
