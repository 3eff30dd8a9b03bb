//! Valid but non-canonical protobuf encodings: overlong varints in tags and lengths, packed fields written element
//! by element, one repeated field split over packed and unpacked runs, zero-length packed fields, fields repeated
//! and out of order. Caffe's C++ writer never produces them, but every protobuf reader accepts them, and so does
//! this crate: decoding then encoding gives the input bytes, the views read what prost reads, and an edit of a
//! payload keeps every other byte.

use caffe_proto::{BlobProto, NetParameter, SolverState};
use caffemodel::ModelFile;
use proptest::prelude::*;
use prost::Message;

/// The decoder fuzz target's first find (issue 13): field 8 (double_data) of a BlobProto as an unpacked fixed64
/// element whose tag 0x41 is written as the two-byte varint `c1 00`. It used to parse and then re-encode with the
/// one-byte tag: 9 bytes instead of its own 10.
const OVERLONG_UNPACKED_TAG: [u8; 10] = [0xc1, 0x00, 0x5e, 0xc1, 0x81, 0xc1, 0xc1, 0xc1, 0xc1, 0x40];

#[test]
fn the_fuzzers_overlong_tag_roundtrips() {
    let file = ModelFile::from_bytes("x.binaryproto", OVERLONG_UNPACKED_TAG.to_vec()).unwrap();
    let blob = file.blob().unwrap();
    assert_eq!(blob.to_bytes(), OVERLONG_UNPACKED_TAG);
    let expected = f64::from_le_bytes(OVERLONG_UNPACKED_TAG[2..].try_into().unwrap());
    assert_eq!(blob.view().data().to_vec_f64(), [expected]);
    assert_eq!(
        BlobProto::decode(&OVERLONG_UNPACKED_TAG[..]).unwrap().double_data,
        [expected]
    );
    caffemodel::fuzzing::decode_all_kinds(&OVERLONG_UNPACKED_TAG);
}

// ---- a writer that spends more bytes than needed, on purpose ----

/// A small deterministic generator (xorshift64*), so one proptest seed describes a whole file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// Extra bytes for a varint: mostly none, sometimes a few, now and then up to the 10-byte limit.
    fn pad(&mut self, value: u64) -> usize {
        let room = 10 - varint_len(value);
        match self.below(10) {
            0..=4 => 0,
            5..=7 => (1 + self.below(2) as usize).min(room),
            _ => self.below(room as u64 + 1) as usize,
        }
    }
}

fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// `value` as a varint `extra` bytes longer than needed (continuation bits over zero groups).
fn put_varint(out: &mut Vec<u8>, mut value: u64, extra: usize) {
    let total = varint_len(value) + extra;
    assert!(total <= 10);
    for i in 0..total {
        let last = i + 1 == total;
        out.push((value & 0x7f) as u8 | if last { 0 } else { 0x80 });
        value >>= 7;
    }
}

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

fn put_tag(out: &mut Vec<u8>, rng: &mut Rng, number: u32, wire: u64) {
    let tag = (u64::from(number) << 3) | wire;
    let pad = rng.pad(tag);
    put_varint(out, tag, pad);
}

fn put_len_field(out: &mut Vec<u8>, rng: &mut Rng, number: u32, payload: &[u8]) {
    put_tag(out, rng, number, LEN);
    let pad = rng.pad(payload.len() as u64);
    put_varint(out, payload.len() as u64, pad);
    out.extend_from_slice(payload);
}

fn put_varint_field(out: &mut Vec<u8>, rng: &mut Rng, number: u32, value: u64) {
    put_tag(out, rng, number, VARINT);
    let pad = rng.pad(value);
    put_varint(out, value, pad);
}

