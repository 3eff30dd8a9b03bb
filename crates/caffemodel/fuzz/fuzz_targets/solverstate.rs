//! Any bytes as a `.solverstate`: roundtrip, views against prost.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    caffemodel::fuzzing::solver_state(data);
});
