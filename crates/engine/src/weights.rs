//! Trained weights as plain data, and Caffe's rule for matching a stored blob shape to a parameter.

use caffe_proto::BlobProto;

/// One stored parameter blob: its shape as stored and its values.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightBlob {
    /// Dimensions as stored: `BlobShape.dim`, or the legacy (num, channels, height, width) when `legacy`.
    pub shape: Vec<i64>,
    /// True when `shape` is the legacy 4-D num/channels/height/width (V1-era files): it then matches a parameter
    /// whose shape, padded on the left with 1s to 4-D, equals it.
    pub legacy: bool,
    /// The values, C order.
    pub data: Vec<f32>,
}

impl WeightBlob {
    /// A blob with a modern (non-legacy) shape.
    pub fn new(shape: Vec<i64>, data: Vec<f32>) -> Self {
        WeightBlob {
            shape,
            legacy: false,
            data,
        }
    }

    /// The blob of a decoded `caffe.BlobProto`, read as Caffe's `Blob::FromProto` reads it: the legacy 4-D fields
    /// when any is present (they win over `shape`, as in `Blob::ShapeEquals`), and `double_data` when it is non-empty.
    pub fn from_proto(proto: &BlobProto) -> Self {
        let legacy = proto.num.is_some() || proto.channels.is_some() || proto.height.is_some() || proto.width.is_some();
        let shape = if legacy {
            [proto.num(), proto.channels(), proto.height(), proto.width()]
                .map(i64::from)
                .to_vec()
        } else {
            proto.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default()
        };
        let data = if proto.double_data.is_empty() {
            proto.data.clone()
        } else {
            proto.double_data.iter().map(|&v| v as f32).collect()
        };
        WeightBlob { shape, legacy, data }
    }
}

/// The stored blobs of one layer, matched to the net's layer of the same name.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerWeights {
    /// The layer name.
    pub name: String,
    /// Its blobs in Caffe's order (e.g. weights, then bias).
    pub blobs: Vec<WeightBlob>,
}

/// What [`Net::copy_from`](crate::Net::copy_from) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Source layers whose blobs were copied into the net (with at least one blob).
    pub copied: Vec<String>,
    /// Source layers with no layer of that name in the net, skipped as Caffe skips them.
    pub ignored: Vec<String>,
}

/// Caffe's `Blob::ShapeEquals`: a modern source shape must equal the parameter shape; a legacy 4-D one must equal
/// the parameter shape padded on the left with 1s to 4-D (parameters of more than 4 axes never match it).
pub fn shape_equals(param_shape: &[usize], source: &[i64], legacy: bool) -> bool {
    if legacy {
        if param_shape.len() > 4 || source.len() != 4 {
            return false;
        }
        let padded = (0..4).map(|i| {
            let from_end = 4 - i;
            if from_end <= param_shape.len() {
                param_shape[param_shape.len() - from_end] as i64
            } else {
                1
            }
        });
        return padded.eq(source.iter().copied());
    }
    param_shape.len() == source.len() && param_shape.iter().zip(source).all(|(&a, &b)| a as i64 == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_shapes_match_left_padded_parameters() {
        // Caffe's own examples: InnerProduct weights [500, 800] stored as 1x1x500x800, bias [20] as 1x1x1x20.
        assert!(shape_equals(&[500, 800], &[1, 1, 500, 800], true));
        assert!(shape_equals(&[20], &[1, 1, 1, 20], true));
        assert!(shape_equals(&[20, 1, 5, 5], &[20, 1, 5, 5], true));
        assert!(!shape_equals(&[500, 800], &[1, 1, 800, 500], true));
        assert!(!shape_equals(&[2, 500, 800], &[1, 1, 500, 800], true));
        assert!(!shape_equals(&[1, 1, 1, 1, 20], &[1, 1, 1, 20], true));
        // A modern shape must match exactly: no padding rule.
        assert!(shape_equals(&[500, 800], &[500, 800], false));
        assert!(!shape_equals(&[500, 800], &[1, 1, 500, 800], false));
        assert!(!shape_equals(&[20], &[1, 20], false));
    }

    #[test]
    fn from_proto_reads_legacy_fields_and_double_data() {
        let legacy = BlobProto {
            num: Some(1),
            channels: Some(1),
            height: Some(1),
            width: Some(2),
            double_data: vec![0.5, -1.0],
            ..Default::default()
        };
        let blob = WeightBlob::from_proto(&legacy);
        assert_eq!(
            (blob.shape, blob.legacy, blob.data),
            (vec![1, 1, 1, 2], true, vec![0.5, -1.0])
        );
        let modern = BlobProto {
            shape: Some(caffe_proto::BlobShape { dim: vec![2] }),
            data: vec![1.0, 2.0],
            ..Default::default()
        };
        assert_eq!(
            WeightBlob::from_proto(&modern),
            WeightBlob::new(vec![2], vec![1.0, 2.0])
        );
    }
}
