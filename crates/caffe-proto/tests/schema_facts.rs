//! Facts about upstream BVLC Caffe's caffe.proto (master), checked by hand
//! against upstream's file, that the schema and the generated types must keep.

use caffe_proto::{
    descriptor_pool, solver_parameter, v1_layer_parameter::LayerType, BlobProto, LayerParameter, NetParameter,
    SolverParameter,
};
use prost::Message;
use prost_reflect::{Cardinality, Kind, MessageDescriptor};

fn message(name: &str) -> MessageDescriptor {
    descriptor_pool()
        .get_message_by_name(&format!("caffe.{name}"))
        .unwrap_or_else(|| panic!("caffe.{name} is defined"))
}

fn field_name(message_name: &str, number: u32) -> String {
    message(message_name)
        .get_field(number)
        .unwrap_or_else(|| panic!("{message_name} has field {number}"))
        .name()
        .to_owned()
}

#[test]
fn the_schema_has_upstreams_63_messages_and_one_top_level_enum() {
    let pool = descriptor_pool();
    let top_level: Vec<_> = pool.all_messages().filter(|m| m.parent_message().is_none()).collect();
    assert_eq!(top_level.len(), 63);
    let enums: Vec<_> = pool
        .all_enums()
        .filter(|e| e.parent_message().is_none())
        .map(|e| e.full_name().to_owned())
        .collect();
    assert_eq!(enums, ["caffe.Phase"]);
}

#[test]
fn layer_parameter_numbers() {
    assert_eq!(field_name("LayerParameter", 146), "recurrent_param");
    assert_eq!(field_name("LayerParameter", 147), "swish_param");
    assert_eq!(field_name("LayerParameter", 148), "clip_param");
    assert_eq!(field_name("LayerParameter", 100), "transform_param");
    assert_eq!(field_name("LayerParameter", 101), "loss_param");
    assert_eq!(field_name("LayerParameter", 10), "phase");
    assert_eq!(field_name("LayerParameter", 11), "propagate_down");
    // The type-specific parameters use exactly 102..=148, and nothing else
    // beyond the 13 general fields.
    let layer = message("LayerParameter");
    let mut numbers: Vec<u32> = layer.fields().map(|f| f.number()).collect();
    numbers.sort_unstable();
    let general = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 100, 101];
    let expected: Vec<u32> = general.into_iter().chain(102..=148).collect();
    assert_eq!(numbers, expected);
    // Layers are field 100 of NetParameter; legacy V1 layers field 2.
    assert_eq!(field_name("NetParameter", 100), "layer");
    assert_eq!(field_name("NetParameter", 2), "layers");
}

#[test]
fn packed_and_unpacked_repeated_fields() {
    let blob = message("BlobProto");
    for name in ["data", "diff", "double_data", "double_diff"] {
        let field = blob.get_field_by_name(name).unwrap();
        assert!(field.is_packed(), "BlobProto.{name} is packed");
        assert_eq!(field.cardinality(), Cardinality::Repeated);
    }
    assert!(message("BlobShape").get_field(1).unwrap().is_packed());
    assert_eq!(message("BlobShape").get_field(1).unwrap().kind(), Kind::Int64);
    // proto2 repeated scalars without the option stay unpacked.
    let input_dim = message("NetParameter").get_field_by_name("input_dim").unwrap();
    assert!(!input_dim.is_packed());
    assert_eq!(input_dim.kind(), Kind::Int32);
    let blobs_lr = message("V1LayerParameter").get_field_by_name("blobs_lr").unwrap();
    assert!(!blobs_lr.is_packed());
    // Legacy 4-D blob dimensions are int32.
    assert_eq!(blob.get_field_by_name("num").unwrap().kind(), Kind::Int32);
}

#[test]
fn packed_data_is_written_as_one_length_delimited_record() {
    // Encoded by hand: field 5, wire type 2 => key 0x2a; 8 bytes; 1.0f32 and
    // 2.0f32 little-endian.
    let blob = BlobProto {
        data: vec![1.0, 2.0],
        ..Default::default()
    };
    assert_eq!(
        blob.encode_to_vec(),
        [0x2a, 0x08, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40]
    );
    // input_dim (field 4, unpacked varints): key 0x20 before each value.
    let net = NetParameter {
        input_dim: vec![1, 3],
        ..Default::default()
    };
    assert_eq!(net.encode_to_vec(), [0x20, 0x01, 0x20, 0x03]);
}

