//! The net's layer list as Caffe prepares it: NetStateRule filtering (`Net::FilterNet`) and automatic Split layers
//! for blobs read by several layers (`InsertSplits`).

use std::collections::HashMap;

use caffe_proto::{LayerParameter, NetParameter, NetState, NetStateRule};

use crate::error::Error;

/// Caffe's `Net::StateMeetsRule`: the rule's phase (if set) equals the state's, the level lies within the rule's
/// bounds (where set), the state has all the rule's `stage`s and none of its `not_stage`s.
pub fn state_meets_rule(state: &NetState, rule: &NetStateRule) -> bool {
    if rule.phase.is_some() && rule.phase() != state.phase() {
        return false;
    }
    if rule.min_level.is_some() && state.level() < rule.min_level() {
        return false;
    }
    if rule.max_level.is_some() && state.level() > rule.max_level() {
        return false;
    }
    if !rule.stage.iter().all(|s| state.stage.contains(s)) {
        return false;
    }
    !rule.not_stage.iter().any(|s| state.stage.contains(s))
}

/// Caffe's `Net::FilterNet`: a layer without include rules is kept unless it meets one of its exclude rules; a
/// layer with include rules is kept only if it meets one of them. Giving both kinds is an error.
pub fn filter_layers(param: &NetParameter, state: &NetState) -> Result<Vec<LayerParameter>, Error> {
    let mut kept = Vec::new();
    for layer in &param.layer {
        if !layer.include.is_empty() && !layer.exclude.is_empty() {
            return Err(Error::IncludeAndExclude {
                layer: layer.name().to_string(),
            });
        }
        let included = if layer.include.is_empty() {
            !layer.exclude.iter().any(|rule| state_meets_rule(state, rule))
        } else {
            layer.include.iter().any(|rule| state_meets_rule(state, rule))
        };
        if included {
            kept.push(layer.clone());
        }
    }
    Ok(kept)
}

/// Name of the blob a split gives to its `split_index`-th reader: `{blob}_{layer}_{top_index}_split_{split_index}`.
pub fn split_blob_name(layer: &str, blob: &str, top_index: usize, split_index: usize) -> String {
    format!("{blob}_{layer}_{top_index}_split_{split_index}")
}

/// Name of the split layer Caffe inserts after `layer`'s top `top_index`: `{blob}_{layer}_{top_index}_split`.
pub fn split_layer_name(layer: &str, blob: &str, top_index: usize) -> String {
    format!("{blob}_{layer}_{top_index}_split")
}

