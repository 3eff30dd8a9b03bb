//! The bodies of the fuzz targets in `crates/caffemodel/fuzz`, shared with the test that replays their corpora and
//! crash reproducers (`tests/fuzz_corpus.rs`).
//!
//! Each function takes any input and panics only when a promise of this crate fails:
//! - nothing panics, whatever the bytes;
//! - an error names the file (and, for wire errors, an offset inside it);
//! - what parses re-encodes to exactly its own bytes (the lossless tree), and an edit of a payload keeps every
//!   other byte and the length;
//! - the views (layer names, types, blob shapes and values, solver-state fields) say what an independent protobuf
//!   decoder (prost) reads from the same bytes, by Caffe's rules, whenever that decoder accepts them too;
//! - an upgrade either succeeds and leaves nothing to upgrade, or fails and leaves the net unchanged;
//! - printed prototxt parses back to the same message;
//! - a failed npz import leaves the net unchanged, a successful one exports and imports back to the same bytes.

use crate::model::{BlobView, ModelFile, NetMessage};
use crate::text::{self, Schema};
use crate::tree::{Elem, MessageKind};
use crate::{npz, upgrade, Error};
use caffe_proto::{BlobProto, NetParameter, SolverParameter, SolverState};
use prost::Message as _;
use std::path::Path;

const NAME: &str = "fuzz-input";

/// Wraps `data` as a file, or `None` when it is refused before parsing (empty, another format's signature, text).
fn open(data: &[u8]) -> Option<ModelFile> {
    match ModelFile::from_bytes(NAME, data.to_vec()) {
        Ok(file) => Some(file),
        Err(e) => {
            check_error(&e, data);
            None
        }
    }
}

/// An error must name the file; a wire error's offset must lie within the bytes.
fn check_error(error: &Error, data: &[u8]) {
    let text = error.to_string();
    assert!(text.starts_with(NAME), "an error must name the file: {text}");
    if let Error::Wire { error, .. } = error {
        assert!(
            error.error.offset <= data.len() as u64,
            "wire error offset {} is past the end ({} bytes): {text}",
            error.error.offset,
            data.len()
        );
    }
}

/// Reads `data` as a net, a solver state and a blob, touching every view; checks that whatever parses re-encodes to
/// the same bytes and agrees with prost. Panics only on a real bug (a failed invariant), which is what the fuzzer
/// looks for.
pub fn decode_all_kinds(data: &[u8]) {
    let Some(file) = open(data) else {
        return;
    };
    match file.net() {
        Ok(net) => check_net_view(&net, data),
        Err(e) => check_error(&e, data),
    }
    check_solver_state_file(&file, data);
    check_blob_file(&file, data);
}

/// The `net` target: `data` as a `.caffemodel` of any generation, with everything a tool does to one: the views, the
/// lossless roundtrip, payload edits, typed decoding, the V0/V1 upgrade and printing as prototxt.
pub fn net(data: &[u8]) {
    let Some(file) = open(data) else {
        return;
    };
    let net = match file.net() {
        Ok(net) => net,
        Err(e) => {
            check_error(&e, data);
            return;
        }
    };
    check_net_view(&net, data);
    check_edits(&file, data);
    let schema = Schema::builtin();
    for with_values in [false, true] {
        let _ = text::tree_to_text(Path::new(NAME), net.message(), &schema, with_values);
    }
    match crate::decode_net(&file) {
        Ok(typed) => check_upgrade(typed),
        Err(e) => check_error(&e, data),
    }
}

/// The `solverstate` target: `data` as a `.solverstate`.
pub fn solver_state(data: &[u8]) {
    if let Some(file) = open(data) {
        check_solver_state_file(&file, data);
    }
}

/// The `binaryproto` target: `data` as a `.binaryproto` (a mean file: one BlobProto).
pub fn binaryproto(data: &[u8]) {
    if let Some(file) = open(data) {
        check_blob_file(&file, data);
    }
}

fn check_net_view(net: &NetMessage<'_>, data: &[u8]) {
    assert_eq!(net.encoded_len(), data.len() as u64, "encoded_len of an untouched net");
    assert!(net.to_bytes() == data, "a parsed net must re-encode to its own bytes");
    let _ = (net.name(), net.generation());
    for layer in net.layers() {
        let _ = (
            layer.name(),
            layer.type_name(),
            layer.modern_type_name(),
            layer.generation(),
        );
        for blob in layer.blobs() {
            exercise_blob(&blob);
        }
    }
    if let Ok(typed) = NetParameter::decode(data) {
        compare_net(net, &typed);
    }
}

