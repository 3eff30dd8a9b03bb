//! `caffe-prune sweep` against real Caffe: a swept setting scores what Caffe scored for the same pruned net, the
//! CSV, plot and JSON agree, and the budget suggestion is measured.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_caffe-prune");

#[test]
fn a_swept_setting_scores_what_caffe_scored_and_the_outputs_agree() {
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden");
    let tmp = tempfile::tempdir().unwrap();
    let (csv, svg) = (tmp.path().join("sweep.csv"), tmp.path().join("sweep.svg"));
    let out = Command::new(BIN)
        .arg("sweep")
        .arg("--net")
        .arg(golden.join("lenet/lenet_mnist_v2/lenet_test.prototxt"))
        .arg("--weights")
        .arg(fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"))
        .arg("--data")
        .arg(golden.join("data/mnist_test_lmdb"))
        .args([
            "--grid",
            "ip1=0.05",
            "--grid",
            "conv2=0.2,1",
            "--budget",
            "0.5",
            "--json",
            "--csv",
        ])
        .arg(&csv)
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // The unpruned net and ip1 alone at 0.05 are two of Caffe's own evaluations (golden t_1_1_0.05_1).
    let caffe = |dir: &str| -> f64 {
        let text = std::fs::read_to_string(golden.join(dir).join("result.json")).unwrap();
        let result: serde_json::Value = serde_json::from_str(&text).unwrap();
        result["caffe_test"]["accuracy_printed"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(report["images"], 10000);
    assert_eq!(report["dense"]["top1"].as_f64().unwrap(), caffe("lenet/lenet_mnist_v2"));
    let rows = report["rows"].as_array().unwrap();
    let layers: Vec<(&str, f64)> = rows
        .iter()
        .map(|r| (r["layer"].as_str().unwrap(), r["keep"].as_f64().unwrap()))
        .collect();
    assert_eq!(layers, [("ip1", 0.05), ("conv2", 0.2), ("conv2", 1.0)]);
    assert_eq!(
        rows[0]["top1"].as_f64().unwrap(),
        caffe("pruned/lenet_mnist_v2/t_1_1_0.05_1")
    );
    // ip1 keeps floor(399999 * 0.05) = 19999 of 400000 weights (GOLDEN.md's count); keep 1 leaves conv2 as it is.
    assert!((rows[0]["sparsity"].as_f64().unwrap() - (1.0 - 19999.0 / 400000.0)).abs() < 1e-12);
    assert_eq!(rows[2]["sparsity"].as_f64().unwrap(), 0.0);
    assert_eq!(rows[2]["top1"], report["dense"]["top1"]);

    // The suggestion is measured, within the budget, and prunes something.
    let s = &report["suggestion"];
    assert!(s["within_budget"].as_bool().unwrap());
    assert!(s["drop_points"].as_f64().unwrap() <= 0.5 + 1e-9);
    assert!(s["kept_fraction"].as_f64().unwrap() < 1.0);
    assert_eq!(s["keep"].as_object().unwrap().len(), 2);

    let csv = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "layer,keep,sparsity,top1,top5,loss");
    assert_eq!(lines.len(), 4);
    assert!(lines[1].starts_with("ip1,0.05,0.950002,"), "{}", lines[1]);
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 2, "one line per layer");
}

#[test]
fn bad_sweep_arguments_fail_with_one_line() {
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden");
    let base_code = |extra: &[&str], code: i32| {
        let out = Command::new(BIN)
            .arg("sweep")
            .arg("--net")
            .arg(golden.join("lenet/lenet_mnist_v2/lenet_test.prototxt"))
            .arg("--weights")
            .arg(fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"))
            .arg("--data")
            .arg(golden.join("data/mnist_test_lmdb"))
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{extra:?}");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        err
    };
    let base = |extra: &[&str]| base_code(extra, 1);
    // A flag of eval's that sweep does not take is a usage error.
    let tmp = tempfile::tempdir().unwrap();
    let pred = tmp.path().join("p.npy");
    let err = base_code(&["--grid", "ip1=0.5", "--predictions", pred.to_str().unwrap()], 2);
    assert!(err.contains("unexpected argument '--predictions'"), "{err}");
    assert!(!pred.exists());
    // An output that is an input, under another spelling, is refused before any evaluation.
    let weights = fx.join("models/lenet_mnist_v2/./lenet_iter_10000.caffemodel");
    assert!(base(&["--grid", "ip1=0.5", "--csv", weights.to_str().unwrap()])
        .contains("refusing to write an output over the input"));
    assert!(base(&["--grid", "pool1=0.5"]).contains("not a prunable layer"));
    assert!(base(&["--grid", "ip1=1.5"]).contains("not in [0, 1]"));
    assert!(base(&["--grid", "ip1"]).contains("LAYER="));
    assert!(base(&["--grid", "ip1=0.5", "--plot", "x.pdf"]).contains("SVG or PNG"));
}

#[test]
fn plots_are_svg_or_png_by_name_and_other_names_are_refused_first() {
    let Some(fx) = testkit::fixtures() else { return };
    let golden = fx.join("golden");
    let tmp = tempfile::tempdir().unwrap();
    let run = |plot: &std::path::Path| {
        Command::new(BIN)
            .arg("sweep")
            .arg("--net")
            .arg(golden.join("lenet/lenet_mnist_v2/lenet_test.prototxt"))
            .arg("--weights")
            .arg(fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"))
            .arg("--data")
            .arg(golden.join("data/mnist_test_lmdb"))
            .args(["--grid", "ip1=0.05", "--quiet", "--plot"])
            .arg(plot)
            .output()
            .unwrap()
    };
    let pdf = tmp.path().join("sweep.pdf");
    let out = run(&pdf);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("give a .svg or .png file name"), "{stderr}");
    assert!(!pdf.exists());
    let png = tmp.path().join("sweep.png");
    let out = run(&png);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
}

/// `sweep` with the fixtures' LeNet, MNIST test LMDB and a 2 layers x 2 keeps grid, then `extra`.
fn lenet_sweep(fx: &Path, extra: &[&OsStr]) -> Output {
    let golden = fx.join("golden");
    let out = Command::new(BIN)
        .arg("sweep")
        .arg("--net")
        .arg(golden.join("lenet/lenet_mnist_v2/lenet_test.prototxt"))
        .arg("--weights")
        .arg(fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"))
        .arg("--data")
        .arg(golden.join("data/mnist_test_lmdb"))
        .args(["--grid", "conv2=0.1,0.3", "--grid", "ip1=0.02,0.05", "--quiet"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{extra:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `sweep` with these arguments; its exit code and its stderr, which must be one line.
fn sweep_fails(args: &[&OsStr]) -> (i32, String) {
    let out = Command::new(BIN).arg("sweep").args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    (out.status.code().unwrap_or(-1), err)
}

#[test]
fn sharded_sweeps_merge_into_the_unsharded_run_byte_for_byte() {
    let Some(fx) = testkit::fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let at = |name: &str| tmp.path().join(name);
    let (csv, svg) = (at("whole.csv"), at("whole.svg"));
    let whole = lenet_sweep(
        &fx,
        &[
            "--csv".as_ref(),
            csv.as_os_str(),
            "--plot".as_ref(),
            svg.as_os_str(),
            "--budget".as_ref(),
            "0.5".as_ref(),
            "--json".as_ref(),
        ],
    );
    let whole_csv = std::fs::read(&csv).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&whole_csv).lines().count(),
        5,
        "header and 4 settings"
    );
    let mut shards: Vec<Vec<PathBuf>> = Vec::new();
    for n in [2, 3, 5] {
        let mut files = Vec::new();
        for i in 0..n {
            let file = at(&format!("shard-{i}-of-{n}.csv"));
            let out = lenet_sweep(
                &fx,
                &[
                    "--shard".as_ref(),
                    format!("{i}/{n}").as_ref(),
                    "--csv".as_ref(),
                    file.as_os_str(),
                    "--json".as_ref(),
                ],
            );
            // Round-robin: setting k of the 4 is shard k mod n's; every shard measures the unpruned net too.
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let expected = (0..4).filter(|k| k % n == i).count();
            assert_eq!(report["rows"].as_array().unwrap().len(), expected, "{i}/{n}");
            assert_eq!(report["shard"], format!("{i}/{n}"));
            let text = std::fs::read_to_string(&file).unwrap();
            assert_eq!(text.lines().count(), 2 + expected, "{text}");
            files.push(file);
        }
        // In any order, without the net: the unsharded run's CSV and plot, byte for byte.
        files.reverse();
        let (merged_csv, merged_svg) = (at(&format!("merged-{n}.csv")), at(&format!("merged-{n}.svg")));
        let out = Command::new(BIN)
            .args(["sweep", "--quiet", "--merge"])
            .args(&files)
            .arg("--csv")
            .arg(&merged_csv)
            .arg("--plot")
            .arg(&merged_svg)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            std::fs::read(&merged_csv).unwrap() == whole_csv,
            "{n} shards: the CSVs differ"
        );
        assert!(
            std::fs::read(&merged_svg).unwrap() == std::fs::read(&svg).unwrap(),
            "{n} shards: the plots differ"
        );
        shards.push(files);
    }
    // The 5th of 5 shards has no setting: its CSV is the header and the unpruned net's row.
    let empty = std::fs::read_to_string(at("shard-4-of-5.csv")).unwrap();
    assert!(empty.lines().nth(1).unwrap().starts_with(",1,0,0.9914,"), "{empty}");

    // --budget from the merged CSVs: the unsharded run's JSON, suggestion and all.
    let golden = fx.join("golden");
    let (net, weights, data) = (
        golden.join("lenet/lenet_mnist_v2/lenet_test.prototxt"),
        fx.join("models/lenet_mnist_v2/lenet_iter_10000.caffemodel"),
        golden.join("data/mnist_test_lmdb"),
    );
    let merge_budget = |weights: &Path| {
        Command::new(BIN)
            .args(["sweep", "--quiet", "--json", "--budget", "0.5", "--merge"])
            .args(&shards[1])
            .arg("--net")
            .arg(&net)
            .arg("--weights")
            .arg(weights)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap()
    };
    let out = merge_budget(&weights);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["suggestion"]["keep"].is_object());
    assert!(
        out.stdout == whole.stdout,
        "the merged JSON differs from the unsharded run's"
    );

    // What the merge refuses, each in one line: other weights for --budget, a missing or repeated shard, shards of
    // two splits, an output over an input (the input left as it was).
    let other = fx.join("models/lenet_fashion/lenet_fashion_iter_10000.caffemodel");
    let out = merge_budget(&other);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not the weights the shards swept"), "{err}");
    let os = |p: &PathBuf| p.as_os_str().to_owned();
    let (code, err) = sweep_fails(&["--merge".as_ref(), &os(&shards[1][0]), &os(&shards[1][1])]);
    assert!(code == 1 && err.contains("is missing"), "{err}");
    let (code, err) = sweep_fails(&[
        "--merge".as_ref(),
        &os(&shards[0][0]),
        &os(&shards[0][0]),
        &os(&shards[0][1]),
    ]);
    assert!(code == 1 && err.contains("given twice"), "{err}");
    let (code, err) = sweep_fails(&["--merge".as_ref(), &os(&shards[0][0]), &os(&shards[1][1])]);
    assert!(code == 1 && err.contains("not from the same sweep"), "{err}");
    let before = std::fs::read(&shards[0][0]).unwrap();
    let (code, err) = sweep_fails(&[
        "--merge".as_ref(),
        &os(&shards[0][0]),
        &os(&shards[0][1]),
        "--csv".as_ref(),
        &os(&shards[0][0]),
    ]);
    assert!(
        code == 1 && err.contains("refusing to write an output over the input"),
        "{err}"
    );
    assert_eq!(std::fs::read(&shards[0][0]).unwrap(), before);
}

#[test]
fn shard_and_merge_usage_errors_come_before_any_work() {
    // None of these reads a file: the paths need not exist.
    let eval = ["--net", "n.prototxt", "--weights", "w.caffemodel", "--data", "d_lmdb"];
    for (extra, code, message) in [
        (
            vec!["--shard", "2/2", "--csv", "s.csv"],
            2,
            "shards are counted from 0 (0/2 to 1/2)",
        ),
        (vec!["--shard", "1-2", "--csv", "s.csv"], 2, "is not I/N"),
        (vec!["--shard", "0/2"], 2, "--csv"),
        (
            vec!["--shard", "0/2", "--csv", "s.csv", "--budget", "1"],
            2,
            "give it to `sweep --merge`",
        ),
        (
            vec!["--shard", "0/2", "--csv", "s.csv", "--plot", "p.svg"],
            2,
            "give it to `sweep --merge`",
        ),
        (
            vec!["--shard", "0/2", "--csv", "s.csv", "--merge", "a.csv"],
            2,
            "cannot be used with",
        ),
    ] {
        let args: Vec<&OsStr> = eval.iter().chain(&extra).map(OsStr::new).collect();
        let (got, err) = sweep_fails(&args);
        assert_eq!(got, code, "{extra:?}: {err}");
        assert!(err.contains(message), "{extra:?}: {err}");
    }
    for (args, code, message) in [
        // --merge needs no net, but --budget evaluates one.
        (
            vec!["--merge", "a.csv", "--budget", "1"],
            2,
            "--net <NET.prototxt> --weights <W.caffemodel>",
        ),
        (
            vec!["--merge", "a.csv", "--net", "n.prototxt"],
            2,
            "--net applies to --merge only with --budget",
        ),
        (vec!["--merge", "a.csv", "--grid", "ip1=0.5"], 2, "cannot be used with"),
        (
            vec!["--merge", "a.csv", "--csv", "./a.csv"],
            1,
            "refusing to write an output over the input",
        ),
        (vec!["--merge", "missing.csv"], 1, "missing.csv"),
        (vec!["--csv", "s.csv"], 2, "--net"),
    ] {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let (got, err) = sweep_fails(&args);
        assert_eq!(got, code, "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
}

/// The `caffe-prune sweep` commands of a script or a Markdown file's code blocks (comments and prose left out): each
/// to the end of its line, continued while a line ends with a backslash, cut at a redirection or pipe; quotes
/// removed and shell variables replaced by example values.
fn sweep_commands(text: &str, markdown: bool) -> Vec<Vec<String>> {
    let mut in_code = !markdown;
    let mut lines = text.lines();
    let mut commands = Vec::new();
    while let Some(line) = lines.next() {
        if markdown && line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let Some(start) = line.find("caffe-prune sweep") else {
            continue;
        };
        if !in_code || line.trim_start().starts_with('#') {
            continue;
        }
        let mut command = line[start..].to_string();
        while command.trim_end().ends_with('\\') {
            command = format!(
                "{} {}",
                command.trim_end().trim_end_matches('\\'),
                lines.next().unwrap_or("")
            );
        }
        let words: Vec<String> = command
            .split_whitespace()
            .take_while(|w| !matches!(*w, ">" | "|" | "&&" | ";" | "2>&1"))
            .map(|w| expand(&w.replace(['"', '\''], "")))
            .collect();
        commands.push(words);
    }
    commands
}

/// `$NAME` and `${NAME}` as an example value: shard indices and counts as numbers, anything else as a path.
fn expand(word: &str) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, next) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').expect("a closed ${...}");
                (&braced[..end], &braced[end + 1..])
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        out.push_str(match name {
            "SLURM_ARRAY_TASK_ID" | "JOB_COMPLETION_INDEX" => "3",
            "SHARDS" | "THREADS" => "16",
            "BUDGET" => "0.5",
            _ => "/example/path",
        });
        rest = next;
    }
    out.push_str(rest);
    out
}

#[test]
fn the_docs_sweep_commands_parse() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    for (file, markdown, at_least) in [
        ("sharded-sweeps.md", true, 3),
        ("slurm-sweep.sh", false, 3),
        ("k8s-sweep-job.yaml", false, 2),
    ] {
        let text = std::fs::read_to_string(docs.join(file)).unwrap();
        let commands = sweep_commands(&text, markdown);
        assert!(commands.len() >= at_least, "{file}: {commands:?}");
        for words in &commands {
            if let Err(e) = caffe_prune::command().try_get_matches_from(words) {
                panic!("{file}: {}: {e}", words.join(" "));
            }
        }
        for flag in ["--shard", "--merge"] {
            assert!(
                commands.iter().flatten().any(|w| w == flag),
                "{file} has no {flag} command"
            );
        }
    }
}
