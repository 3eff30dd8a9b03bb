//! Decoding every real Caffe binary file among the fixtures and re-encoding it
//! must give back the identical bytes. prost drops fields it does not know and
//! would re-order or re-pack anything the schema got wrong, so this proves the
//! schema matches what real Caffe wrote, field for field. The two MTCNN models
//! also carry a few fields of the Caffe fork that wrote them; for those the
//! re-encoding must equal the file minus exactly those fields.

mod common;

use caffe_proto::{BlobProto, NetParameter, SolverState};
use prost::Message;
use prost_reflect::{DynamicMessage, Kind as FieldKind, MessageDescriptor};

/// Fields a fixture carries that upstream's schema does not declare, as
/// message path and field number. Only the MTCNN models have any: they were
/// written by a Caffe fork (det1: a float 0.25 in loss1's softmax_param; det2:
/// a varint in two EuclideanLoss layers' loss_param). Found by walking the raw
/// wire format (see `strip_unknown`).
fn fork_fields(name: &str) -> &'static [&'static str] {
    match name {
        "models/mtcnn_det1/det1.caffemodel" => {
            &["/caffe.NetParameter.layer/caffe.LayerParameter.softmax_param/caffe.SoftmaxParameter#3"]
        }
        "models/mtcnn_det2/det2.caffemodel" => {
            &["/caffe.NetParameter.layer/caffe.LayerParameter.loss_param/caffe.LossParameter#4"]
        }
        _ => &[],
    }
}

/// The message type a fixture file holds.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Net,
    SolverState,
    Blob,
}

/// Binary protobuf fixtures and their types: `.caffemodel`s and the V1 model
/// files without extension are NetParameter, `.solverstate` SolverState,
/// `.binaryproto` BlobProto.
fn binary_fixtures(names: &[String]) -> Vec<(String, Kind)> {
    names
        .iter()
        .filter_map(|name| {
            let file = name.rsplit('/').next().unwrap_or(name);
            let kind = if file.ends_with(".caffemodel") {
                Kind::Net
            } else if file.ends_with(".solverstate") {
                Kind::SolverState
            } else if file.ends_with(".binaryproto") {
                Kind::Blob
            } else if name.starts_with("models/") && !file.contains('.') {
                // The 2014 V1 snapshots carry no extension.
                Kind::Net
            } else {
                return None;
            };
            Some((name.clone(), kind))
        })
        .collect()
}

impl Kind {
    fn message_name(self) -> &'static str {
        match self {
            Kind::Net => "caffe.NetParameter",
            Kind::SolverState => "caffe.SolverState",
            Kind::Blob => "caffe.BlobProto",
        }
    }
}

fn read_varint(bytes: &[u8], pos: &mut usize) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = bytes[*pos];
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return value;
        }
    }
    panic!("varint longer than 10 bytes");
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Copies a message's wire bytes, dropping every field its descriptor does not
/// declare (recursively) and recording where each was. Known fields are copied
/// verbatim, so this is an independent model of "what a schema-exact encoder
/// keeps", written without prost's generated code.
fn strip_unknown(bytes: &[u8], message: &MessageDescriptor, path: &str, dropped: &mut Vec<String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut pos = 0;
    while pos < bytes.len() {
        let start = pos;
        let key = read_varint(bytes, &mut pos);
        let (number, wire_type) = ((key >> 3) as u32, key & 7);
        let payload_start = pos;
        match wire_type {
            0 => {
                read_varint(bytes, &mut pos);
            }
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let len = read_varint(bytes, &mut pos) as usize;
                pos += len;
            }
            other => panic!("{path}: unexpected wire type {other} at byte {start}"),
        }
        let Some(field) = message.get_field(number) else {
            dropped.push(format!("{path}/{}#{number}", message.full_name()));
            continue;
        };
        match (wire_type, field.kind()) {
            (2, FieldKind::Message(inner)) => {
                let mut len_pos = payload_start;
                let len = read_varint(bytes, &mut len_pos) as usize;
                let body = strip_unknown(
                    &bytes[len_pos..len_pos + len],
                    &inner,
                    &format!("{path}/{}", field.full_name()),
                    dropped,
                );
                write_varint(&mut out, key);
                write_varint(&mut out, body.len() as u64);
                out.extend_from_slice(&body);
            }
            _ => out.extend_from_slice(&bytes[start..pos]),
        }
    }
    out
}

