//! The body of the decoder fuzz target, shared with the test that replays its corpus.

use crate::{ModelFile, Net};

/// Reads `data` as a net, a solver state and a blob, touching every view; checks that whatever parses re-encodes to
/// the same bytes. Panics only on a real bug (a failed invariant), which is what the fuzzer looks for.
pub fn decode_all_kinds(data: &[u8]) {
    let Ok(file) = ModelFile::from_bytes("fuzz-input", data.to_vec()) else {
        return;
    };
    if let Ok(net) = file.net() {
        exercise_net(&net);
        assert!(net.to_bytes() == data, "a parsed net must re-encode to its own bytes");
    }
    if let Ok(state) = file.solver_state() {
        let _ = (state.iter(), state.learned_net(), state.current_step());
        for blob in state.history() {
            let _ = blob.data().to_vec_f32();
        }
        assert!(
            state.to_bytes() == data,
            "a parsed solver state must re-encode to its own bytes"
        );
    }
    if let Ok(blob) = file.blob() {
        let _ = blob.view().data().to_vec_f64();
        assert!(blob.to_bytes() == data, "a parsed blob must re-encode to its own bytes");
    }
}

fn exercise_net(net: &Net<'_>) {
    let _ = (net.name(), net.generation());
    for layer in net.layers() {
        let _ = (layer.name(), layer.type_name(), layer.generation());
        for blob in layer.blobs() {
            let shape = blob.shape();
            let _ = shape.count();
            let values = blob.data();
            let all = values.to_vec_f32();
            assert_eq!(all.len(), values.len());
            let mut n = 0;
            values.for_each_chunk(3, |c| n += c.len());
            assert_eq!(n, values.len());
            let _ = blob.has_diff();
        }
    }
}
