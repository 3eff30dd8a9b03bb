//! CSR and CSC forms of a blob viewed as a matrix, with scipy's array types.
//!
//! A blob of shape `[d0, d1, ..., dn]` is viewed as `d0` rows by
//! `d1 * ... * dn` columns (a 1-D blob is one column). An entry is stored iff
//! `v != 0.0`: -0.0 is dropped, NaN is kept. Indices within a row (CSR) or a
//! column (CSC) are sorted and unique, which is scipy's canonical form.

use crate::error::SparseError;
use crate::scan::for_each_nonzero;

/// Storage shared by CSR and CSC: `major` is the compressed axis (rows for
/// CSR, columns for CSC), `minor` the axis stored in `indices`.
#[derive(Debug, Clone, PartialEq)]
struct Compressed {
    major: usize,
    minor: usize,
    data: Vec<f32>,
    indices: Vec<i32>,
    indptr: Vec<i32>,
}

/// A matrix in compressed sparse row form.
#[derive(Debug, Clone, PartialEq)]
pub struct Csr(Compressed);

/// A matrix in compressed sparse column form.
#[derive(Debug, Clone, PartialEq)]
pub struct Csc(Compressed);

/// Read access shared by [`Csr`] and [`Csc`], used by [`crate::write_scipy_sparse`].
///
/// Sealed: only this crate's types, whose invariants it guarantees, implement it.
pub trait CompressedMatrix: sealed::Sealed {
    /// scipy's format name: `"csr"` or `"csc"`.
    fn format(&self) -> &'static str;
    /// `[rows, cols]`.
    fn shape(&self) -> [usize; 2];
    /// Stored values, `nnz` of them.
    fn data(&self) -> &[f32];
    /// Column (CSR) or row (CSC) index of each stored value.
    fn indices(&self) -> &[i32];
    /// Row (CSR) or column (CSC) `k` holds entries `indptr[k]..indptr[k + 1]`.
    fn indptr(&self) -> &[i32];
    /// Number of stored entries.
    fn nnz(&self) -> usize {
        self.data().len()
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Csr {}
    impl Sealed for super::Csc {}
}

/// `(rows, cols)` of a blob viewed as a matrix, checked against its length
/// and against scipy's int32 index limit.
fn matrix_dims(shape: &[usize], len: usize) -> Result<(usize, usize), SparseError> {
    let (&rows, rest) = shape.split_first().ok_or(SparseError::EmptyShape)?;
    let overflow = || SparseError::ShapeOverflow { shape: shape.to_vec() };
    let cols = rest
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(overflow)?;
    let expected = rows.checked_mul(cols).ok_or_else(overflow)?;
    if expected != len {
        return Err(SparseError::ShapeLenMismatch {
            shape: shape.to_vec(),
            expected,
            actual: len,
        });
    }
    check_i32("rows", rows)?;
    check_i32("columns", cols)?;
    Ok((rows, cols))
}

fn check_i32(what: &'static str, value: usize) -> Result<i32, SparseError> {
    i32::try_from(value).map_err(|_| SparseError::IndexOverflow { what, value })
}

impl Compressed {
    /// Row-major scan of a `rows x cols` dense matrix into CSR storage.
    fn csr_from_dense(flat: &[f32], rows: usize, cols: usize) -> Result<Self, SparseError> {
        let mut data = Vec::new();
        let mut indices = Vec::new();
        let mut indptr = Vec::with_capacity(rows + 1);
        indptr.push(0i32);
        // Row r spans flat[r * cols .. row_end]; rows are closed as nonzeros
        // past their end arrive, so no division per element.
        let mut row_start = 0usize;
        let mut row_end = cols;
        let mut overflow = None;
        for_each_nonzero(flat, |index, value| {
            if overflow.is_some() {
                return;
            }
            while index >= row_end {
                // data.len() <= i32::MAX: checked after each push below.
                indptr.push(data.len() as i32);
                row_start = row_end;
                row_end += cols;
            }
            if data.len() == i32::MAX as usize {
                overflow = Some(SparseError::IndexOverflow {
                    what: "nonzeros",
                    value: data.len() + 1,
                });
                return;
            }
            data.push(value);
            // index - row_start < cols <= i32::MAX (checked by matrix_dims).
            indices.push((index - row_start) as i32);
        });
        if let Some(error) = overflow {
            return Err(error);
        }
        let nnz = data.len() as i32;
        indptr.resize(rows + 1, nnz);
        Ok(Compressed {
            major: rows,
            minor: cols,
            data,
            indices,
            indptr,
        })
    }

