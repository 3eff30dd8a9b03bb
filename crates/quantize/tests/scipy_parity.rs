//! `Init::Linear` against the tutorial's own call, run by scipy in a python3 subprocess:
//! `scipy.cluster.vq.kmeans(W[W != 0], np.linspace(min, max, 2**B - 1))` over the same float32
//! weights (written as .npy files). Our centroids must equal scipy's in number and lie within
//! `1e-5 * max|w|` of them. And `assign` against scipy's centroids must give `vq`'s codes, but
//! for near ties that vq's float32 arithmetic decides differently.
//!
//! Without python3, numpy or scipy the test prints a note and passes, except under `CI=true`,
//! where it fails (CI installs numpy and scipy).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use quantize::synthetic::pruned;
use quantize::{kmeans, KMeansOptions};

/// The tolerance, relative to the largest weight magnitude of the blob.
const TOLERANCE: f64 = 1e-5;

/// Whether python3 with numpy and scipy can run; panics in CI if not.
fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import numpy, scipy.cluster.vq"])
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "python3 with numpy and scipy is required under CI=true for the scipy k-means \
                 parity test (pip install numpy scipy)"
            );
        }
        eprintln!("note: python3 with numpy and scipy not found; skipping the scipy k-means parity test");
    }
    ok
}

/// A 1-D little-endian float32 .npy file (format version 1.0).
fn write_npy(path: &Path, values: &[f32]) {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}",
        values.len()
    );
    // Magic (6) + version (2) + header length (2) + header, padded with spaces and ended by a
    // newline to a multiple of 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * values.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).expect("write .npy");
}

/// For each line `name path bits codes_path` of argv[1], the tutorial's call (for B = 1 scipy's
/// `_kmeans`, see below), then the same in float64; prints `f32|f64 name bits distortion c1 c2
/// ...` with every value as Python's exact `repr`, and writes `vq`'s codes (+ 1) of the nonzero
/// weights against the float32 centroids to `codes_path`, one byte each.
const SCRIPT: &str = r#"
import sys
import numpy as np
from scipy.cluster.vq import kmeans, _kmeans, vq
for line in open(sys.argv[1]):
    name, path, bits, codes_path = line.split()
    bits = int(bits)
    W = np.load(path)
    assert W.dtype == np.float32
    nz = W[W != 0]
    guess = np.linspace(nz.min(), nz.max(), 2**bits - 1)
    # The same run in float64 (same float32 weights and starting points, widened), to show how
    # much of the difference is scipy's float32 accumulation.
    for tag, obs, start in (("f32", nz, guess), ("f64", nz.astype(np.float64), guess.astype(np.float64))):
        if start.size == 1:
            # kmeans() takes a one-element guess for a cluster count and refuses it; its
            # _kmeans (which kmeans calls for every longer guess) is what B = 1 means.
            codebook, distortion = _kmeans(obs, start)
        else:
            codebook, distortion = kmeans(obs, start)
        assert codebook.dtype == obs.dtype, codebook.dtype
        print(tag, name, bits, repr(float(distortion)), *[repr(float(c)) for c in codebook])
        if tag == "f32":
            # The tutorial's codes: vq of the nonzero weights against scipy's own centroids.
            codes, _ = vq(nz, codebook)
            (codes + 1).astype(np.uint8).tofile(codes_path)
"#;

/// A blob with duplicates and exact ties: multiples of 1/8 in [-2, 2.5] (their midpoints are
/// exact, and the f32 arithmetic on them is exact too), unequal counts so that no cluster
/// balances to a zero mean, and zeros of both signs.
fn adversarial() -> Vec<f32> {
    let mut w = Vec::new();
    for i in -16i32..=20 {
        let count = 1 + (i.rem_euclid(5)) as usize + usize::from(i > 0);
        for _ in 0..count {
            w.push(i as f32 / 8.0);
        }
    }
    w.extend([-0.0f32, 0.0, 2.5, 2.5, 2.5, -2.0]);
    w
}