/// A field no schema message here knows (numbers well above Caffe's), of a random wire type.
fn put_unknown(out: &mut Vec<u8>, rng: &mut Rng) {
    let number = 5000 + rng.below(100) as u32;
    match rng.below(4) {
        0 => {
            let value = rng.next() >> rng.below(64);
            put_varint_field(out, rng, number, value)
        }
        1 => {
            put_tag(out, rng, number, FIXED32);
            out.extend_from_slice(&(rng.next() as u32).to_le_bytes());
        }
        2 => {
            put_tag(out, rng, number, FIXED64);
            out.extend_from_slice(&rng.next().to_le_bytes());
        }
        _ => {
            let payload: Vec<u8> = (0..rng.below(6)).map(|_| rng.next() as u8).collect();
            put_len_field(out, rng, number, &payload);
        }
    }
}

/// Fields of one message, each already encoded, written in a random order: the order of a message's fields is
/// free in protobuf, except among the occurrences of one repeated field, which `ordered` groups keep.
fn shuffle_groups(rng: &mut Rng, groups: Vec<Vec<Vec<u8>>>) -> Vec<u8> {
    // Interleave the groups at random, keeping each group's own order.
    let mut queues: Vec<std::collections::VecDeque<Vec<u8>>> = groups.into_iter().map(Into::into).collect();
    let mut out = Vec::new();
    loop {
        let open: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].is_empty()).collect();
        if open.is_empty() {
            return out;
        }
        let pick = open[rng.below(open.len() as u64) as usize];
        out.extend(queues[pick].pop_front().unwrap());
    }
}

/// What a generated blob holds, to check the views against.
#[derive(Clone, Debug)]
struct BlobSpec {
    dims: Vec<i64>,
    legacy: bool,
    values: Vec<f64>,
    double: bool,
    diff: bool,
}

fn random_blob(rng: &mut Rng) -> BlobSpec {
    let dims: Vec<i64> = (0..rng.below(4)).map(|_| 1 + rng.below(4) as i64).collect();
    let legacy = rng.chance(30);
    let dims = if legacy {
        let mut d = vec![1i64; 4 - dims.len().min(4)];
        d.extend(&dims);
        d
    } else {
        dims
    };
    let count: i64 = dims.iter().product();
    let double = rng.chance(25);
    let values = (0..count)
        .map(|_| {
            let v = (rng.next() >> 40) as f64 / 1024.0 - 8000.0;
            if double {
                v
            } else {
                f64::from(v as f32)
            }
        })
        .collect();
    BlobSpec {
        dims,
        legacy,
        values,
        double,
        diff: rng.chance(20),
    }
}

/// The elements of a repeated float/double field as packed runs (some of length zero) and unpacked runs.
fn put_values(rng: &mut Rng, number: u32, elems: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let wire = if elems.first().is_some_and(|e| e.len() == 8) {
        FIXED64
    } else {
        FIXED32
    };
    let mut runs = Vec::new();
    let mut rest = elems;
    loop {
        if rng.chance(10) {
            let mut zero = Vec::new();
            put_len_field(&mut zero, rng, number, &[]);
            runs.push(zero);
        }
        if rest.is_empty() {
            return runs;
        }
        let take = 1 + rng.below(rest.len() as u64) as usize;
        let (run, tail) = rest.split_at(take);
        rest = tail;
        let mut out = Vec::new();
        if rng.chance(50) {
            put_len_field(&mut out, rng, number, &run.concat());
        } else {
            for elem in run {
                put_tag(&mut out, rng, number, wire);
                out.extend_from_slice(elem);
            }
        }
        runs.push(out);
    }
}