fn exercise_blob(blob: &BlobView<'_, '_>) {
    let shape = blob.shape();
    let _ = (shape.count(), shape.to_string(), blob.has_diff(), blob.offset());
    let values = blob.data();
    let all = values.to_vec_f32();
    assert_eq!(all.len(), values.len());
    let wide = values.to_vec_f64();
    assert_eq!(wide.len(), values.len());
    for (a, b) in all.iter().zip(&wide) {
        // A signalling NaN may come back quiet from the widening: NaN is all that must survive.
        let narrowed = *b as f32;
        assert!(
            a.to_bits() == narrowed.to_bits() || (a.is_nan() && narrowed.is_nan()),
            "to_vec_f32 and to_vec_f64 disagree: {a} and {b}"
        );
    }
    if let Some(slice) = values.as_f32_slice() {
        assert!(same_bits_f32(slice, &all));
    }
    let mut chunks = Vec::new();
    values.for_each_chunk(3, |c| chunks.extend_from_slice(c));
    assert!(
        same_bits_f32(&chunks, &all),
        "for_each_chunk must see every value once, in order"
    );
    if all.len() > 2 {
        let mut middle = vec![0.0f32; all.len() - 2];
        values.read_f32(1, &mut middle);
        assert!(same_bits_f32(&middle, &all[1..all.len() - 1]), "read_f32 at an offset");
    }
}

