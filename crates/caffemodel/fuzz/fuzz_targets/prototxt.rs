//! Any bytes as a net and a solver prototxt: located errors; print then parse gives the same message; upgrades.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    caffemodel::fuzzing::prototxt(data);
});
