//! Property tests: random nets of every generation, encoded by prost (like Caffe's C++ writer, fields in number
//! order), must read back through the lossless tree with the right views and re-encode to identical bytes; an edit
//! of one payload must change exactly that payload.

use caffe_proto::{
    v1_layer_parameter::LayerType, BlobProto, BlobShape, LayerParameter, NetParameter, V0LayerParameter,
    V1LayerParameter,
};
use caffemodel::ModelFile;
use proptest::prelude::*;
use prost::Message;

fn blob() -> impl Strategy<Value = BlobProto> {
    (
        prop::collection::vec(1i64..5, 0..4),
        any::<bool>(),
        any::<bool>(),
        any::<u32>(),
    )
        .prop_map(|(dims, legacy, with_diff, seed)| {
            let count: i64 = dims.iter().product();
            // Bit patterns straight from a generator: zeros, -0.0, NaNs and subnormals included.
            let data: Vec<f32> = (0..count)
                .map(|i| {
                    let x = seed.wrapping_mul(2654435761).wrapping_add(i as u32 * 40503);
                    if x % 3 == 0 {
                        0.0
                    } else {
                        f32::from_bits(x)
                    }
                })
                .collect();
            let mut b = BlobProto {
                data: data.clone(),
                ..Default::default()
            };
            if with_diff {
                b.diff = data.iter().map(|v| v * 0.5).collect();
            }
            if legacy {
                let mut d = [1i64; 4];
                for (slot, v) in d.iter_mut().rev().zip(dims.iter().rev()) {
                    *slot = *v;
                }
                b.num = Some(d[0] as i32);
                b.channels = Some(d[1] as i32);
                b.height = Some(d[2] as i32);
                b.width = Some(d[3] as i32);
            } else {
                b.shape = Some(BlobShape { dim: dims });
            }
            b
        })
}

fn modern_layer() -> impl Strategy<Value = LayerParameter> {
    (
        "[a-z][a-z0-9/_]{0,8}",
        prop::sample::select(vec!["Convolution", "InnerProduct", "ReLU", "Scale"]),
        prop::collection::vec(blob(), 0..3),
    )
        .prop_map(|(name, ty, blobs)| LayerParameter {
            name: Some(name.clone()),
            r#type: Some(ty.to_string()),
            bottom: vec!["data".into()],
            top: vec![name],
            blobs,
            ..Default::default()
        })
}

fn v1_layer(v0: bool) -> impl Strategy<Value = V1LayerParameter> {
    ("[a-z][a-z0-9_]{0,8}", prop::collection::vec(blob(), 0..3)).prop_map(move |(name, blobs)| {
        if v0 {
            V1LayerParameter {
                layer: Some(V0LayerParameter {
                    name: Some(name),
                    r#type: Some("conv".into()),
                    num_output: Some(4),
                    blobs,
                    blobs_lr: vec![1.0, 2.0],
                    ..Default::default()
                }),
                ..Default::default()
            }
        } else {
            V1LayerParameter {
                name: Some(name),
                r#type: Some(LayerType::Convolution as i32),
                blobs,
                blobs_lr: vec![1.0, 2.0],
                ..Default::default()
            }
        }
    })
}

fn net() -> impl Strategy<Value = (NetParameter, &'static str)> {
    prop_oneof![
        prop::collection::vec(modern_layer(), 1..5).prop_map(|layer| (
            NetParameter {
                name: Some("net".into()),
                layer,
                ..Default::default()
            },
            "V2"
        )),
        prop::collection::vec(v1_layer(false), 1..5).prop_map(|layers| (
            NetParameter {
                name: Some("net".into()),
                layers,
                ..Default::default()
            },
            "V1"
        )),
        prop::collection::vec(v1_layer(true), 1..5).prop_map(|layers| (
            NetParameter {
                name: Some("net".into()),
                layers,
                ..Default::default()
            },
            "V0"
        )),
    ]
}

