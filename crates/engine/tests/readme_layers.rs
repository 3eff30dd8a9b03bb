//! The README's list of layer types is the engine's table, no more and no less.

#[test]
fn the_readme_lists_every_layer_type_the_engine_builds() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme
        .find("The engine runs these")
        .expect("the README's layer-type paragraph");
    let paragraph = &readme[start..start + readme[start..].find("\n\n").unwrap_or(readme.len() - start)];
    let after_colon = &paragraph[paragraph.find("):").expect("list after the colon")..];
    let listed: Vec<&str> = after_colon.split('`').skip(1).step_by(2).collect();
    assert_eq!(
        listed,
        engine::LAYER_TYPES,
        "README's list differs from engine::LAYER_TYPES"
    );
    assert!(paragraph.contains(&format!("these {} compute", engine::LAYER_TYPES.len())));
}
