//! Text format against real Caffe: our upgrade + printer must write the very bytes Caffe's upgrade_*_proto_text
//! tools wrote (golden/upgrade), and prototxt errors point at line:column.

use caffemodel::text::{self, Schema};
use caffemodel::upgrade;
use std::path::Path;

#[test]
fn upgraded_prototxts_print_exactly_as_caffe_writes_them() {
    let Some(dir) = testkit::fixtures() else { return };
    let schema = Schema::builtin();
    let mut checked = 0;
    for entry in std::fs::read_dir(dir.join("golden/upgrade")).unwrap() {
        let golden = entry.unwrap().path();
        let name = golden.file_name().unwrap().to_str().unwrap().to_string();
        let Some(stem) = name.strip_suffix(".upgraded.prototxt") else {
            continue;
        };
        let (model, file) = stem.split_once("__").unwrap();
        let source = dir.join("models").join(model).join(format!("{file}.prototxt"));
        let printed = if file.contains("solver") {
            let mut solver = text::read_solver(&source, &schema).unwrap();
            upgrade::upgrade_solver(&mut solver).unwrap();
            text::to_text(&solver, &schema, "SolverParameter")
        } else {
            let mut net = text::read_net(&source, &schema).unwrap();
            upgrade::upgrade_net(&mut net).unwrap();
            text::to_text(&net, &schema, "NetParameter")
        };
        let expected = std::fs::read_to_string(&golden).unwrap();
        assert_eq!(printed, expected, "{name}");
        checked += 1;
    }
    assert_eq!(checked, 10);
}

#[test]
fn prototxt_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.prototxt");
    std::fs::write(&path, "name: \"x\"\nlayer {\n  nme: \"conv\"\n}\n").unwrap();
    let err = text::read_net(&path, &Schema::builtin()).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}:3:3: ", path.display())), "{err}");
    assert!(err.contains("nme"), "{err}");
    std::fs::write(&path, "layer { name: \"a\" ").unwrap();
    let err = text::read_net(&path, &Schema::builtin()).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}:1:", path.display())), "{err}");
    std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
    let err = text::read_net(&path, &Schema::builtin()).unwrap_err().to_string();
    assert!(err.contains("invalid UTF-8 at byte 0"), "{err}");
    let err = text::read_net(dir.path(), &Schema::builtin()).unwrap_err().to_string();
    assert!(err.contains("is a directory"), "{err}");
}

#[test]
fn a_forks_schema_reads_its_extra_fields() {
    let dir = tempfile::tempdir().unwrap();
    let ours = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/caffe.proto")).unwrap();
    // An SSD-style fork: one more parameter message and field on LayerParameter.
    let fork = ours.replacen(
        "message LayerParameter {",
        "message PriorBoxParameter { repeated float min_size = 1; }\nmessage LayerParameter {\n  optional PriorBoxParameter prior_box_param = 2203;",
        1,
    );
    let proto = dir.path().join("caffe.proto");
    std::fs::write(&proto, fork).unwrap();
    let net = dir.path().join("ssd.prototxt");
    std::fs::write(
        &net,
        "layer { name: \"p\" type: \"PriorBox\" prior_box_param { min_size: 30 } }\n",
    )
    .unwrap();
    assert!(text::read_net(&net, &Schema::builtin()).is_err());
    let fork = Schema::from_proto_file(&proto).unwrap();
    let parsed = text::read_net(&net, &fork).unwrap();
    assert_eq!(parsed.layer[0].r#type(), "PriorBox");
}