fn blobs_of(net: &NetParameter) -> Vec<&BlobProto> {
    let mut out: Vec<&BlobProto> = net.layer.iter().flat_map(|l| &l.blobs).collect();
    for l in &net.layers {
        out.extend(&l.blobs);
        if let Some(v0) = &l.layer {
            out.extend(&v0.blobs);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_nets_roundtrip_and_read_right((net, generation) in net()) {
        let bytes = net.encode_to_vec();
        let file = ModelFile::from_bytes("random.caffemodel", bytes.clone()).unwrap();
        let parsed = file.net().unwrap();
        prop_assert_eq!(parsed.generation().as_str(), generation);
        prop_assert!(parsed.to_bytes() == bytes);
        let ours: Vec<_> = parsed.layers().iter().flat_map(|l| l.blobs()).collect();
        let theirs = blobs_of(&net);
        prop_assert_eq!(ours.len(), theirs.len());
        for (o, t) in ours.iter().zip(&theirs) {
            let dims = match &t.shape {
                Some(s) => s.dim.clone(),
                None if t.num.is_some() => vec![t.num().into(), t.channels().into(), t.height().into(), t.width().into()],
                None => vec![],
            };
            prop_assert_eq!(o.shape().dims, dims);
            let bits: Vec<u32> = o.data().to_vec_f32().iter().map(|v| v.to_bits()).collect();
            let expected: Vec<u32> = t.data.iter().map(|v| v.to_bits()).collect();
            prop_assert_eq!(bits, expected);
            prop_assert_eq!(o.has_diff(), !t.diff.is_empty());
        }
    }

    #[test]
    fn editing_one_payload_changes_only_that_payload((net, _) in net(), pick in any::<prop::sample::Index>()) {
        let bytes = net.encode_to_vec();
        let file = ModelFile::from_bytes("random.caffemodel", bytes).unwrap();
        let mut parsed = file.net().unwrap();
        // Every (layer, blob) with data; pick one.
        let targets: Vec<(usize, usize, usize)> = parsed
            .layers()
            .iter()
            .flat_map(|l| l.blobs().iter().enumerate().map(|(b, blob)| (l.index, b, blob.data().len())).collect::<Vec<_>>())
            .filter(|t| t.2 > 0)
            .collect();
        prop_assume!(!targets.is_empty());
        let (layer, blob, len) = targets[pick.index(targets.len())];
        let new: Vec<f32> = (0..len).map(|i| i as f32 + 0.25).collect();
        parsed.set_blob_data(layer, blob, new.clone()).unwrap();
        let edited = NetParameter::decode(parsed.to_bytes().as_slice()).unwrap();
        // Expected: the original net with that one blob's data replaced, encoded by prost.
        let mut expected = net.clone();
        let mut k = 0;
        let mut replace = |b: &mut BlobProto, li: usize, bi: usize| {
            if li == layer && bi == blob {
                b.data = new.clone();
                k += 1;
            }
        };
        for (li, l) in expected.layer.iter_mut().enumerate() {
            for (bi, b) in l.blobs.iter_mut().enumerate() { replace(b, li, bi); }
        }
        for (li, l) in expected.layers.iter_mut().enumerate() {
            for (bi, b) in l.blobs.iter_mut().enumerate() { replace(b, li, bi); }
            if let Some(v0) = &mut l.layer {
                for (bi, b) in v0.blobs.iter_mut().enumerate() { replace(b, li, bi); }
            }
        }
        prop_assert_eq!(k, 1);
        prop_assert!(edited.encode_to_vec() == expected.encode_to_vec());
        // A wrong length is refused.
        prop_assert!(parsed.set_blob_data(layer, blob, vec![0.0; len + 1]).is_err());
    }
}

#[test]
fn unknown_fields_survive_an_edit() {
    // layer { name: "x" <field 8888: varint 7> blobs { shape { dim: 2 } data: [1, 2] <field 12: bytes "ab"> } }
    let mut blob = vec![0x3a, 0x02, 0x08, 0x02, 0x2a, 0x08];
    blob.extend_from_slice(&1.0f32.to_le_bytes());
    blob.extend_from_slice(&2.0f32.to_le_bytes());
    blob.extend_from_slice(&[0x62, 0x02, b'a', b'b']);
    let mut layer = vec![0x0a, 0x01, b'x', 0xc0, 0xab, 0x04, 0x07, 0x3a, blob.len() as u8];
    layer.extend_from_slice(&blob);
    let mut bytes = vec![0xa2, 0x06, layer.len() as u8];
    bytes.extend_from_slice(&layer);
    let file = ModelFile::from_bytes("fork.caffemodel", bytes.clone()).unwrap();
    let mut net = file.net().unwrap();
    assert!(net.to_bytes() == bytes);
    net.set_blob_data(0, 0, vec![3.0, 0.0]).unwrap();
    let out = net.to_bytes();
    let mut expected = bytes.clone();
    let at = bytes.windows(4).position(|w| w == 1.0f32.to_le_bytes()).unwrap();
    expected[at..at + 4].copy_from_slice(&3.0f32.to_le_bytes());
    expected[at + 4..at + 8].copy_from_slice(&0.0f32.to_le_bytes());
    assert_eq!(out, expected);
}
