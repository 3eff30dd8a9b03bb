//! `HDF5Output`: the layer that writes its two bottoms to an HDF5 file at every forward pass.

use std::path::PathBuf;

use caffe_proto::LayerParameter;

use super::{Backward, Layer};
use crate::error::{LayerError, LayerResult};
use crate::Tensor;

/// Caffe's `HDF5OutputLayer`: each forward pass writes bottom 0 as the float32 dataset `data` and bottom 1 as
/// `label` (Caffe's `HDF5_DATA_DATASET_NAME` and `HDF5_DATA_LABEL_NAME`) to `hdf5_output_param.file_name`, each
/// shaped as Caffe's legacy 4-D blob (num, channels, height, width: missing axes are 1, more than 4 refused). The
/// two bottoms must have the same num. It has no tops and its backward pass does nothing, as in Caffe.
///
/// Caffe creates the file when the layer is set up and makes the datasets at the first forward pass (a second pass
/// fails there, the datasets existing); here every forward pass replaces the file atomically with that pass's
/// bottoms. A relative `file_name` is resolved against the working directory, as in Caffe.
pub(crate) struct Hdf5Output {
    file_name: PathBuf,
    /// The legacy 4-D shapes of the two bottoms.
    shapes: [[usize; 4]; 2],
}

impl Hdf5Output {
    pub(crate) fn new(param: &LayerParameter) -> LayerResult<Self> {
        let file_name = param
            .hdf5_output_param
            .as_ref()
            .and_then(|p| p.file_name.clone())
            .filter(|f| !f.is_empty())
            .ok_or_else(|| LayerError::Param("hdf5_output_param.file_name is not set".into()))?;
        Ok(Hdf5Output {
            file_name: PathBuf::from(file_name),
            shapes: [[0; 4]; 2],
        })
    }

    /// Caffe's `Blob::LegacyShape` for all four axes.
    fn legacy(shape: &[usize], which: &str) -> LayerResult<[usize; 4]> {
        if shape.len() > 4 {
            return Err(LayerError::Shape(format!(
                "the {which} bottom has {} axes {shape:?}; HDF5Output writes Caffe's legacy 4-D blobs",
                shape.len()
            )));
        }
        let mut out = [1; 4];
        out[..shape.len()].copy_from_slice(shape);
        Ok(out)
    }
}

impl Layer for Hdf5Output {
    fn type_name(&self) -> &'static str {
        "HDF5Output"
    }

    fn reshape(&mut self, bottoms: &[&[usize]]) -> LayerResult<Vec<Vec<usize>>> {
        let data = Self::legacy(bottoms[0], "data")?;
        let label = Self::legacy(bottoms[1], "label")?;
        if data[0] != label[0] {
            return Err(LayerError::Shape(format!(
                "data blob and label blob must have the same batch size ({} and {})",
                data[0], label[0]
            )));
        }
        self.shapes = [data, label];
        Ok(vec![])
    }

    fn forward(&mut self, bottoms: &[&Tensor], _tops: &mut [Tensor]) -> LayerResult<()> {
        let datasets = [
            h5write::Dataset {
                name: "data",
                shape: &self.shapes[0],
                values: bottoms[0].data(),
            },
            h5write::Dataset {
                name: "label",
                shape: &self.shapes[1],
                values: bottoms[1].data(),
            },
        ];
        h5write::write(&self.file_name, &datasets).map_err(|e| LayerError::Output(e.to_string()))
    }

    fn backward(&mut self, _ctx: Backward<'_>) -> LayerResult<()> {
        // Caffe's Backward_cpu returns without touching a diff.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::{param, run};

    fn layer(file: &std::path::Path) -> Hdf5Output {
        Hdf5Output::new(&param("HDF5Output", |p| {
            p.hdf5_output_param = Some(caffe_proto::Hdf5OutputParameter {
                file_name: Some(file.display().to_string()),
            });
        }))
        .unwrap()
    }

    #[test]
    fn writes_both_bottoms_as_legacy_4d_datasets() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("out.h5");
        let mut l = layer(&file);
        let data = Tensor::new(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let label = Tensor::new(&[2], vec![7.0, 8.0]);
        let tops = run(&mut l, &[data, label]).unwrap();
        assert!(tops.is_empty());
        let read = hdf5_reader::Hdf5File::open(&file).unwrap();
        let d = read.dataset("data").unwrap();
        assert_eq!(d.shape(), [2, 3, 1, 1]);
        let values: Vec<f32> = d.read_array::<f32>().unwrap().into_iter().collect();
        assert_eq!(values, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let l2 = read.dataset("label").unwrap();
        assert_eq!(l2.shape(), [2, 1, 1, 1]);
    }

    #[test]
    fn refuses_what_caffe_refuses() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Hdf5Output::new(&param("HDF5Output", |_| {})).err().unwrap();
        assert!(err.to_string().contains("file_name is not set"));
        let mut l = layer(&tmp.path().join("out.h5"));
        let err = l.reshape(&[&[2, 3], &[3]]).unwrap_err().to_string();
        assert!(err.contains("same batch size (2 and 3)"), "{err}");
        let err = l.reshape(&[&[2, 1, 1, 1, 1], &[2]]).unwrap_err().to_string();
        assert!(err.contains("5 axes"), "{err}");
        // A file that cannot be written is named.
        let mut l = layer(&tmp.path().join("no/such/dir/out.h5"));
        let bottoms = [Tensor::zeros(&[1, 1]), Tensor::zeros(&[1])];
        let err = run(&mut l, &bottoms).unwrap_err().to_string();
        assert!(err.contains("no/such/dir/out.h5") && !err.contains('\n'), "{err}");
    }
}