    /// The same matrix compressed along the other axis, in O(nnz + major + minor).
    ///
    /// Walking majors in increasing order keeps the new indices sorted.
    fn transpose(&self) -> Compressed {
        let nnz = self.data.len();
        let mut counts = vec![0i32; self.minor + 1];
        for &minor in &self.indices {
            counts[minor as usize + 1] += 1;
        }
        // Prefix sums: counts[k] = start of new major k. Sums stay <= nnz <= i32::MAX.
        for k in 0..self.minor {
            counts[k + 1] += counts[k];
        }
        let indptr = counts.clone();
        let mut next = counts;
        let mut data = vec![0.0f32; nnz];
        let mut indices = vec![0i32; nnz];
        for major in 0..self.major {
            let span = self.indptr[major] as usize..self.indptr[major + 1] as usize;
            for (&value, &minor) in self.data[span.clone()].iter().zip(&self.indices[span]) {
                let slot = &mut next[minor as usize];
                data[*slot as usize] = value;
                // major < i32::MAX, checked when the matrix was built.
                indices[*slot as usize] = major as i32;
                *slot += 1;
            }
        }
        Compressed {
            major: self.minor,
            minor: self.major,
            data,
            indices,
            indptr,
        }
    }

    /// Dense row-major form when `major` is the row axis, column-major otherwise.
    fn to_dense_major(&self) -> Vec<f32> {
        // major * minor was checked against the source blob's length.
        let mut dense = vec![0.0f32; self.major * self.minor];
        for major in 0..self.major {
            let span = self.indptr[major] as usize..self.indptr[major + 1] as usize;
            let line = &mut dense[major * self.minor..(major + 1) * self.minor];
            for (&value, &minor) in self.data[span.clone()].iter().zip(&self.indices[span]) {
                line[minor as usize] = value;
            }
        }
        dense
    }
}

impl Csr {
    /// Builds the CSR form of `flat`, a row-major blob of the given `shape`
    /// (rows = `shape[0]`, cols = product of the rest), in one pass.
    ///
    /// # Errors
    /// [`SparseError::EmptyShape`], [`SparseError::ShapeOverflow`] or
    /// [`SparseError::ShapeLenMismatch`] for a bad shape;
    /// [`SparseError::IndexOverflow`] when rows, cols or nnz exceed `i32::MAX`.
    pub fn from_dense(flat: &[f32], shape: &[usize]) -> Result<Self, SparseError> {
        let (rows, cols) = matrix_dims(shape, flat.len())?;
        Compressed::csr_from_dense(flat, rows, cols).map(Csr)
    }

    /// The same matrix in CSC form.
    pub fn to_csc(&self) -> Csc {
        Csc(self.0.transpose())
    }

    /// The dense matrix, row-major (-0.0 entries of the source come back as +0.0).
    pub fn to_dense(&self) -> Vec<f32> {
        self.0.to_dense_major()
    }
}

impl Csc {
    /// Builds the CSC form of `flat`, a row-major blob of the given `shape`
    /// (rows = `shape[0]`, cols = product of the rest), without a dense
    /// transpose: one row-major pass, then an O(nnz + rows + cols) transpose of
    /// the sparse entries.
    ///
    /// # Errors
    /// As [`Csr::from_dense`].
    pub fn from_dense(flat: &[f32], shape: &[usize]) -> Result<Self, SparseError> {
        Csr::from_dense(flat, shape).map(|csr| csr.to_csc())
    }

    /// The same matrix in CSR form.
    pub fn to_csr(&self) -> Csr {
        Csr(self.0.transpose())
    }

