//! `docs/caffez.md` is precise enough to write a decoder from: `tests/python_decoder.py`, written from that
//! page alone (Python's standard library only), gives back quantized models byte for byte and refuses damaged
//! files with one line, as the Rust reader does. The page's worked example is what the writer writes.

use caffemodel::ModelFile;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `path` with the weight blobs of `only` (every prunable layer when `None`) pruned (the smallest `1 - keep` of
/// the magnitudes set to +0.0) and shared to `bits` bits with the quantize crate, as in `tests/roundtrip.rs`.
fn quantized(path: &Path, keep: f64, bits: u32, only: Option<&str>) -> ModelFile {
    let model = ModelFile::open(path).unwrap();
    let mut net = model.net().unwrap();
    let targets: Vec<(usize, Vec<f32>)> = net
        .layers()
        .iter()
        .filter(|l| caffemodel::is_prunable_type(&l.modern_type_name()) && !l.blobs().is_empty())
        .filter(|l| only.is_none_or(|name| l.name() == name))
        .map(|l| (l.index, l.blobs()[0].data().to_vec_f32()))
        .collect();
    assert!(!targets.is_empty());
    for (index, values) in targets {
        let shared = quantize::synthetic::prune_and_share(&values, keep, bits);
        net.set_blob_data(index, 0, shared).unwrap();
    }
    ModelFile::from_bytes(path, net.to_bytes()).unwrap()
}

fn lenet() -> PathBuf {
    testkit::repo_root().join("testdata/lenet.caffemodel")
}

/// The worked example's model: a net `t` with one InnerProduct layer `ip` whose 2 x 4 weights are
/// `0, 0.5, 0, 0, -0.25, 0, 0.5, 0`, as protobuf bytes.
fn tiny_model() -> Vec<u8> {
    let values: [f32; 8] = [0.0, 0.5, 0.0, 0.0, -0.25, 0.0, 0.5, 0.0];
    // BlobProto: shape (field 7) { dim (field 1, packed): 2, 4 }, data (field 5, packed).
    let mut blob = vec![0x3a, 0x04, 0x0a, 0x02, 0x02, 0x04, 0x2a, 0x20];
    for v in values {
        blob.extend_from_slice(&v.to_le_bytes());
    }
    // LayerParameter: name (1), type (2), blobs (7).
    let mut layer = vec![0x0a, 0x02, b'i', b'p', 0x12, 0x0c];
    layer.extend_from_slice(b"InnerProduct");
    layer.extend_from_slice(&[0x3a, blob.len() as u8]);
    layer.extend_from_slice(&blob);
    // NetParameter: name (1), layer (100).
    let mut net = vec![0x0a, 0x01, b't', 0xa2, 0x06, layer.len() as u8];
    net.extend_from_slice(&layer);
    net
}

/// The bytes of the annotated listing after `<!-- tiny.caffez -->` in docs/caffez.md, each row's offset checked.
fn worked_example_in_the_doc() -> Vec<u8> {
    let doc = std::fs::read_to_string(testkit::repo_root().join("docs/caffez.md")).unwrap();
    let block = doc
        .split_once("<!-- tiny.caffez -->\n```\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .expect("docs/caffez.md has the tiny.caffez listing")
        .0;
    let mut bytes = Vec::new();
    for line in block.lines() {
        let columns: Vec<&str> = line.split('|').collect();
        let Ok(offset) = usize::from_str_radix(columns[0].trim(), 16) else {
            continue;
        };
        assert_eq!(
            offset,
            bytes.len(),
            "docs/caffez.md: the row `{line}` has the wrong offset"
        );
        for byte in columns[1].split_whitespace() {
            bytes.push(u8::from_str_radix(byte, 16).unwrap());
        }
    }
    bytes
}

/// A folder for the test's files, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("caffez-python-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn python_available() -> bool {
    testkit::python_has(&["struct", "zlib"])
}

/// Runs the Python decoder over every file at once (the machine's cores in parallel): per file, the model it
/// wrote, or its one-line refusal. A refusal must be exit code 1, one line on stderr, no output file.
fn python_decode(dir: &TempDir, files: &[(&str, &[u8])]) -> Vec<Result<Vec<u8>, String>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python_decoder.py");
    let runs: Vec<_> = files
        .iter()
        .map(|(name, bytes)| {
            let input = dir.0.join(format!("{name}.caffez"));
            let output = dir.0.join(format!("{name}.caffemodel"));
            std::fs::write(&input, bytes).unwrap();
            let _ = std::fs::remove_file(&output);
            let child = Command::new("python3")
                .arg(&script)
                .arg(&input)
                .arg(&output)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("python3 runs");
            (name, output, child)
        })
        .collect();
    runs.into_iter()
        .map(|(name, output, child)| {
            let result = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
            if result.status.success() {
                assert!(stderr.is_empty(), "{name}: {stderr}");
                return Ok(std::fs::read(&output).unwrap());
            }
            assert_eq!(result.status.code(), Some(1), "{name}: {stderr}");
            let message = stderr.trim_end_matches('\n');
            assert!(
                !message.is_empty() && !message.contains('\n') && !message.contains("Traceback"),
                "{name}: not a one-line refusal:\n{stderr}"
            );
            assert!(
                !output.exists(),
                "{name}: refused, yet {} was written",
                output.display()
            );
            Err(message.to_string())
        })
        .collect()
}

