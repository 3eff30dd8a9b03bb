//! `cargo xtask bench-inspect`: `caffe-inspect` on a VGG16-sized model against a plain sequential read of the same
//! file, in the same run, with the memory it needs beyond the mapped file.

use anyhow::{bail, Context, Result};
use prost::Message;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target"))
}

pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Builds the project's `tools` in release mode; returns the folder holding their binaries.
pub(crate) fn build_release(tools: &[&str]) -> Result<PathBuf> {
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "--release", "--quiet"])
        .current_dir(crate::repo_root());
    for tool in tools {
        cargo.args(["-p", tool]);
    }
    if !cargo.status()?.success() {
        bail!("building {} failed", tools.join(", "));
    }
    Ok(target_dir().join("release"))
}

/// Real Caffe measured now by `xtask/baselines/caffe_speed.py` (`mode` "forward" or "train", the fixtures' own
/// protocol) when pycaffe is importable; `None` (said on stderr) when it is not, and the recorded figures stand alone.
pub(crate) fn live_caffe(mode: &str) -> Result<Option<serde_json::Value>> {
    let root = crate::repo_root();
    let out = Command::new("python3")
        .arg(root.join("xtask/baselines/caffe_speed.py"))
        .arg(root.join("../shared/fixtures"))
        .arg(mode)
        .output()
        .context("running python3")?;
    match out.status.code() {
        Some(0) => Ok(Some(serde_json::from_slice(&out.stdout)?)),
        Some(3) => {
            eprintln!("pycaffe is not importable here: comparing with real Caffe's recorded figures only");
            Ok(None)
        }
        _ => bail!(
            "pycaffe {mode} benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Reads the whole file through a 1 MiB buffer, as `cat FILE > /dev/null` does; returns the bytes read.
pub(crate) fn plain_read(path: &Path) -> Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// Runs `program ARG`, returning its stdout, whether it succeeded, its stderr and its own peak resident set in
/// bytes (wait4 on that one child, so earlier children such as the cargo build do not count).
fn run_measured(program: &Path, arg: &Path) -> Result<(String, bool, String, u64)> {
    let mut child = Command::new(program)
        .arg(arg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().expect("piped").read_to_string(&mut stdout)?;
    child.stderr.take().expect("piped").read_to_string(&mut stderr)?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 writes only into the two out-parameters, and the child is ours and not yet reaped.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if reaped != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Ok((stdout, ok, stderr, usage.ru_maxrss as u64 * 1024))
}

/// Runs the benchmark; `runs` timed repetitions of each side, alternating.
pub fn inspect(runs: usize) -> Result<()> {
    let inspect = build_release(&["caffe-inspect"])?.join("caffe-inspect");
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let model = dir.join("vgg16_random.caffemodel");
    let net = crate::gen::vgg16(1);
    let expected_len = net.encoded_len() as u64;
    if std::fs::metadata(&model).map(|m| m.len()).ok() != Some(expected_len) {
        eprintln!("generating {} ({} bytes)...", model.display(), expected_len);
        let bytes = net.encode_to_vec();
        outfile::write_atomic(&model, |w| w.write_all(&bytes))?;
        // Measure from a fresh process: a child's peak RSS (wait4's ru_maxrss) includes what its parent held at the
        // fork, and the allocator keeps much of the generated model's memory mapped here.
        drop((net, bytes));
        let status = Command::new(std::env::current_exe()?)
            .args(["bench-inspect", "--runs", &runs.to_string()])
            .status()?;
        if !status.success() {
            bail!("the benchmark run after generating the model failed");
        }
        return Ok(());
    }
    drop(net);
    let params: u64 = 138_357_544;
    // Warm the page cache so both sides read from memory, as the fixtures' Caffe timings did.
    plain_read(&model)?;
    let (mut read_s, mut inspect_s) = (Vec::new(), Vec::new());
    let mut max_rss = 0u64;
    for _ in 0..runs {
        let t = Instant::now();
        let n = plain_read(&model)?;
        read_s.push(t.elapsed().as_secs_f64());
        if n != expected_len {
            bail!("read {n} bytes, expected {expected_len}");
        }
        let t = Instant::now();
        let (text, ok, stderr, rss) = run_measured(&inspect, &model).context("running caffe-inspect")?;
        inspect_s.push(t.elapsed().as_secs_f64());
        max_rss = max_rss.max(rss);
        if !ok {
            bail!("caffe-inspect failed: {stderr}");
        }
        if !text.contains(&params.to_string()) {
            bail!("caffe-inspect's table does not show {params} parameters");
        }
    }
    let (read_m, inspect_m) = (median(read_s.clone()), median(inspect_s.clone()));
    let extra = max_rss.saturating_sub(expected_len);
    let report = serde_json::json!({
        "model": model.display().to_string(),
        "bytes": expected_len,
        "params": params,
        "runs": runs,
        "plain_read_s": read_s,
        "inspect_s": inspect_s,
        "plain_read_median_s": read_m,
        "inspect_median_s": inspect_m,
        "ratio": inspect_m / read_m,
        "inspect_peak_rss_bytes": max_rss,
        "inspect_extra_bytes_beyond_file": extra,
        "targets": {"ratio_at_most": 2.0, "extra_bytes_under": 64u64 << 20},
    });
    std::fs::write(dir.join("inspect.json"), serde_json::to_string_pretty(&report)? + "\n")?;
    println!("model: {} ({expected_len} bytes, {params} parameters)", model.display());
    println!("plain sequential read: median {:.3} s over {runs} runs", read_m);
    println!("caffe-inspect (read + full table): median {:.3} s", inspect_m);
    println!("ratio: {:.2}x the plain read (target <= 2x)", inspect_m / read_m);
    println!(
        "peak RSS {:.1} MiB = the mapped file ({:.1} MiB) + {:.1} MiB extra (target < 64 MiB)",
        max_rss as f64 / 1048576.0,
        expected_len as f64 / 1048576.0,
        extra as f64 / 1048576.0
    );
    println!("written to {}", dir.join("inspect.json").display());
    Ok(())
}