fn reencode(bytes: &[u8], kind: Kind) -> Result<Vec<u8>, prost::DecodeError> {
    Ok(match kind {
        Kind::Net => NetParameter::decode(bytes)?.encode_to_vec(),
        Kind::SolverState => SolverState::decode(bytes)?.encode_to_vec(),
        Kind::Blob => BlobProto::decode(bytes)?.encode_to_vec(),
    })
}

#[test]
fn every_binary_fixture_reencodes_to_identical_bytes() {
    let Some(dir) = common::fixtures_dir() else {
        return;
    };
    let fixtures = binary_fixtures(&common::listed_files(&dir));
    // 12 nets: 10 .caffemodel files (2 of them golden upgrades, 2 golden
    // training rounds) and the 2 V1 snapshots without extension;
    // 4 solverstates and 1 mean file, as listed in FILES.json.
    let count = |wanted: fn(Kind) -> bool| fixtures.iter().filter(|(_, k)| wanted(*k)).count();
    assert_eq!(count(|k| matches!(k, Kind::Net)), 12, "{fixtures:?}");
    assert_eq!(count(|k| matches!(k, Kind::SolverState)), 4, "{fixtures:?}");
    assert_eq!(count(|k| matches!(k, Kind::Blob)), 1, "{fixtures:?}");

    let pool = caffe_proto::descriptor_pool();
    let mut failures = Vec::new();
    for (name, kind) in &fixtures {
        let original = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"));
        let descriptor = pool.get_message_by_name(kind.message_name()).unwrap();
        let mut dropped = Vec::new();
        let bytes = strip_unknown(&original, &descriptor, "", &mut dropped);
        dropped.sort();
        dropped.dedup();
        let expected_dropped = fork_fields(name);
        if dropped != expected_dropped {
            failures.push(format!("{name}: fields unknown to the schema: {dropped:?}"));
        }
        if expected_dropped.is_empty() {
            assert_eq!(bytes, original, "{name}: stripping nothing must copy the file");
        }
        match reencode(&bytes, *kind) {
            Err(e) => failures.push(format!("{name}: does not decode as {kind:?}: {e}")),
            Ok(again) if again != bytes => {
                let first_diff = bytes
                    .iter()
                    .zip(&again)
                    .position(|(a, b)| a != b)
                    .unwrap_or(bytes.len().min(again.len()));
                failures.push(format!(
                    "{name}: re-encoded {} bytes vs {} original, first difference at byte {first_diff}",
                    again.len(),
                    bytes.len()
                ));
            }
            Ok(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn v1_model_decodes_to_legacy_layers_with_manifest_shapes() {
    let Some(dir) = common::fixtures_dir() else {
        return;
    };
    let bytes = std::fs::read(dir.join("models/lenet_mnist_v1_2014/lenet_iter_10000")).unwrap();

    let net = NetParameter::decode(bytes.as_slice()).unwrap();
    // MANIFEST.json (decoded without any protobuf library) lists 9 V1 layers,
    // conv1 with a 20x1x5x5 weight and a 1x1x1x20 bias.
    assert!(net.layer.is_empty());
    assert_eq!(net.layers.len(), 9);
    let conv1 = &net.layers[1];
    assert_eq!(conv1.name(), "conv1");
    assert_eq!(conv1.r#type(), caffe_proto::v1_layer_parameter::LayerType::Convolution);
    let weight = &conv1.blobs[0];
    assert_eq!(
        (weight.num(), weight.channels(), weight.height(), weight.width()),
        (20, 1, 5, 5)
    );
    assert_eq!(weight.data.len(), 500);
    let bias = &conv1.blobs[1];
    assert_eq!(
        (bias.num(), bias.channels(), bias.height(), bias.width()),
        (1, 1, 1, 20)
    );
}

#[test]
fn dynamic_messages_keep_fork_fields_and_reencode_identically() {
    // prost-reflect keeps fields the schema does not declare (the MTCNN fork
    // fields), so the reflective path is lossless even for forked models.
    let Some(dir) = common::fixtures_dir() else {
        return;
    };
    let pool = caffe_proto::descriptor_pool();
    let net = pool.get_message_by_name("caffe.NetParameter").unwrap();
    for name in ["models/mtcnn_det1/det1.caffemodel", "models/mtcnn_det2/det2.caffemodel"] {
        let original = std::fs::read(dir.join(name)).unwrap();
        let message = DynamicMessage::decode(net.clone(), original.as_slice()).unwrap();
        assert_eq!(message.encode_to_vec(), original, "{name}");
    }
}
