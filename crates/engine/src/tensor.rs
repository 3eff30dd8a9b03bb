//! The dense f32 array every blob of a net is held in.

/// A dense row-major (C order) f32 array, Caffe's blob data: NCHW for images.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// A tensor of the given shape filled with zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![0.0; shape.iter().product()],
        }
    }

    /// A tensor taking `data` as its values. Panics when `data.len()` is not the product of `shape`: that is a
    /// programming error of the caller, not bad input (use [`Tensor::try_new`] for data from outside).
    pub fn new(shape: &[usize], data: Vec<f32>) -> Self {
        Self::try_new(shape, data).expect("tensor data length must be the product of its shape")
    }

    /// A tensor taking `data` as its values, or the data back when its length is not the product of `shape`.
    pub fn try_new(shape: &[usize], data: Vec<f32>) -> Result<Self, Vec<f32>> {
        if shape.iter().product::<usize>() != data.len() {
            return Err(data);
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }

    /// The dimensions (empty for a scalar, which holds one value, as in Caffe).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values in C order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The values in C order, writable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the tensor, giving its values.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Number of values (the product of the shape).
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no value (a zero dimension).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Product of the dimensions in `start..end` (Caffe's `count(start, end)`).
    pub fn count_range(&self, start: usize, end: usize) -> usize {
        self.shape[start..end].iter().product()
    }

    /// Changes the shape, keeping the allocation; values are kept where the length does not change and are
    /// otherwise unspecified (zero-filled when growing). Layers overwrite their tops, so no clearing is needed.
    pub fn reshape(&mut self, shape: &[usize]) {
        if self.shape != shape {
            self.shape.clear();
            self.shape.extend_from_slice(shape);
        }
        let len = shape.iter().product();
        self.data.resize(len, 0.0);
    }

    /// Copies shape and values from `other`, reusing this tensor's allocation.
    pub fn copy_from(&mut self, other: &Tensor) {
        self.reshape(&other.shape);
        self.data.copy_from_slice(&other.data);
    }
}
