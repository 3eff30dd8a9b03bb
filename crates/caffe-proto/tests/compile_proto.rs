//! Run-time compilation of a (forked) caffe.proto.

use std::path::{Path, PathBuf};

use caffe_proto::{compile_proto, ProtoError};

fn repo_proto() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto/caffe.proto")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn our_own_schema_compiles_to_the_built_in_pool() {
    let pool = compile_proto(&repo_proto()).unwrap();
    let built_in = caffe_proto::descriptor_pool();
    let names = |p: &prost_reflect::DescriptorPool| {
        p.all_messages()
            .map(|m| (m.full_name().to_owned(), m.fields().count()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&pool), names(built_in));
}

#[test]
fn a_fork_with_an_extra_layer_parameter_and_an_import() {
    let dir = tempfile::tempdir().unwrap();
    // A fork that moved its own parameters to an imported file, as forks do.
    write(
        dir.path(),
        "extra.proto",
        "syntax = \"proto2\";\npackage caffe;\nmessage UpsampleParameter { optional uint32 scale = 1 [default = 2]; }\n",
    );
    let main = write(
        dir.path(),
        "caffe.proto",
        "syntax = \"proto2\";\npackage caffe;\nimport \"extra.proto\";\n\
         message NetParameter { optional string name = 1; repeated LayerParameter layer = 100; }\n\
         message LayerParameter { optional string name = 1; optional UpsampleParameter upsample_param = 163; }\n",
    );
    let pool = compile_proto(&main).unwrap();
    let layer = pool.get_message_by_name("caffe.LayerParameter").unwrap();
    assert_eq!(layer.get_field(163).unwrap().name(), "upsample_param");
}

#[test]
fn a_syntax_error_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    // Line 3, column 47: the value "abc" where a field number belongs.
    let path = write(
        dir.path(),
        "caffe.proto",
        "syntax = \"proto2\";\npackage caffe;\nmessage NetParameter { optional string name = abc; }\n",
    );
    let err = compile_proto(&path).unwrap_err();
    match &err {
        ProtoError::Compile { file, line, column, .. } => {
            assert_eq!(file, &path);
            assert_eq!((*line, *column), (Some(3), Some(47)));
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = err.to_string();
    assert!(text.starts_with(&format!("{}:3:47: ", path.display())), "{text}");
}

#[test]
fn an_undefined_type_is_located_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "caffe.proto",
        "syntax = \"proto2\";\npackage caffe;\nmessage NetParameter {\n  optional Missing m = 1;\n}\n",
    );
    match compile_proto(&path).unwrap_err() {
        ProtoError::Compile {
            line, column, message, ..
        } => {
            assert_eq!((line, column), (Some(4), Some(12)), "{message}");
            assert!(message.contains("Missing"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_schema_without_net_parameter_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "other.proto",
        "syntax = \"proto2\";\npackage notcaffe;\nmessage NetParameter { optional string name = 1; }\n",
    );
    let err = compile_proto(&path).unwrap_err();
    assert!(
        matches!(&err, ProtoError::MissingNetParameter { file } if file == &path),
        "{err:?}"
    );
    assert!(err.to_string().contains("caffe.NetParameter"));
}

#[test]
fn a_missing_file_or_a_folder_is_a_read_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.proto");
    let err = compile_proto(&path).unwrap_err();
    assert!(
        matches!(&err, ProtoError::Read { file, .. } if file == &path),
        "{err:?}"
    );
    assert!(err.to_string().contains("absent.proto"), "{err}");
    let err = compile_proto(dir.path()).unwrap_err();
    assert!(matches!(&err, ProtoError::Read { .. }), "{err:?}");
}

#[test]
fn a_missing_import_is_located_at_the_import() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "caffe.proto",
        "syntax = \"proto2\";\npackage caffe;\nimport \"nope.proto\";\nmessage NetParameter {}\n",
    );
    let err = compile_proto(&path).unwrap_err();
    assert!(
        matches!(
            &err,
            ProtoError::Compile {
                line: Some(3),
                column: Some(1),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("nope.proto"), "{err}");
}