fn same_bits_f32(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The views agree with prost's reading of the same bytes.
fn compare_net(net: &NetMessage<'_>, typed: &NetParameter) {
    let (mut modern, mut v1) = (typed.layer.iter(), typed.layers.iter());
    for layer in net.layers() {
        let what = format!("layer {}", layer.index);
        if layer.message().kind == MessageKind::Layer {
            let t = modern.next().expect("prost sees as many `layer`s");
            assert_eq!(layer.name(), t.name.as_deref().unwrap_or(""), "{what}: name");
            assert_eq!(layer.type_name(), t.r#type.as_deref().unwrap_or(""), "{what}: type");
            compare_blobs(&layer.blobs(), &t.blobs, &what);
            continue;
        }
        let t = v1.next().expect("prost sees as many `layers`");
        let v0 = t.layer.as_ref();
        let name = t.name.as_deref().or(v0.and_then(|l| l.name.as_deref()));
        assert_eq!(layer.name(), name.unwrap_or(""), "{what}: name");
        if let Some(v0) = v0 {
            assert_eq!(layer.type_name(), v0.r#type.as_deref().unwrap_or(""), "{what}: V0 type");
        }
        // The tree lists a V1 layer's own blobs and its V0 layer's blobs in file order; prost keeps them apart, so
        // compare when only one of them has any.
        match v0.map(|l| l.blobs.as_slice()).unwrap_or(&[]) {
            [] => compare_blobs(&layer.blobs(), &t.blobs, &what),
            inner if t.blobs.is_empty() => compare_blobs(&layer.blobs(), inner, &what),
            _ => {}
        }
    }
    assert!(modern.next().is_none() && v1.next().is_none(), "prost sees more layers");
}

fn compare_blobs(views: &[BlobView<'_, '_>], typed: &[BlobProto], what: &str) {
    assert_eq!(views.len(), typed.len(), "{what}: blob count");
    for (i, (view, t)) in views.iter().zip(typed).enumerate() {
        compare_blob(view, t, &format!("{what} blob {i}"));
    }
}

/// One blob against prost's BlobProto, by Caffe's `Blob::FromProto` rules: legacy 4-D shape when any of its fields
/// is set, else `shape`; `double_data` when non-empty, else `data`.
fn compare_blob(view: &BlobView<'_, '_>, t: &BlobProto, what: &str) {
    let legacy = [t.num, t.channels, t.height, t.width];
    let dims: Vec<i64> = if legacy.iter().any(Option::is_some) {
        legacy.iter().map(|d| i64::from(d.unwrap_or(0))).collect()
    } else {
        t.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default()
    };
    assert_eq!(view.shape().dims, dims, "{what}: shape");
    let expected: Vec<u64> = if t.double_data.is_empty() {
        t.data.iter().map(|&v| f64::from(v).to_bits()).collect()
    } else {
        t.double_data.iter().map(|v| v.to_bits()).collect()
    };
    let found: Vec<u64> = view.data().to_vec_f64().iter().map(|v| v.to_bits()).collect();
    assert_eq!(found, expected, "{what}: values");
    let diff = !t.diff.is_empty() || !t.double_diff.is_empty();
    assert_eq!(view.has_diff(), diff, "{what}: has_diff");
}

/// Setting every blob's data to the values it already holds must give the same bytes when the blobs store f32;
/// with doubles (rounded to f32 and back) the length and every view but those values stay as they were.
fn check_edits(file: &ModelFile, data: &[u8]) {
    let mut net = file.net().expect("parsed once already");
    let mut all_f32 = true;
    let mut expected = Vec::new();
    for layer in net.layers() {
        for blob in layer.blobs() {
            let values = blob.data();
            all_f32 &= values.is_empty() || values.elem() == Elem::F32;
            expected.push((layer.index, values.to_vec_f32()));
        }
    }
    let mut counts = std::collections::HashMap::new();
    for (layer, values) in &expected {
        let index = counts.entry(*layer).or_insert(0usize);
        net.set_blob_data(*layer, *index, values.clone())
            .expect("a blob takes as many values as it holds");
        *index += 1;
        let wrong = vec![0.0; values.len() + 1];
        assert!(
            net.set_blob_data(*layer, *index - 1, wrong).is_err(),
            "a wrong count is refused"
        );
    }
    let bytes = net.to_bytes();
    assert_eq!(bytes.len() as u64, net.encoded_len());
    if all_f32 {
        assert!(
            bytes == data,
            "rewriting every blob with its own values must give the same bytes"
        );
        return;
    }
    assert_eq!(bytes.len(), data.len(), "an edit keeps the length");
    let Ok(again) = ModelFile::from_bytes(NAME, bytes) else {
        return; // the new values happen to make it look like text
    };
    let again = again.net().expect("an edited net parses");
    let found: Vec<_> = again
        .layers()
        .iter()
        .flat_map(|l| {
            l.blobs()
                .iter()
                .map(|b| (l.index, b.data().to_vec_f32()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(found.len(), expected.len());
    for ((la, a), (lb, b)) in found.iter().zip(&expected) {
        assert!(
            la == lb && same_bits_f32(a, b),
            "an edited blob reads back its new values"
        );
    }
}

/// An upgrade succeeds and leaves nothing to upgrade, or fails and leaves the net as it was.
fn check_upgrade(mut typed: NetParameter) {
    let before = typed.encode_to_vec();
    match upgrade::upgrade_net(&mut typed) {
        Ok(report) => {
            let _ = report.to_string();
            assert!(
                !upgrade::net_needs_upgrade(&typed),
                "an upgraded net needs no further upgrade"
            );
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(
                typed.encode_to_vec() == before,
                "a failed upgrade leaves the net unchanged"
            );
        }
    }
}

fn check_solver_state_file(file: &ModelFile, data: &[u8]) {
    let state = match file.solver_state() {
        Ok(state) => state,
        Err(e) => {
            check_error(&e, data);
            return;
        }
    };
    assert!(
        state.to_bytes() == data,
        "a parsed solver state must re-encode to its own bytes"
    );
    let history: Vec<_> = state.history().collect();
    for blob in &history {
        exercise_blob(blob);
    }
    if let Ok(t) = SolverState::decode(data) {
        assert_eq!(state.iter(), t.iter.map(i64::from), "iter");
        assert_eq!(state.current_step(), t.current_step.map(i64::from), "current_step");
        assert_eq!(state.learned_net().as_deref(), t.learned_net.as_deref(), "learned_net");
        compare_blobs(&history, &t.history, "history");
    }
}

fn check_blob_file(file: &ModelFile, data: &[u8]) {
    let blob = match file.blob() {
        Ok(blob) => blob,
        Err(e) => {
            check_error(&e, data);
            return;
        }
    };
    assert!(blob.to_bytes() == data, "a parsed blob must re-encode to its own bytes");
    exercise_blob(&blob.view());
    if let Ok(t) = BlobProto::decode(data) {
        compare_blob(&blob.view(), &t, "blob");
    }
}

/// The `prototxt` target: `data` as a net and as a solver in protobuf text. A parse error points inside the text;
/// what parses prints as text that parses back to the same message (NaNs compared as NaN), decodes into the typed
/// message, and upgrades (or not) as [`upgrade`] promises.
pub fn prototxt(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let schema = Schema::builtin();
    let path = Path::new(NAME);
    for message in ["NetParameter", "SolverParameter"] {
        let parsed = match text::parse(path, text, &schema, message) {
            Ok(parsed) => parsed,
            Err(Error::Text { line, column, .. }) => {
                let lines = text.split('\n').count();
                assert!(
                    line >= 1 && line <= lines && column >= 1,
                    "error at {line}:{column} outside the text ({lines} lines)"
                );
                continue;
            }
            Err(e) => panic!("a text parse fails with a located error, not {e}"),
        };
        let printed = text::format_text(&parsed);
        let again = text::parse(path, &printed, &schema, message)
            .unwrap_or_else(|e| panic!("printed text must parse back: {e}\n{printed}"));
        assert!(
            canonical_nans(again).encode_to_vec() == canonical_nans(parsed.clone()).encode_to_vec(),
            "printed text parses back to another message:\n{printed}"
        );
        let bytes = parsed.encode_to_vec();
        if message == "NetParameter" {
            if let Ok(typed) = NetParameter::decode(bytes.as_slice()) {
                check_upgrade(typed);
            }
        } else if let Ok(mut typed) = SolverParameter::decode(bytes.as_slice()) {
            let before = typed.encode_to_vec();
            match upgrade::upgrade_solver(&mut typed) {
                Ok(_) => assert!(
                    !upgrade::solver_needs_upgrade(&typed),
                    "an upgraded solver needs no upgrade"
                ),
                Err(_) => assert!(
                    typed.encode_to_vec() == before,
                    "a failed upgrade leaves the solver unchanged"
                ),
            }
        }
    }
}

/// Every NaN replaced by the canonical one: text format prints any NaN as `nan`, so the payload does not survive.
fn canonical_nans(mut message: prost_reflect::DynamicMessage) -> prost_reflect::DynamicMessage {
    use prost_reflect::Value;
    fn fix(value: &mut Value) {
        match value {
            Value::F32(v) if v.is_nan() => *v = f32::NAN,
            Value::F64(v) if v.is_nan() => *v = f64::NAN,
            Value::List(items) => items.iter_mut().for_each(fix),
            Value::Message(m) => m.fields_mut().for_each(|(_, v)| fix(v)),
            _ => {}
        }
    }
    message.fields_mut().for_each(|(_, v)| fix(v));
    message
}

/// The net the `npz_import` target imports into: a modern net whose layers cover the npz layouts (a relative-index
/// weight blob, dense biases, a layer name with '/', a double blob, a blob stored unpacked).
pub fn npz_import_base() -> Vec<u8> {
    use caffe_proto::{BlobShape, LayerParameter};
    let blob = |dims: Vec<i64>, seed: f32| {
        let n: i64 = dims.iter().product();
        BlobProto {
            shape: Some(BlobShape { dim: dims }),
            data: (0..n).map(|i| if i % 3 == 0 { 0.0 } else { seed + i as f32 }).collect(),
            ..Default::default()
        }
    };
    let layer = |name: &str, ty: &str, blobs: Vec<BlobProto>| LayerParameter {
        name: Some(name.into()),
        r#type: Some(ty.into()),
        blobs,
        ..Default::default()
    };
    let double = BlobProto {
        shape: Some(BlobShape { dim: vec![2] }),
        double_data: vec![0.5, -0.25],
        ..Default::default()
    };
    let net = NetParameter {
        name: Some("npz".into()),
        layer: vec![
            layer("data", "Input", vec![]),
            layer(
                "conv/1",
                "Convolution",
                vec![blob(vec![2, 1, 2, 2], 1.0), blob(vec![2], 0.5)],
            ),
            layer("ip", "InnerProduct", vec![blob(vec![3, 4], -2.0), blob(vec![3], 0.0)]),
            layer("scale", "Scale", vec![double]),
        ],
        ..Default::default()
    };
    let mut bytes = net.encode_to_vec();
    // One more layer, "u", whose blob stores its two values unpacked (field 5 as fixed32, tag 2d), as old writers
    // did; prost would write them packed.
    let mut unpacked = Vec::new();
    for v in [1.5f32, 0.0] {
        unpacked.push(0x2d);
        unpacked.extend_from_slice(&v.to_le_bytes());
    }
    let shape = BlobShape { dim: vec![2] }.encode_to_vec();
    let mut blob_bytes = vec![0x3a, shape.len() as u8];
    blob_bytes.extend_from_slice(&shape);
    blob_bytes.extend_from_slice(&unpacked);
    let mut layer_bytes = vec![0x0a, 1, b'u', 0x12, 5];
    layer_bytes.extend_from_slice(b"Scale");
    layer_bytes.push(0x3a);
    layer_bytes.push(blob_bytes.len() as u8);
    layer_bytes.extend_from_slice(&blob_bytes);
    // NetParameter.layer is field 100: tag a2 06.
    bytes.extend_from_slice(&[0xa2, 0x06, layer_bytes.len() as u8]);
    bytes.extend_from_slice(&layer_bytes);
    bytes
}

/// The `npz_import` target's input: an npz archive as it is when it starts with the zip signature `PK`; any other
/// bytes describe arrays that are written into a fresh, valid archive first (so the importer's own checks are
/// reached, not only the zip reader's CRCs). Each array: a key byte (one of the base net's keys, or an unknown
/// one), a byte for dtype and rank, one byte per dimension (0 to 12), then its elements' little-endian bytes
/// (zeros when the input ends).
pub fn npz_import_input(data: &[u8], scratch: &Path) {
    let input = scratch.join("input.npz");
    if data.starts_with(b"PK") {
        std::fs::write(&input, data).expect("write the npz");
    } else if !write_described_npz(data, &input) {
        return;
    }
    npz_import(&input, scratch);
}

/// The keys [`npz_import_base`]'s blobs export to, in the sparse, dense and codebook layouts.
const NPZ_KEYS: &[&str] = &[
    "conv/1_W",
    "conv/1_W_indx",
    "conv/1_W_shape",
    "conv/1_b",
    "ip_W",
    "ip_W_indx",
    "ip_W_shape",
    "ip_b",
    "scale_W",
    "u_W",
    "conv/1_codebook",
    "conv/1_maskcode_W",
    "conv/1_maskcode_indx",
    "ip_codebook",
    "ip_maskcode_W",
    "ip_maskcode_indx",
];

/// Writes the arrays `data` describes (see [`npz_import_input`]) to `path`; false when the writer refuses them.
fn write_described_npz(data: &[u8], path: &Path) -> bool {
    fn elems<T, const N: usize>(bytes: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
        bytes
            .chunks_exact(N)
            .map(|c| from(c.try_into().expect("N bytes")))
            .collect()
    }
    let mut writer = sparse::NpzWriter::create(path).expect("create the npz");
    let mut at = 0;
    // The next `n` input bytes, zeros past the end.
    let mut take = |n: usize| {
        let mut out = data[at.min(data.len())..(at + n).min(data.len())].to_vec();
        out.resize(n, 0);
        at += n;
        (out, at >= data.len())
    };
    loop {
        let (head, _) = take(2);
        let (k, t) = (head[0], head[1]);
        let key = NPZ_KEYS
            .get(usize::from(k) % (NPZ_KEYS.len() + 1))
            .map_or_else(|| format!("extra{k}"), |k| (*k).to_string());
        let rank = usize::from(t / 5) % 4;
        let shape: Vec<usize> = take(rank).0.iter().map(|&d| usize::from(d % 13)).collect();
        let count: usize = shape.iter().product();
        let size = [4, 1, 2, 8, 8][usize::from(t % 5)];
        let (bytes, done) = take(count * size);
        let added = match t % 5 {
            0 => writer.add(&key, &shape, &elems(&bytes, f32::from_le_bytes)),
            1 => writer.add(&key, &shape, &bytes),
            2 => writer.add(&key, &shape, &elems(&bytes, u16::from_le_bytes)),
            3 => writer.add(&key, &shape, &elems(&bytes, i64::from_le_bytes)),
            _ => writer.add(&key, &shape, &elems(&bytes, f64::from_le_bytes)),
        };
        if added.is_err() {
            return false;
        }
        if done {
            return writer.finish().is_ok();
        }
    }
}

/// The `npz_import` target: imports the npz at `input` into [`npz_import_base`]. A failure names the npz and
/// changes nothing; a success sets every blob (keeping the file's length and framing), and the result exports and
/// imports back to the same bytes. `scratch` is a folder for the export.
pub fn npz_import(input: &Path, scratch: &Path) {
    let base = npz_import_base();
    let file = ModelFile::from_bytes("base.caffemodel", base.clone()).expect("the base net is a valid file");
    let mut net = file.net().expect("the base net parses");
    let blobs: usize = net.layers().iter().map(|l| l.blobs().len()).sum();
    let entries = match npz::import_npz(&mut net, input) {
        Ok(entries) => entries,
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains(&input.display().to_string()),
                "the error names the npz: {text}"
            );
            assert!(
                net.to_bytes() == base,
                "a failed import leaves the net unchanged: {text}"
            );
            return;
        }
    };
    assert_eq!(entries.len(), blobs, "every blob is imported");
    let bytes = net.to_bytes();
    assert_eq!(bytes.len(), base.len(), "an import keeps the file's length");
    let dense = scratch.join("export.npz");
    npz::export_npz(&net, &dense, npz::Layout::Dense).expect("an imported net exports");
    let fresh = ModelFile::from_bytes("base.caffemodel", base.clone()).expect("valid");
    let mut fresh = fresh.net().expect("parses");
    npz::import_npz(&mut fresh, &dense).expect("an exported npz imports");
    assert!(fresh.to_bytes() == bytes, "export then import gives the same bytes");
}
