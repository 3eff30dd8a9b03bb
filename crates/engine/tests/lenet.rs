//! LeNet against real Caffe: ip2 of the first 100 MNIST test images, the TEST net's per-batch loss and accuracy
//! (Data layer fed by the caller, SoftmaxWithLoss, Accuracy), and every prediction over the 10,000 test images.

mod common;

use std::path::Path;

use common::{fixtures, mnist_images, read_idx_gz, read_npy, read_prototxt, relative_error, weights};
use engine::{Net, NetOptions};
use serde_json::Value;

const BATCH: usize = 100;
const IMAGE: usize = 28 * 28;

/// Row-wise argmax of a (rows x classes) matrix.
fn argmax_rows(values: &[f32], classes: usize) -> Vec<usize> {
    values
        .chunks(classes)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |best, (i, &v)| if v > best.1 { (i, v) } else { best },
                )
                .0
        })
        .collect()
}

fn deploy_net(dir: &Path, model: &str, weights_file: &str) -> Net {
    let param = read_prototxt(&dir.join("golden/lenet").join(model).join("lenet_deploy_b100.prototxt"));
    let mut net = Net::new(&param, &NetOptions::test()).unwrap();
    net.copy_from(&weights(&dir.join("models").join(weights_file))).unwrap();
    net
}

#[test]
fn ip2_of_the_first_100_test_images_matches_caffe() {
    let Some(dir) = fixtures() else { return };
    let (_, images) = mnist_images(&dir.join("mnist/t10k-images-idx3-ubyte.gz"));
    for (model, weights_file) in [
        ("lenet_mnist_v2", "lenet_mnist_v2/lenet_iter_10000.caffemodel"),
        // V1 weights with legacy 4-D shapes (ip1 stored as 1x1x500x800).
        ("lenet_mnist_v1_2014", "lenet_mnist_v1_2014/lenet_iter_10000"),
    ] {
        let mut net = deploy_net(&dir, model, weights_file);
        net.set_input("data", &[BATCH, 1, 28, 28], &images[..BATCH * IMAGE])
            .unwrap();
        net.forward().unwrap();
        let golden = read_npy(&dir.join("golden/lenet").join(model).join("ip2_first100.npy"));
        let ip2 = net.blob("ip2").unwrap();
        assert_eq!(ip2.shape(), golden.shape.as_slice());
        let error = relative_error(ip2.data(), &golden.data);
        eprintln!("{model}: ip2 relative error {error:.3e}");
        assert!(error <= 1e-4, "{model}: ip2 relative error {error}");
    }
}

#[test]
fn test_phase_loss_and_accuracy_of_the_first_five_batches_match_caffe() {
    let Some(dir) = fixtures() else { return };
    for (model, images_file, labels_file) in [
        (
            "lenet_mnist_v2",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ),
        (
            "lenet_mnist_v1_2014",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ),
        (
            "lenet_mnist_v2_on_train10k",
            "train-10k-images-idx3-ubyte.gz",
            "train-10k-labels-idx1-ubyte.gz",
        ),
    ] {
        let case = dir.join("golden/lenet").join(model);
        let result: Value = serde_json::from_str(&std::fs::read_to_string(case.join("result.json")).unwrap()).unwrap();
        let param = read_prototxt(&case.join("lenet_test.prototxt"));
        // The Data layer knows its batch (100) but not C, H, W: the caller gives them.
        let options = NetOptions::test().with_input_shape("data", &[BATCH, 1, 28, 28]);
        let mut net = Net::new(&param, &options).unwrap();
        let inputs: Vec<_> = net
            .inputs()
            .iter()
            .map(|i| (i.blob.as_str(), i.declared.clone()))
            .collect();
        assert_eq!(
            inputs,
            [
                ("data", Some(vec![Some(BATCH), None, None, None])),
                ("label", Some(vec![Some(BATCH)]))
            ]
        );
        net.copy_from(&weights(&dir.join("golden").join(result["weights"].as_str().unwrap())))
            .unwrap();

        let (_, images) = mnist_images(&dir.join("mnist").join(images_file));
        let (_, labels) = read_idx_gz(&dir.join("mnist").join(labels_file));
        let golden_loss = result["pycaffe"]["batch_loss_first5"].as_array().unwrap();
        let golden_accuracy = result["pycaffe"]["batch_accuracy_first5"].as_array().unwrap();
        for batch in 0..5 {
            let range = batch * BATCH..(batch + 1) * BATCH;
            net.set_input(
                "data",
                &[BATCH, 1, 28, 28],
                &images[range.start * IMAGE..range.end * IMAGE],
            )
            .unwrap();
            let label: Vec<f32> = labels[range].iter().map(|&l| l as f32).collect();
            net.set_input("label", &[BATCH], &label).unwrap();
            let total = net.forward().unwrap();
            let loss = net.blob("loss").unwrap().data()[0] as f64;
            let accuracy = net.blob("accuracy").unwrap().data()[0] as f64;
            let (want_loss, want_accuracy) = (
                golden_loss[batch].as_f64().unwrap(),
                golden_accuracy[batch].as_f64().unwrap(),
            );
            eprintln!(
                "{model} batch {batch}: loss {loss} (Caffe {want_loss}), accuracy {accuracy} (Caffe {want_accuracy})"
            );
            assert!(
                (loss - want_loss).abs() <= 1e-4 * want_loss.abs().max(1e-3),
                "{model} batch {batch}: loss {loss} vs {want_loss}"
            );
            assert_eq!(accuracy as f32, want_accuracy as f32, "{model} batch {batch}: accuracy");
            assert_eq!(total as f64, loss, "only the loss layer carries a loss weight");
        }
    }
}

#[test]
fn every_prediction_over_the_10000_test_images_matches_caffe() {
    let Some(dir) = fixtures() else { return };
    let (count, images) = mnist_images(&dir.join("mnist/t10k-images-idx3-ubyte.gz"));
    assert_eq!(count, 10_000);
    let mut net = deploy_net(&dir, "lenet_mnist_v2", "lenet_mnist_v2/lenet_iter_10000.caffemodel");
    let golden = read_npy(&dir.join("golden/lenet/lenet_mnist_v2/pred.npy"));
    let (_, labels) = read_idx_gz(&dir.join("mnist/t10k-labels-idx1-ubyte.gz"));
    let mut predictions = Vec::with_capacity(count);
    for batch in images.chunks(BATCH * IMAGE) {
        net.set_input("data", &[BATCH, 1, 28, 28], batch).unwrap();
        net.forward().unwrap();
        predictions.extend(argmax_rows(net.blob("ip2").unwrap().data(), 10));
    }
    let differing: Vec<usize> = (0..count)
        .filter(|&i| predictions[i] as f32 != golden.data[i])
        .collect();
    assert!(
        differing.is_empty(),
        "predictions differ from Caffe's at images {differing:?}"
    );
    let correct = (0..count).filter(|&i| predictions[i] == labels[i] as usize).count();
    // Caffe's `caffe test` printed accuracy = 0.9914.
    assert_eq!(correct, 9914);
}
