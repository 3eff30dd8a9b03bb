//! Any bytes, read as each kind of Caffe binary (net, solver state, blob): Ok or a located error, never a panic;
//! what reads roundtrips byte for byte and agrees with prost.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    caffemodel::fuzzing::decode_all_kinds(data);
});
