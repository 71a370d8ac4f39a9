//! ARCHITECTURE.md's code map stays the map of the tree: every module of `shared/src` is named
//! in it (as `` `path/to/module.rs` ``), and every `shared/src` module it names exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn modules(dir: &Path, root: &Path, into: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        if path.is_dir() {
            modules(&path, root, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            into.insert(rel);
        }
    }
}

/// The module paths the code map lists: each bullet that starts with a backquoted `….rs`.
fn mapped(architecture: &str) -> BTreeSet<String> {
    let map = architecture
        .split("## Code map")
        .nth(1)
        .expect("ARCHITECTURE.md has a \"Code map\" section");
    let map = map.split("### Outside `shared/`").next().unwrap();
    map.lines()
        .filter_map(|l| l.strip_prefix("- `"))
        .filter_map(|l| l.split('`').next())
        .filter(|p| p.ends_with(".rs"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_code_map_names_every_module_and_only_modules_that_exist() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = crate_dir.join("src");
    let mut tree = BTreeSet::new();
    modules(&src, &src, &mut tree);
    let text = std::fs::read_to_string(crate_dir.join("../ARCHITECTURE.md")).unwrap();
    let map = mapped(&text);
    assert!(tree.len() > 40, "the tree was read: {tree:?}");
    let unmapped: Vec<_> = tree.difference(&map).collect();
    let stale: Vec<_> = map.difference(&tree).collect();
    assert!(
        unmapped.is_empty(),
        "modules missing from ARCHITECTURE.md's code map: {unmapped:?}"
    );
    assert!(
        stale.is_empty(),
        "ARCHITECTURE.md's code map names modules that do not exist: {stale:?}"
    );
}