#[test]
fn linear_init_matches_scipy_kmeans() {
    if !python_ready() {
        return;
    }
    // LeNet's four weight blobs, magnitude-pruned at Deep Compression's keep fractions
    // (66/12/8/19%: with std 0.05, |w| <= 0.022/0.0778/0.0875/0.0655 pruned) and ip1 also at the
    // tutorial's 1% and dense; the adversarial blob; then the bit widths each is run at.
    let all_bits: Vec<u32> = (1..=8).collect();
    let cases: Vec<(&str, Vec<f32>, Vec<u32>)> = vec![
        ("conv1", pruned(500, 1, 0.022), all_bits.clone()),
        ("conv2", pruned(25_000, 2, 0.0778), vec![5, 8]),
        ("ip1", pruned(400_000, 3, 0.0875), vec![5, 8]),
        ("ip1_tutorial", pruned(400_000, 3, 0.1288), vec![5]),
        ("ip1_dense", pruned(400_000, 5, 0.0), vec![5]),
        ("ip2", pruned(5_000, 4, 0.0655), all_bits.clone()),
        ("adversarial", adversarial(), all_bits.clone()),
    ];

    let dir = tempfile::tempdir().expect("temp dir");
    let mut jobs = String::new();
    for (name, w, bits) in &cases {
        let path = dir.path().join(format!("{name}.npy"));
        write_npy(&path, w);
        for b in bits {
            let codes = dir.path().join(format!("{name}_{b}.codes"));
            writeln!(jobs, "{name} {} {b} {}", path.display(), codes.display()).unwrap();
        }
    }
    let jobs_path = dir.path().join("jobs.txt");
    std::fs::write(&jobs_path, jobs).unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(&jobs_path)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python failed:\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let mut checked = 0;
    let mut worst_overall = 0.0f64;
    let (mut total_codes, mut total_code_mismatches) = (0usize, 0usize);
    let mut failures = Vec::new();
    let mut f64_deviation = std::collections::HashMap::new();
    for line in stdout.lines().filter(|l| l.starts_with("f64 ")) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let key = format!("{} {}", fields[1], fields[2]);
        let centroids: Vec<f64> = fields[4..].iter().map(|f| f.parse().expect("f64")).collect();
        f64_deviation.insert(key, centroids);
    }
    for line in stdout.lines().filter(|l| l.starts_with("f32 ")) {
        let mut fields = line.split_whitespace().skip(1);
        let name = fields.next().expect("name");
        let bits: u32 = fields.next().expect("bits").parse().expect("bits");
        let scipy_distortion: f64 = fields.next().expect("distortion").parse().expect("f64");
        let scipy: Vec<f32> = fields.map(|f| f.parse::<f64>().expect("centroid") as f32).collect();
        let (_, w, _) = cases.iter().find(|(n, _, _)| *n == name).expect("case");

        // Our assignment against scipy's centroids gives vq's codes; where it does not, the two
        // centroids must be equally near in exact arithmetic up to vq's f32 rounding.
        let nonzero: Vec<f32> = w.iter().copied().filter(|&x| x != 0.0).collect();
        let vq_codes = std::fs::read(dir.path().join(format!("{name}_{bits}.codes"))).expect("codes");
        let mut codebook = vec![0.0f32];
        codebook.extend(&scipy);
        let our_codes = quantize::assign(&nonzero, &codebook).expect("scipy's codebook is valid");
        assert_eq!(our_codes.len(), vq_codes.len());
        let mut code_mismatches = 0;
        for ((&x, &a), &b) in nonzero.iter().zip(&our_codes).zip(&vq_codes) {
            if a != b {
                code_mismatches += 1;
                let x = f64::from(x);
                let da = (x - f64::from(codebook[usize::from(a)])).abs();
                let db = (x - f64::from(codebook[usize::from(b)])).abs();
                if (da - db).abs() > 1e-6 * da.max(db) || name == "adversarial" {
                    failures.push(format!(
                        "{name} B={bits}: weight {x} takes code {a} (distance {da}), vq {b} ({db})"
                    ));
                }
            }
        }
        total_codes += our_codes.len();
        total_code_mismatches += code_mismatches;
        let scale = w.iter().fold(0.0f64, |m, &x| m.max(f64::from(x).abs()));
        let ours = kmeans(w, &KMeansOptions::new(bits)).expect("finite weights");
        checked += 1;

        if ours.centroids.len() != scipy.len() {
            failures.push(format!(
                "{name} B={bits}: {} centroids, scipy {}",
                ours.centroids.len(),
                scipy.len()
            ));
            continue;
        }
        let worst = ours
            .centroids
            .iter()
            .zip(&scipy)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
            .fold(0.0f64, f64::max)
            / scale;
        let identical = ours
            .centroids
            .iter()
            .zip(&scipy)
            .filter(|(a, b)| a.to_bits() == b.to_bits())
            .count();
        worst_overall = worst_overall.max(worst);
        let f64_run = &f64_deviation[&format!("{name} {bits}")];
        let against_f64 = if f64_run.len() == ours.centroids.len() {
            let d = ours
                .centroids
                .iter()
                .zip(f64_run)
                .map(|(&a, &b)| (f64::from(a) - b).abs())
                .fold(0.0f64, f64::max)
                / scale;
            format!("{d:.2e}")
        } else {
            format!("n/a ({} centroids)", f64_run.len())
        };
        eprintln!(
            "{name:>12} B={bits}: {:>6} nonzeros, {:>3} centroids ({identical:>3} bit-identical), \
             {:>2} iterations; worst |ours - scipy| / max|w| = {worst:.2e} (scipy in f64: \
             {against_f64}); distortion {:.9e}, scipy {scipy_distortion:.9e}",
            ours.nonzeros,
            scipy.len(),
            ours.iterations,
            ours.distortion,
        );
        if worst > TOLERANCE {
            failures.push(format!(
                "{name} B={bits}: worst centroid deviation {worst:.3e} * max|w| > {TOLERANCE:e}"
            ));
        }
        // scipy's distortion is the f32 mean over the same codebook: a different iteration
        // count would show here first.
        let rel = (ours.distortion - scipy_distortion).abs() / scipy_distortion.max(f64::MIN_POSITIVE);
        if rel > 1e-4 {
            failures.push(format!(
                "{name} B={bits}: distortion {} vs scipy {scipy_distortion} ({rel:.2e} relative)",
                ours.distortion
            ));
        }
    }
    let expected: usize = cases.iter().map(|(_, _, b)| b.len()).sum();
    assert_eq!(
        checked, expected,
        "python printed {checked} results, expected {expected}"
    );
    eprintln!(
        "worst deviation over {checked} runs: {worst_overall:.2e} * max|w|; codes against scipy's \
         centroids: {total_code_mismatches} of {total_codes} differ from vq's (near ties only)"
    );
    assert!(
        failures.is_empty(),
        "disagreements with scipy:\n{}",
        failures.join("\n")
    );
}