fn encode_blob(rng: &mut Rng, spec: &BlobSpec) -> Vec<u8> {
    let mut groups: Vec<Vec<Vec<u8>>> = Vec::new();
    if spec.legacy {
        for (number, &d) in (1u32..=4).zip(&spec.dims) {
            let mut f = Vec::new();
            // A decoy value first now and then: the last occurrence of a singular field counts.
            if rng.chance(15) {
                put_varint_field(&mut f, rng, number, 77);
            }
            put_varint_field(&mut f, rng, number, d as u64);
            groups.push(vec![f]);
        }
    } else if !spec.dims.is_empty() || rng.chance(50) {
        // BlobShape, possibly split over several `shape` fields (protobuf merges them: the dims concatenate),
        // each with packed or unpacked dims.
        let mut parts = Vec::new();
        let mut rest = &spec.dims[..];
        loop {
            let take = if rest.is_empty() {
                0
            } else {
                1 + rng.below(rest.len() as u64) as usize
            };
            let (part, tail) = rest.split_at(take);
            rest = tail;
            let mut shape = Vec::new();
            if rng.chance(50) {
                let mut packed = Vec::new();
                for &d in part {
                    let pad = rng.pad(d as u64);
                    put_varint(&mut packed, d as u64, pad);
                }
                if !part.is_empty() || rng.chance(30) {
                    put_len_field(&mut shape, rng, 1, &packed);
                }
            } else {
                for &d in part {
                    put_varint_field(&mut shape, rng, 1, d as u64);
                }
            }
            let mut field = Vec::new();
            put_len_field(&mut field, rng, 7, &shape);
            parts.push(field);
            if rest.is_empty() {
                break;
            }
        }
        groups.push(parts);
    }
    let elems: Vec<Vec<u8>> = spec
        .values
        .iter()
        .map(|&v| {
            if spec.double {
                v.to_le_bytes().to_vec()
            } else {
                (v as f32).to_le_bytes().to_vec()
            }
        })
        .collect();
    let (data, diff) = if spec.double { (8, 9) } else { (5, 6) };
    groups.push(put_values(rng, data, &elems));
    if spec.diff {
        groups.push(put_values(rng, diff, &elems));
    }
    for _ in 0..rng.below(3) {
        let mut f = Vec::new();
        put_unknown(&mut f, rng);
        groups.push(vec![f]);
    }
    shuffle_groups(rng, groups)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Gen {
    Modern,
    V1,
    V0,
}

#[derive(Clone, Debug)]
struct LayerSpec {
    name: String,
    blobs: Vec<BlobSpec>,
}

/// A whole net in one generation, every field written by the wasteful writer.
fn random_net(seed: u64) -> (Vec<u8>, Gen, Vec<LayerSpec>) {
    let mut rng = Rng(seed | 1);
    let generation = [Gen::Modern, Gen::V1, Gen::V0][rng.below(3) as usize];
    let layers: Vec<LayerSpec> = (0..1 + rng.below(3))
        .map(|i| LayerSpec {
            name: format!("l{i}"),
            blobs: (0..rng.below(3)).map(|_| random_blob(&mut rng)).collect(),
        })
        .collect();
    let mut groups: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut name = Vec::new();
    put_len_field(&mut name, &mut rng, 1, b"net");
    groups.push(vec![name]);
    let mut layer_fields = Vec::new();
    for layer in &layers {
        let mut fields: Vec<Vec<Vec<u8>>> = Vec::new();
        let blobs: Vec<Vec<u8>> = layer.blobs.iter().map(|b| encode_blob(&mut rng, b)).collect();
        let (name_field, blob_field) = match generation {
            Gen::Modern => (1, 7),
            Gen::V1 => (4, 6),
            Gen::V0 => (1, 50),
        };
        let mut name = Vec::new();
        if rng.chance(20) {
            put_len_field(&mut name, &mut rng, name_field, b"decoy");
        }
        put_len_field(&mut name, &mut rng, name_field, layer.name.as_bytes());
        fields.push(vec![name]);
        let mut ty = Vec::new();
        match generation {
            Gen::V1 => put_varint_field(&mut ty, &mut rng, 5, 4), // CONVOLUTION
            _ => put_len_field(&mut ty, &mut rng, 2, b"Convolution"),
        }
        fields.push(vec![ty]);
        fields.push(
            blobs
                .iter()
                .map(|b| {
                    let mut f = Vec::new();
                    put_len_field(&mut f, &mut rng, blob_field, b);
                    f
                })
                .collect(),
        );
        if rng.chance(30) {
            let mut f = Vec::new();
            put_unknown(&mut f, &mut rng);
            fields.push(vec![f]);
        }
        let body = shuffle_groups(&mut rng, fields);
        let mut field = Vec::new();
        match generation {
            Gen::Modern => put_len_field(&mut field, &mut rng, 100, &body),
            Gen::V1 => put_len_field(&mut field, &mut rng, 2, &body),
            Gen::V0 => {
                let mut wrapper = Vec::new();
                put_len_field(&mut wrapper, &mut rng, 1, &body);
                put_len_field(&mut field, &mut rng, 2, &wrapper);
            }
        }
        layer_fields.push(field);
    }
    groups.push(layer_fields);
    for _ in 0..rng.below(3) {
        let mut f = Vec::new();
        put_unknown(&mut f, &mut rng);
        groups.push(vec![f]);
    }
    (shuffle_groups(&mut rng, groups), generation, layers)
}

fn check_views(net: &caffemodel::NetMessage<'_>, layers: &[LayerSpec]) {
    let views = net.layers();
    assert_eq!(views.len(), layers.len());
    for (view, spec) in views.iter().zip(layers) {
        assert_eq!(view.name(), spec.name);
        let blobs = view.blobs();
        assert_eq!(blobs.len(), spec.blobs.len());
        for (blob, spec) in blobs.iter().zip(&spec.blobs) {
            let shape = blob.shape();
            assert_eq!(
                (shape.dims.as_slice(), shape.legacy),
                (spec.dims.as_slice(), spec.legacy)
            );
            let values: Vec<u64> = blob.data().to_vec_f64().iter().map(|v| v.to_bits()).collect();
            let expected: Vec<u64> = spec.values.iter().map(|v| v.to_bits()).collect();
            assert_eq!(values, expected);
            assert_eq!(blob.has_diff(), spec.diff && !spec.values.is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Decode then encode gives the input bytes; the views read what was written and what prost reads; every
    /// truncation roundtrips or fails cleanly; an edit keeps every byte but the payload's.
    #[test]
    fn wasteful_encodings_roundtrip_byte_for_byte(seed in any::<u64>()) {
        let (bytes, generation, layers) = random_net(seed);
        // The encoding is valid protobuf: prost reads it.
        let typed = NetParameter::decode(bytes.as_slice()).expect("the generator writes valid protobuf");
        let expected_layers = match generation { Gen::Modern => typed.layer.len(), _ => typed.layers.len() };
        prop_assert_eq!(expected_layers, layers.len());
        let Ok(file) = ModelFile::from_bytes("w.caffemodel", bytes.clone()) else {
            return Ok(()); // refused as text before parsing: no roundtrip promised
        };
        let net = file.net().unwrap_or_else(|e| panic!("a valid encoding parses: {e}"));
        prop_assert!(net.to_bytes() == bytes, "decode then encode must give the input");
        prop_assert_eq!(net.encoded_len(), bytes.len() as u64);
        check_views(&net, &layers);
        // The fuzz target's checks: views against prost, edits, upgrade, printing.
        caffemodel::fuzzing::net(&bytes);

        // An edit: every blob's values negated and set back; only payload bytes may change, and setting the old
        // values again restores the file.
        let mut edited = file.net().unwrap();
        let mut originals = Vec::new();
        for (l, layer) in net.layers().iter().enumerate() {
            for (b, blob) in layer.blobs().iter().enumerate() {
                let values = blob.data().to_vec_f32();
                edited.set_blob_data(l, b, values.iter().map(|v| -v).collect()).unwrap();
                originals.push((l, b, values));
            }
        }
        let changed = edited.to_bytes();
        prop_assert_eq!(changed.len(), bytes.len());
        if let Ok(file2) = ModelFile::from_bytes("e.caffemodel", changed.clone()) {
            let again = file2.net().unwrap();
            let mut k = 0;
            for layer in again.layers() {
                for blob in layer.blobs() {
                    let negated: Vec<u32> = originals[k].2.iter().map(|v| (-v).to_bits()).collect();
                    let found: Vec<u32> = blob.data().to_vec_f32().iter().map(|v| v.to_bits()).collect();
                    prop_assert_eq!(found, negated);
                    k += 1;
                }
            }
        }
        let all_f32 = layers.iter().all(|l| l.blobs.iter().all(|b| !b.double || b.values.is_empty()));
        for (l, b, values) in originals {
            edited.set_blob_data(l, b, values).unwrap();
        }
        if all_f32 {
            prop_assert!(edited.to_bytes() == bytes, "restoring the values restores the file");
        }

        // Every truncation: a shorter net that roundtrips, or an error with an offset inside the file.
        for cut in 1..bytes.len() {
            let Ok(file) = ModelFile::from_bytes("t.caffemodel", bytes[..cut].to_vec()) else { continue };
            match file.net() {
                Ok(net) => prop_assert!(net.to_bytes() == bytes[..cut]),
                Err(e) => {
                    let text = e.to_string();
                    prop_assert!(text.starts_with("t.caffemodel"), "{}", text);
                }
            }
        }
    }

    /// The same writer for a lone blob (a mean file) and a solver state's history.
    #[test]
    fn wasteful_blobs_and_solver_states_roundtrip(seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let spec = random_blob(&mut rng);
        let blob = encode_blob(&mut rng, &spec);
        let typed = BlobProto::decode(blob.as_slice()).expect("valid protobuf");
        prop_assert_eq!(typed.double_data.is_empty() && typed.data.is_empty(), spec.values.is_empty());
        if !blob.is_empty() {
            if let Ok(file) = ModelFile::from_bytes("m.binaryproto", blob.clone()) {
                if let Ok(parsed) = file.blob() {
                    prop_assert!(parsed.to_bytes() == blob);
                    let values: Vec<u64> = parsed.view().data().to_vec_f64().iter().map(|v| v.to_bits()).collect();
                    prop_assert_eq!(values, spec.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
                } else {
                    // Only a blob without any known field is refused (NotCaffe).
                    prop_assert!(spec.values.is_empty() && spec.dims.is_empty());
                }
            }
            caffemodel::fuzzing::binaryproto(&blob);
        }
        let mut state = Vec::new();
        put_varint_field(&mut state, &mut rng, 1, 1000);
        put_len_field(&mut state, &mut rng, 3, &blob);
        put_len_field(&mut state, &mut rng, 2, b"net.caffemodel");
        put_len_field(&mut state, &mut rng, 3, &blob);
        put_varint_field(&mut state, &mut rng, 4, 2);
        prop_assert_eq!(SolverState::decode(state.as_slice()).unwrap().history.len(), 2);
        let file = ModelFile::from_bytes("s.solverstate", state.clone()).unwrap();
        let parsed = file.solver_state().unwrap();
        prop_assert!(parsed.to_bytes() == state);
        prop_assert_eq!(parsed.iter(), Some(1000));
        caffemodel::fuzzing::solver_state(&state);
    }
}

#[test]
fn an_edit_keeps_overlong_heads_and_changes_only_the_payload() {
    // layer { name: "a" blobs { shape { dim: 2 } data: [1, 2] } } with the layer's tag (a2 06) written as three
    // bytes, the blob's length as two, and the packed data's tag as two.
    let mut blob = vec![0x3a, 0x03, 0x0a, 0x01, 0x02];
    blob.extend_from_slice(&[0xaa, 0x00, 0x08]);
    blob.extend_from_slice(&1.0f32.to_le_bytes());
    blob.extend_from_slice(&2.0f32.to_le_bytes());
    let mut layer = vec![0x0a, 0x01, b'a', 0x3a, 0x80 | blob.len() as u8, 0x00];
    layer.extend_from_slice(&blob);
    let mut bytes = vec![0xa2, 0x86, 0x00, layer.len() as u8];
    bytes.extend_from_slice(&layer);
    let file = ModelFile::from_bytes("h.caffemodel", bytes.clone()).unwrap();
    let mut net = file.net().unwrap();
    assert_eq!(net.to_bytes(), bytes);
    assert_eq!(net.layers()[0].blobs()[0].data().to_vec_f32(), [1.0, 2.0]);
    net.set_blob_data(0, 0, vec![3.0, -4.0]).unwrap();
    let edited = net.to_bytes();
    let mut expected = bytes.clone();
    let at = expected.len() - 8;
    expected[at..at + 4].copy_from_slice(&3.0f32.to_le_bytes());
    expected[at + 4..].copy_from_slice(&(-4.0f32).to_le_bytes());
    assert_eq!(edited, expected);
}

#[test]
fn a_blob_with_both_data_and_double_data_reads_double_data_as_caffe_does() {
    // data: [1] and double_data: [2.5], shape [1]. Caffe's Blob::FromProto takes double_data when it is non-empty;
    // setting the blob's values replaces that field alone (it used to panic, walking both).
    let mut bytes = vec![0x3a, 0x03, 0x0a, 0x01, 0x01, 0x2a, 0x04];
    bytes.extend_from_slice(&1.0f32.to_le_bytes());
    bytes.extend_from_slice(&[0x42, 0x08]);
    bytes.extend_from_slice(&2.5f64.to_le_bytes());
    let layer_blob = {
        let mut l = vec![0x0a, 0x01, b'x', 0x3a, bytes.len() as u8];
        l.extend_from_slice(&bytes);
        l
    };
    let mut net_bytes = vec![0xa2, 0x06, layer_blob.len() as u8];
    net_bytes.extend_from_slice(&layer_blob);
    let file = ModelFile::from_bytes("d.caffemodel", net_bytes.clone()).unwrap();
    let mut net = file.net().unwrap();
    assert_eq!(net.layers()[0].blobs()[0].data().to_vec_f64(), [2.5]);
    net.set_blob_data(0, 0, vec![-1.0]).unwrap();
    let edited = net.to_bytes();
    assert_eq!(edited.len(), net_bytes.len());
    let again = ModelFile::from_bytes("d.caffemodel", edited).unwrap();
    let again = again.net().unwrap();
    assert_eq!(again.layers()[0].blobs()[0].data().to_vec_f64(), [-1.0]);
    caffemodel::fuzzing::net(&net_bytes);
}

#[test]
fn legacy_dimensions_win_over_shape_as_in_caffe() {
    // shape { dim: 4 } and num: 1 channels: 1 height: 2 width: 2, 4 values: Caffe's FromProto uses the legacy 4-D
    // shape whenever one of its fields is present.
    let mut bytes = vec![
        0x3a, 0x03, 0x0a, 0x01, 0x04, 0x08, 0x01, 0x10, 0x01, 0x18, 0x02, 0x20, 0x02, 0x2a, 0x10,
    ];
    for v in [1.0f32, 2.0, 3.0, 4.0] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let file = ModelFile::from_bytes("l.binaryproto", bytes.clone()).unwrap();
    let blob = file.blob().unwrap();
    let shape = blob.view().shape();
    assert_eq!((shape.dims, shape.legacy), (vec![1, 1, 2, 2], true));
    caffemodel::fuzzing::binaryproto(&bytes);
}

#[test]
fn a_second_edit_keeps_an_unpacked_payload_unpacked() {
    // layer { blobs { shape { dim: 2 } data: 1 data: 2 } } with the data unpacked (tag 2d per element). The first
    // edit made the payload owned, and a second one used to see "not Unpacked" and write it packed: 2 bytes shorter.
    let mut blob = vec![0x3a, 0x03, 0x0a, 0x01, 0x02];
    for v in [1.0f32, 2.0] {
        blob.push(0x2d);
        blob.extend_from_slice(&v.to_le_bytes());
    }
    let mut bytes = vec![0xa2, 0x06, blob.len() as u8 + 2, 0x3a, blob.len() as u8];
    bytes.extend_from_slice(&blob);
    let file = ModelFile::from_bytes("u.caffemodel", bytes.clone()).unwrap();
    let mut net = file.net().unwrap();
    net.set_blob_data(0, 0, vec![5.0, 6.0]).unwrap();
    net.set_blob_data(0, 0, vec![1.0, 2.0]).unwrap();
    assert_eq!(net.to_bytes(), bytes);
}