    /// The dense matrix, row-major (-0.0 entries of the source come back as +0.0).
    pub fn to_dense(&self) -> Vec<f32> {
        self.to_csr().to_dense()
    }
}

impl CompressedMatrix for Csr {
    fn format(&self) -> &'static str {
        "csr"
    }
    fn shape(&self) -> [usize; 2] {
        [self.0.major, self.0.minor]
    }
    fn data(&self) -> &[f32] {
        &self.0.data
    }
    fn indices(&self) -> &[i32] {
        &self.0.indices
    }
    fn indptr(&self) -> &[i32] {
        &self.0.indptr
    }
}

impl CompressedMatrix for Csc {
    fn format(&self) -> &'static str {
        "csc"
    }
    fn shape(&self) -> [usize; 2] {
        [self.0.minor, self.0.major]
    }
    fn data(&self) -> &[f32] {
        &self.0.data
    }
    fn indices(&self) -> &[i32] {
        &self.0.indices
    }
    fn indptr(&self) -> &[i32] {
        &self.0.indptr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 3 x 4, worked by hand:
    //   [ 0  1  0  2 ]
    //   [ 0  0  0  0 ]
    //   [ 3  0 -0  4 ]
    const DENSE: [f32; 12] = [0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0, -0.0, 4.0];

    #[test]
    fn csr_by_hand() {
        let csr = Csr::from_dense(&DENSE, &[3, 4]).unwrap();
        assert_eq!(csr.shape(), [3, 4]);
        assert_eq!(csr.data(), [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(csr.indices(), [1, 3, 0, 3]);
        assert_eq!(csr.indptr(), [0, 2, 2, 4]);
        assert_eq!(csr.format(), "csr");
    }

    #[test]
    fn csc_by_hand() {
        let csc = Csc::from_dense(&DENSE, &[3, 4]).unwrap();
        assert_eq!(csc.shape(), [3, 4]);
        assert_eq!(csc.data(), [3.0, 1.0, 2.0, 4.0]);
        assert_eq!(csc.indices(), [2, 0, 0, 2]);
        assert_eq!(csc.indptr(), [0, 1, 2, 2, 4]);
        assert_eq!(csc.format(), "csc");
        let expected_dense = [0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 4.0];
        assert_eq!(csc.to_dense(), expected_dense);
    }

    #[test]
    fn trailing_dims_flatten_into_columns_and_1d_is_one_column() {
        // shape [2, 1, 2] -> 2 x 2
        let csr = Csr::from_dense(&[0.0, 5.0, 6.0, 0.0], &[2, 1, 2]).unwrap();
        assert_eq!(csr.shape(), [2, 2]);
        assert_eq!(csr.indices(), [1, 0]);
        assert_eq!(csr.indptr(), [0, 1, 2]);
        let csc = Csc::from_dense(&[0.0, 7.0, 0.0], &[3]).unwrap();
        assert_eq!(csc.shape(), [3, 1]);
        assert_eq!(csc.data(), [7.0]);
        assert_eq!(csc.indices(), [1]);
        assert_eq!(csc.indptr(), [0, 1]);
    }

    #[test]
    fn empty_and_zero_sized_matrices() {
        let csr = Csr::from_dense(&[], &[3, 0]).unwrap();
        assert_eq!(csr.indptr(), [0, 0, 0, 0]);
        let csc = Csc::from_dense(&[], &[0, 5]).unwrap();
        assert_eq!(csc.indptr(), [0; 6]);
        assert_eq!(csc.nnz(), 0);
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert_eq!(Csr::from_dense(&[1.0], &[]), Err(SparseError::EmptyShape));
        assert_eq!(
            Csc::from_dense(&[1.0, 2.0], &[3]),
            Err(SparseError::ShapeLenMismatch {
                shape: vec![3],
                expected: 3,
                actual: 2
            })
        );
        assert_eq!(
            Csr::from_dense(&[], &[1, usize::MAX, 2]),
            Err(SparseError::ShapeOverflow {
                shape: vec![1, usize::MAX, 2]
            })
        );
        let too_many_rows = i32::MAX as usize + 1;
        assert_eq!(
            Csr::from_dense(&[], &[too_many_rows, 0]),
            Err(SparseError::IndexOverflow {
                what: "rows",
                value: too_many_rows
            })
        );
        assert_eq!(
            Csr::from_dense(&[], &[0, too_many_rows]),
            Err(SparseError::IndexOverflow {
                what: "columns",
                value: too_many_rows
            })
        );
    }
}
