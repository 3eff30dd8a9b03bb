//! What the engine's benches share.

use engine::Net;

/// Prunes LeNet at the tutorial's rates: conv1/conv2/ip1/ip2 keep 30/10/1/20% of their weights, by magnitude.
pub fn prune_at_tutorial_rates(net: &mut Net) {
    for (layer, keep) in [("conv1", 0.3), ("conv2", 0.1), ("ip1", 0.01), ("ip2", 0.2)] {
        let weights = net.params_mut(layer).unwrap()[0].data_mut();
        let mut magnitudes: Vec<f32> = weights.iter().map(|w| w.abs()).collect();
        magnitudes.sort_by(|a, b| b.total_cmp(a));
        let cut = magnitudes[((weights.len() - 1) as f64 * keep) as usize];
        weights.iter_mut().filter(|w| w.abs() <= cut).for_each(|w| *w = 0.0);
    }
}