#[test]
fn the_worked_example_is_what_compress_writes() {
    let model = ModelFile::from_bytes("tiny", tiny_model()).unwrap();
    let compressed = caffez::compress(&model).unwrap();
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
    assert_eq!(
        hex(&worked_example_in_the_doc()),
        hex(&compressed.bytes),
        "docs/caffez.md's worked example is not what caffez::compress writes"
    );
    assert!(caffez::decompress(&compressed.bytes).unwrap() == model.bytes());
    if !python_available() {
        return;
    }
    let dir = TempDir::new("tiny");
    let back = python_decode(&dir, &[("tiny", &compressed.bytes)]);
    assert_eq!(back[0].as_deref(), Ok(model.bytes()));
}

#[test]
fn quantized_lenets_come_back_byte_for_byte_from_the_python_decoder() {
    if !python_available() {
        return;
    }
    let models = [
        ("keep0.05-5bits", quantized(&lenet(), 0.05, 5, None)),
        ("keep0.3-8bits", quantized(&lenet(), 0.3, 8, None)),
        ("keep0.01-1bit", quantized(&lenet(), 0.01, 1, None)),
        // Only conv2 coded: the other weight blobs stay in the (deflated) skeleton, dense.
        ("conv2-only-keep0.1-6bits", quantized(&lenet(), 0.1, 6, Some("conv2"))),
    ];
    let files: Vec<(&str, Vec<u8>)> = models
        .iter()
        .map(|(name, model)| {
            let compressed = caffez::compress(model).unwrap();
            let coded = compressed.blobs.iter().filter(|b| b.bits.is_some()).count();
            assert_eq!(coded, if name.starts_with("conv2-only") { 1 } else { 4 }, "{name}");
            (*name, compressed.bytes)
        })
        .collect();
    let dir = TempDir::new("lenet");
    let started = std::time::Instant::now();
    let inputs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, &b[..])).collect();
    let results = python_decode(&dir, &inputs);
    eprintln!(
        "python decoder: {} files, {} bytes of model, {:.1} s",
        files.len(),
        models.iter().map(|(_, m)| m.bytes().len()).sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    for ((name, model), result) in models.iter().zip(results) {
        match result {
            Ok(back) => assert!(back == model.bytes(), "{name}: the Python decoder gave other bytes"),
            Err(message) => panic!("{name}: the Python decoder refused a valid file: {message}"),
        }
    }
}

/// The file's sections, framed again after an edit: kind and body each, CRCs recomputed.
fn reframe(header: &[u8], sections: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = header.to_vec();
    for (kind, body) in sections {
        let start = out.len();
        out.push(*kind);
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(body);
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }
    out
}

/// The kind and body of every section.
fn sections(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut at = 32;
    let mut out = Vec::new();
    while at < bytes.len() {
        let len = u64::from_le_bytes(bytes[at + 1..at + 9].try_into().unwrap()) as usize;
        out.push((bytes[at], bytes[at + 9..at + 9 + len].to_vec()));
        at += 13 + len;
    }
    out
}

/// Where, in its section's body, the stream of the first chunk of blob section `section` starts, and its length.
fn stream_in_body(bytes: &[u8], section: usize) -> (usize, usize) {
    let file = caffez::CaffezFile::parse(bytes).unwrap();
    let blob = file.blobs.iter().find(|b| b.section == section).unwrap();
    let chunk = &blob.chunks[0];
    ((chunk.offset - blob.offset - 9) as usize, chunk.stream.len())
}

/// `bytes` with the stream of blob section `section`'s first chunk replaced by `edit(stream)`: the stream
/// length (which must keep its varint width), the body length and the section CRC follow.
fn edit_stream(bytes: &[u8], section: usize, edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let (at, len) = stream_in_body(bytes, section);
    let mut all = sections(bytes);
    let body = &mut all[section].1;
    let mut stream = body[at..at + len].to_vec();
    edit(&mut stream);
    let width = entropy::varint::len(len as u64) as usize;
    let mut varint = Vec::new();
    entropy::varint::write(&mut varint, stream.len() as u64);
    assert_eq!(varint.len(), width, "the edit keeps the stream length's varint width");
    body.splice(at - width..at + len, varint.into_iter().chain(stream));
    reframe(&bytes[..32], &all)
}

/// `bytes` with section `section`'s body edited and its CRC recomputed.
fn edit_body(bytes: &[u8], section: usize, edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut all = sections(bytes);
    edit(&mut all[section].1);
    reframe(&bytes[..32], &all)
}

