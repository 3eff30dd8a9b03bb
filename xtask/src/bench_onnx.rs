//! `cargo xtask bench-onnx`: `caffe-convert --net DEPLOY -o OUT.onnx` on the VGG16-sized model (553 MB; the one
//! bench-inspect generates) as a whole process, against one plain sequential read of the caffemodel and against a
//! plain copy of it (read, then written as every output is: temp file, fsync, rename), in the same run.

use anyhow::{bail, Result};
use caffemodel::text::{to_text, Schema};
use prost::Message;
use std::process::Command;
use std::time::Instant;

use crate::bench::{median, plain_read, target_dir};

/// Runs the benchmark: `runs` timed repetitions of each side, alternating.
pub fn run(runs: usize) -> Result<()> {
    let convert = crate::bench::build_release(&["caffe-convert"])?.join("caffe-convert");
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let model = dir.join("vgg16_random.caffemodel");
    let deploy = dir.join("vgg16_deploy.prototxt");
    let mut net = crate::gen::vgg16(1);
    let expected_len = net.encoded_len() as u64;
    if std::fs::metadata(&model).map(|m| m.len()).ok() != Some(expected_len) {
        eprintln!("generating {} ({expected_len} bytes)...", model.display());
        let bytes = net.encode_to_vec();
        outfile::write_atomic(&model, |w| w.write_all(&bytes))?;
    }
    for layer in &mut net.layer {
        layer.blobs.clear();
    }
    std::fs::write(&deploy, to_text(&net, &Schema::builtin(), "NetParameter"))?;
    drop(net);
    let out = dir.join("vgg16.onnx");
    plain_read(&model)?;
    let copy = dir.join("vgg16_copy.caffemodel");
    let (mut read_s, mut copy_s, mut export_s) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        plain_read(&model)?;
        read_s.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let bytes = std::fs::read(&model)?;
        outfile::write_atomic(&copy, |w| w.write_all(&bytes))?;
        copy_s.push(t.elapsed().as_secs_f64());
        drop(bytes);
        let t = Instant::now();
        let run = Command::new(&convert)
            .arg(&model)
            .arg("--net")
            .arg(&deploy)
            .arg("-o")
            .arg(&out)
            .output()?;
        export_s.push(t.elapsed().as_secs_f64());
        if !run.status.success() {
            bail!("caffe-convert failed: {}", String::from_utf8_lossy(&run.stderr));
        }
    }
    std::fs::remove_file(&copy)?;
    let (read_m, copy_m, export_m) = (median(read_s.clone()), median(copy_s.clone()), median(export_s.clone()));
    let onnx_bytes = std::fs::metadata(&out)?.len();
    let report = serde_json::json!({
        "model_bytes": expected_len, "onnx_bytes": onnx_bytes, "runs": runs,
        "plain_read_s": read_s, "plain_copy_s": copy_s, "export_s": export_s,
        "plain_read_median_s": read_m, "plain_copy_median_s": copy_m, "export_median_s": export_m,
        "ratio_to_read": export_m / read_m, "ratio_to_copy": export_m / copy_m,
    });
    std::fs::write(dir.join("onnx.json"), serde_json::to_string_pretty(&report)? + "\n")?;
    println!(
        "model: {} ({expected_len} bytes) -> {} ({onnx_bytes} bytes)",
        model.display(),
        out.display()
    );
    println!("plain sequential read: median {read_m:.3} s over {runs} runs");
    println!("plain copy (read + atomic write, fsync): median {copy_m:.3} s");
    println!(
        "caffe-convert -o .onnx (whole process): median {export_m:.3} s, {:.1}x the read, {:.2}x the copy",
        export_m / read_m,
        export_m / copy_m
    );
    Ok(())
}
