//! CSR/CSC against a naive construction written in the test.

use proptest::prelude::*;
use sparse::{CompressedMatrix, Csc, Csr};

/// Naive CSR: visit rows, then columns (an oracle independent of the scanner).
fn naive_csr(flat: &[f32], rows: usize, cols: usize) -> (Vec<u32>, Vec<i32>, Vec<i32>) {
    let (mut data, mut indices, mut indptr) = (Vec::new(), Vec::new(), vec![0]);
    for r in 0..rows {
        for c in 0..cols {
            let v = flat[r * cols + c];
            if v != 0.0 {
                data.push(v.to_bits());
                indices.push(c as i32);
            }
        }
        indptr.push(data.len() as i32);
    }
    (data, indices, indptr)
}

/// Naive CSC: visit columns, then rows, reading the row-major blob with a stride.
fn naive_csc(flat: &[f32], rows: usize, cols: usize) -> (Vec<u32>, Vec<i32>, Vec<i32>) {
    let (mut data, mut indices, mut indptr) = (Vec::new(), Vec::new(), vec![0]);
    for c in 0..cols {
        for r in 0..rows {
            let v = flat[r * cols + c];
            if v != 0.0 {
                data.push(v.to_bits());
                indices.push(r as i32);
            }
        }
        indptr.push(data.len() as i32);
    }
    (data, indices, indptr)
}

fn parts<M: CompressedMatrix>(m: &M) -> (Vec<u32>, Vec<i32>, Vec<i32>) {
    (
        m.data().iter().map(|v| v.to_bits()).collect(),
        m.indices().to_vec(),
        m.indptr().to_vec(),
    )
}

/// A shape of 1 to 4 dimensions (some zero-sized) with a blob of that size.
fn shaped_blob() -> impl Strategy<Value = (Vec<usize>, Vec<f32>)> {
    (prop::collection::vec(0usize..7, 1..=4), 0.0f64..=1.0).prop_flat_map(|(shape, density)| {
        let len: usize = shape.iter().product();
        let element = prop::bool::weighted(density).prop_flat_map(|nonzero| {
            if nonzero {
                prop_oneof![4 => any::<f32>(), 1 => Just(f32::NAN)].boxed()
            } else {
                prop_oneof![Just(0.0f32), Just(-0.0f32)].boxed()
            }
        });
        (Just(shape), prop::collection::vec(element, len))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn csr_and_csc_match_naive_construction((shape, flat) in shaped_blob()) {
        let rows = shape[0];
        let cols: usize = shape[1..].iter().product();
        let csr = Csr::from_dense(&flat, &shape).unwrap();
        let csc = Csc::from_dense(&flat, &shape).unwrap();
        prop_assert_eq!(csr.shape(), [rows, cols]);
        prop_assert_eq!(csc.shape(), [rows, cols]);
        prop_assert_eq!(parts(&csr), naive_csr(&flat, rows, cols));
        prop_assert_eq!(parts(&csc), naive_csc(&flat, rows, cols));
        // Compared bitwise: NaN entries make PartialEq unusable here.
        prop_assert_eq!(parts(&csr.to_csc()), parts(&csc));
        prop_assert_eq!(parts(&csc.to_csr()), parts(&csr));
        let expected: Vec<u32> = flat.iter().map(|&v| if v == 0.0 { 0 } else { v.to_bits() }).collect();
        let dense_csr: Vec<u32> = csr.to_dense().iter().map(|v| v.to_bits()).collect();
        let dense_csc: Vec<u32> = csc.to_dense().iter().map(|v| v.to_bits()).collect();
        prop_assert_eq!(&dense_csr, &expected);
        prop_assert_eq!(&dense_csc, &expected);
    }
}

#[test]
fn wide_rows_cross_scanner_blocks() {
    // 3 x 40: rows end in the middle of 16-value blocks.
    let mut flat = vec![0.0f32; 120];
    for (i, index) in [0usize, 15, 16, 39, 40, 79, 80, 119].into_iter().enumerate() {
        flat[index] = (i + 1) as f32;
    }
    let csr = Csr::from_dense(&flat, &[3, 40]).unwrap();
    assert_eq!(csr.data(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    assert_eq!(csr.indices(), [0, 15, 16, 39, 0, 39, 0, 39]);
    assert_eq!(csr.indptr(), [0, 4, 6, 8]);
    let csc = Csc::from_dense(&flat, &[3, 40]).unwrap();
    // Column 0 holds rows 0,1,2 (values 1,5,7); column 15: 2; 16: 3; 39: rows 0,1,2 (4,6,8).
    assert_eq!(csc.data(), [1.0, 5.0, 7.0, 2.0, 3.0, 4.0, 6.0, 8.0]);
    assert_eq!(csc.indices(), [0, 1, 2, 0, 0, 0, 1, 2]);
    assert_eq!(csc.indptr()[..3], [0, 3, 3]);
    assert_eq!(csc.indptr()[15..18], [3, 4, 5]);
    assert_eq!(csc.indptr()[39..], [5, 8]);
}