/// Caffe's `InsertSplits`: every top read by more than one bottom (a top with a non-zero explicit loss weight
/// counting as one more reader) gets a `Split` layer right after its producer, and each reader reads its own split
/// output. The names are Caffe's, so blobs can be compared with Caffe's by name.
pub fn insert_splits(layers: &[LayerParameter]) -> Result<Vec<LayerParameter>, Error> {
    // (layer index, top index) of the last producer of each blob name.
    let mut last_top: HashMap<&str, (usize, usize)> = HashMap::new();
    let mut source_of_bottom: HashMap<(usize, usize), (usize, usize)> = HashMap::new();
    let mut readers: HashMap<(usize, usize), usize> = HashMap::new();
    let mut loss_weight: HashMap<(usize, usize), f32> = HashMap::new();
    for (i, layer) in layers.iter().enumerate() {
        for (j, bottom) in layer.bottom.iter().enumerate() {
            let Some(&top) = last_top.get(bottom.as_str()) else {
                return Err(Error::MissingBottom {
                    layer: layer.name().to_string(),
                    bottom: bottom.clone(),
                    index: j,
                });
            };
            source_of_bottom.insert((i, j), top);
            *readers.entry(top).or_default() += 1;
        }
        for (j, top) in layer.top.iter().enumerate() {
            last_top.insert(top.as_str(), (i, j));
        }
        for (j, &weight) in layer.loss_weight.iter().enumerate().take(layer.top.len()) {
            let top = last_top[layer.top[j].as_str()];
            loss_weight.insert(top, weight);
            if weight != 0.0 {
                *readers.entry(top).or_default() += 1;
            }
        }
    }
    let mut out = Vec::with_capacity(layers.len());
    let mut next_split: HashMap<(usize, usize), usize> = HashMap::new();
    for (i, layer) in layers.iter().enumerate() {
        let mut layer = layer.clone();
        for j in 0..layer.bottom.len() {
            let top = source_of_bottom[&(i, j)];
            if readers[&top] > 1 {
                let producer = layers[top.0].name();
                let index = next_split.entry(top).or_default();
                layer.bottom[j] = split_blob_name(producer, &layer.bottom[j], top.1, *index);
                *index += 1;
            }
        }
        let mut splits = Vec::new();
        for j in 0..layer.top.len() {
            let count = readers.get(&(i, j)).copied().unwrap_or(0);
            if count > 1 {
                let weight = loss_weight.get(&(i, j)).copied().unwrap_or(0.0);
                let blob = layer.top[j].clone();
                let name = layer.name().to_string();
                splits.push(LayerParameter {
                    name: Some(split_layer_name(&name, &blob, j)),
                    r#type: Some("Split".into()),
                    bottom: vec![blob.clone()],
                    top: (0..count).map(|k| split_blob_name(&name, &blob, j, k)).collect(),
                    // The loss moves to the split's first output, which the loss itself "reads".
                    loss_weight: if weight != 0.0 {
                        (0..count).map(|k| if k == 0 { weight } else { 0.0 }).collect()
                    } else {
                        Vec::new()
                    },
                    ..Default::default()
                });
                if weight != 0.0 {
                    layer.loss_weight.clear();
                    *next_split.entry((i, j)).or_default() += 1;
                }
            }
        }
        out.push(layer);
        out.extend(splits);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use caffe_proto::Phase;

    fn rule(edit: impl FnOnce(&mut NetStateRule)) -> NetStateRule {
        let mut r = NetStateRule::default();
        edit(&mut r);
        r
    }

    fn state(phase: Phase, level: i32, stages: &[&str]) -> NetState {
        NetState {
            phase: Some(phase as i32),
            level: Some(level),
            stage: stages.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn rules_check_phase_levels_and_stages() {
        let test = state(Phase::Test, 2, &["deploy", "fast"]);
        assert!(state_meets_rule(&test, &rule(|_| {})));
        assert!(state_meets_rule(&test, &rule(|r| r.phase = Some(Phase::Test as i32))));
        assert!(!state_meets_rule(&test, &rule(|r| r.phase = Some(Phase::Train as i32))));
        assert!(state_meets_rule(&test, &rule(|r| r.min_level = Some(2))));
        assert!(!state_meets_rule(&test, &rule(|r| r.min_level = Some(3))));
        assert!(state_meets_rule(&test, &rule(|r| r.max_level = Some(2))));
        assert!(!state_meets_rule(&test, &rule(|r| r.max_level = Some(1))));
        assert!(state_meets_rule(
            &test,
            &rule(|r| r.stage = vec!["deploy".into(), "fast".into()])
        ));
        assert!(!state_meets_rule(
            &test,
            &rule(|r| r.stage = vec!["deploy".into(), "slow".into()])
        ));
        assert!(!state_meets_rule(&test, &rule(|r| r.not_stage = vec!["fast".into()])));
        assert!(state_meets_rule(&test, &rule(|r| r.not_stage = vec!["slow".into()])));
    }

    fn layer(name: &str, bottoms: &[&str], tops: &[&str]) -> LayerParameter {
        LayerParameter {
            name: Some(name.into()),
            r#type: Some("ReLU".into()),
            bottom: bottoms.iter().map(|s| s.to_string()).collect(),
            top: tops.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn filtering_keeps_and_drops_as_caffe() {
        let mut train_only = layer("train_data", &[], &["data"]);
        train_only.include = vec![rule(|r| r.phase = Some(Phase::Train as i32))];
        let mut not_test = layer("drop", &[], &["x"]);
        not_test.exclude = vec![rule(|r| r.phase = Some(Phase::Test as i32))];
        let plain = layer("plain", &[], &["y"]);
        let net = NetParameter {
            layer: vec![train_only.clone(), not_test, plain],
            ..Default::default()
        };
        let kept = filter_layers(&net, &state(Phase::Test, 0, &[])).unwrap();
        assert_eq!(kept.iter().map(|l| l.name()).collect::<Vec<_>>(), ["plain"]);
        let kept = filter_layers(&net, &state(Phase::Train, 0, &[])).unwrap();
        assert_eq!(
            kept.iter().map(|l| l.name()).collect::<Vec<_>>(),
            ["train_data", "drop", "plain"]
        );
        let mut both = train_only;
        both.exclude = vec![rule(|_| {})];
        let net = NetParameter {
            layer: vec![both],
            ..Default::default()
        };
        assert!(matches!(
            filter_layers(&net, &state(Phase::Test, 0, &[])),
            Err(Error::IncludeAndExclude { .. })
        ));
    }

    #[test]
    fn splits_follow_caffe_naming_including_after_in_place_layers() {
        // conv3 -> PReLU3 (in place) -> read by two layers: the split is named after PReLU3, the last producer.
        let layers = vec![
            layer("input", &[], &["data"]),
            layer("conv3", &["data"], &["conv3"]),
            layer("PReLU3", &["conv3"], &["conv3"]),
            layer("conv4-1", &["conv3"], &["conv4-1"]),
            layer("conv4-2", &["conv3"], &["conv4-2"]),
        ];
        let out = insert_splits(&layers).unwrap();
        let names: Vec<_> = out.iter().map(|l| l.name()).collect();
        assert_eq!(
            names,
            ["input", "conv3", "PReLU3", "conv3_PReLU3_0_split", "conv4-1", "conv4-2"]
        );
        assert_eq!(out[3].top, ["conv3_PReLU3_0_split_0", "conv3_PReLU3_0_split_1"]);
        assert_eq!(out[4].bottom, ["conv3_PReLU3_0_split_0"]);
        assert_eq!(out[5].bottom, ["conv3_PReLU3_0_split_1"]);
        // The in-place layer itself reads conv3 from conv3's producer, which has a single reader: no split there.
        assert_eq!(out[2].bottom, ["conv3"]);
    }

    #[test]
    fn an_explicit_loss_weight_counts_as_a_reader() {
        let mut loss = layer("loss", &["x"], &["loss"]);
        loss.loss_weight = vec![0.5];
        let mut reuse = layer("reuse", &["loss"], &["y"]);
        reuse.loss_weight = vec![];
        let out = insert_splits(&[layer("src", &[], &["x"]), loss, reuse]).unwrap();
        let split = &out[2];
        assert_eq!(split.name(), "loss_loss_0_split");
        assert_eq!(split.loss_weight, [0.5, 0.0]);
        assert!(out[1].loss_weight.is_empty());
        assert_eq!(out[3].bottom, ["loss_loss_0_split_1"]);
    }

    #[test]
    fn a_missing_bottom_names_layer_and_blob() {
        let err = insert_splits(&[layer("a", &[], &["x"]), layer("b", &["x", "nope"], &["y"])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "layer 'b': unknown bottom blob 'nope' (bottom index 1); no earlier layer produces it"
        );
    }
}