#[test]
fn v1_layer_type_enum_has_40_values_0_to_39() {
    let layer_type = descriptor_pool()
        .get_enum_by_name("caffe.V1LayerParameter.LayerType")
        .unwrap();
    let mut numbers: Vec<i32> = layer_type.values().map(|v| v.number()).collect();
    assert_eq!(numbers.len(), 40);
    numbers.sort_unstable();
    assert_eq!(numbers, (0..40).collect::<Vec<_>>());
    assert_eq!(LayerType::Convolution as i32, 4);
    assert_eq!(LayerType::SoftmaxLoss as i32, 21);
    assert_eq!(LayerType::Absval as i32, 35);
    assert_eq!(LayerType::Deconvolution as i32, 39);
    assert_eq!(LayerType::Threshold as i32, 31);
    assert_eq!(LayerType::Convolution.as_str_name(), "CONVOLUTION");
    // V1 layer: param names and share modes at 1001/1002, V0 layer at 1.
    assert_eq!(field_name("V1LayerParameter", 1001), "param");
    assert_eq!(field_name("V1LayerParameter", 1002), "blob_share_mode");
    assert_eq!(field_name("V1LayerParameter", 1), "layer");
    assert_eq!(field_name("V0LayerParameter", 1001), "hdf5_output_param");
}

#[test]
fn solver_parameter_defaults_and_numbers() {
    let solver = SolverParameter::default();
    assert_eq!(solver.r#type(), "SGD");
    assert_eq!(solver.regularization_type(), "L2");
    assert_eq!(solver.delta(), 1e-8);
    assert_eq!(solver.momentum2(), 0.999);
    assert_eq!(solver.rms_decay(), 0.99);
    assert_eq!(solver.random_seed(), -1);
    assert_eq!(solver.clip_gradients(), -1.0);
    assert_eq!(solver.average_loss(), 1);
    assert_eq!(solver.iter_size(), 1);
    assert!(solver.test_initialization());
    assert!(solver.snapshot_after_train());
    assert!(solver.layer_wise_reduce());
    assert_eq!(solver.solver_mode(), solver_parameter::SolverMode::Gpu);
    assert_eq!(solver.snapshot_format(), solver_parameter::SnapshotFormat::Binaryproto);
    assert_eq!(solver.solver_type(), solver_parameter::SolverType::Sgd);
    // Defaults are not presence: an unset field is not encoded.
    assert!(solver.encode_to_vec().is_empty());
    assert_eq!(field_name("SolverParameter", 40), "type");
    assert_eq!(field_name("SolverParameter", 41), "layer_wise_reduce");
    assert_eq!(field_name("SolverParameter", 42), "weights");
    assert_eq!(field_name("SolverParameter", 30), "solver_type");
    assert_eq!(message("SolverParameter").fields().count(), 42);
}

#[test]
fn other_defaults() {
    let layer = LayerParameter::default();
    assert_eq!(layer.phase(), caffe_proto::Phase::Train);
    let conv = caffe_proto::ConvolutionParameter::default();
    assert!(conv.bias_term());
    assert_eq!(conv.group(), 1);
    assert_eq!(conv.axis(), 1);
    let filler = caffe_proto::FillerParameter::default();
    assert_eq!(filler.r#type(), "constant");
    assert_eq!(filler.std(), 1.0);
    assert_eq!(filler.sparse(), -1);
    let pooling = caffe_proto::PoolingParameter::default();
    assert_eq!(pooling.stride(), 1);
    assert_eq!(pooling.round_mode(), caffe_proto::pooling_parameter::RoundMode::Ceil);
    let loss = caffe_proto::LossParameter::default();
    assert_eq!(
        loss.normalization(),
        caffe_proto::loss_parameter::NormalizationMode::Valid
    );
    let bn = caffe_proto::BatchNormParameter::default();
    assert_eq!(bn.moving_average_fraction(), 0.999);
    assert_eq!(bn.eps(), 1e-5);
    let state = caffe_proto::NetState::default();
    assert_eq!(state.phase(), caffe_proto::Phase::Test);
    let hinge = caffe_proto::HingeLossParameter::default();
    assert_eq!(hinge.norm(), caffe_proto::hinge_loss_parameter::Norm::L1);
    let window = caffe_proto::WindowDataParameter::default();
    assert_eq!(window.crop_mode(), "warp");
    assert_eq!(window.fg_fraction(), 0.25);
    let v0 = caffe_proto::V0LayerParameter::default();
    assert_eq!(v0.det_crop_mode(), "warp");
    assert_eq!(v0.concat_dim(), 1);
    let param = caffe_proto::ParamSpec::default();
    assert_eq!((param.lr_mult(), param.decay_mult()), (1.0, 1.0));
    // ClipParameter's bounds are upstream's only `required` fields.
    let clip = message("ClipParameter");
    assert!(clip.fields().all(|f| f.cardinality() == Cardinality::Required));
}