#[test]
fn damaged_files_are_refused_in_one_line_by_both_decoders() {
    if !python_available() {
        return;
    }
    let tiny = caffez::compress(&ModelFile::from_bytes("tiny", tiny_model()).unwrap())
        .unwrap()
        .bytes;
    let real = caffez::compress(&quantized(&lenet(), 0.05, 5, None)).unwrap().bytes;
    // The largest blob (ip1, 400,000 weights): the section with the longest body.
    let parsed = caffez::CaffezFile::parse(&real).unwrap();
    let ip1 = parsed.blobs.iter().max_by_key(|b| b.count).unwrap().section;
    let (ip1_stream, ip1_len) = stream_in_body(&real, ip1);
    assert_eq!(parsed.skeleton.method, caffez::format::Method::Deflate);

    let flip = |bytes: &[u8], at: usize| {
        let mut out = bytes.to_vec();
        out[at] ^= 0x10;
        out
    };
    let mut header_crc_fixed = real.clone();
    header_crc_fixed[24] ^= 1;
    let crc = crc32fast::hash(&header_crc_fixed[..28]);
    header_crc_fixed[28..32].copy_from_slice(&crc.to_le_bytes());
    let ip1_at = 32 + sections(&real)[..ip1].iter().map(|(_, b)| 13 + b.len()).sum::<usize>();

    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("not-caffez", tiny_model()),
        ("truncated-header", tiny[..31].to_vec()),
        ("truncated-section", tiny[..tiny.len() - 1].to_vec()),
        ("byte-after-the-sections", [&tiny[..], &[0]].concat()),
        ("header-byte-flipped", flip(&real, 16)),
        (
            "stream-byte-flipped",
            flip(&real, ip1_at + 9 + ip1_stream + ip1_len / 2),
        ),
        (
            "stream-byte-flipped-crc-fixed",
            edit_stream(&real, ip1, |s| s[ip1_len / 2] ^= 0x10),
        ),
        (
            "last-stream-byte-flipped-crc-fixed",
            edit_stream(&tiny, 1, |s| *s.last_mut().unwrap() ^= 1),
        ),
        ("model-crc-wrong", header_crc_fixed),
        ("stream-first-byte-not-0", edit_stream(&tiny, 1, |s| s[0] = 1)),
        ("stream-one-byte-longer", edit_stream(&tiny, 1, |s| s.push(0))),
        (
            "stream-one-byte-shorter",
            edit_stream(&tiny, 1, |s| {
                s.pop();
            }),
        ),
        ("stream-empty", edit_stream(&tiny, 1, |s| s.clear())),
        // Body bytes of the tiny blob section: 4 is the insert offset, 6 the code width, 8..13 and 13..18 the
        // codebook's two varints.
        ("code-width-9", edit_body(&tiny, 1, |b| b[6] = 9)),
        (
            "codebook-key-past-the-last-float",
            edit_body(&tiny, 1, |b| b[13..18].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f])),
        ),
        (
            "codebook-holds-plus-zero",
            edit_body(&tiny, 1, |b| b[8..13].copy_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x08])),
        ),
        ("insert-offset-past-the-skeleton", edit_body(&tiny, 1, |b| b[4] = 35)),
        ("bytes-after-the-last-chunk", edit_body(&tiny, 1, |b| b.push(0))),
        ("skeleton-length-wrong", edit_body(&tiny, 0, |b| b[1] = 33)),
        ("first-section-a-blob", {
            let all = sections(&tiny);
            reframe(&tiny[..32], &[all[1].clone(), all[0].clone()])
        }),
    ];
    // The edits hit the fields they mean to.
    let tiny_blob = &sections(&tiny)[1].1;
    assert_eq!((tiny_blob[4], tiny_blob[6], tiny_blob[7]), (34, 2, 2));
    assert_eq!(
        tiny_blob[8..18],
        [0xff, 0xff, 0xff, 0x8b, 0x04, 0x80, 0x80, 0x80, 0xec, 0x07]
    );
    assert_eq!(sections(&tiny)[0].1[..2], [0, 34]);

    for (name, bytes) in &damaged {
        assert!(caffez::decompress(bytes).is_err(), "{name}: the Rust reader accepts it");
    }
    // Bytes after the skeleton's deflate stream: forbidden by docs/caffez.md; the Rust reader ignores them
    // (miniz_oxide stops at the final block), the Python one refuses them.
    let deflate_tail = edit_body(&real, 0, |b| b.push(0));
    let mut inputs: Vec<(&str, &[u8])> = damaged.iter().map(|(n, b)| (*n, &b[..])).collect();
    inputs.push(("bytes-after-the-deflate-stream", &deflate_tail));
    let dir = TempDir::new("damaged");
    for ((name, _), result) in inputs.iter().zip(python_decode(&dir, &inputs)) {
        match result {
            Ok(_) => panic!("{name}: the Python decoder accepts a damaged file"),
            Err(message) => eprintln!("{name}: {message}"),
        }
    }
}
