//! The shape of the workspace, checked: the host library stands alone (no CLI or HTTP
//! dependencies, the embedding example builds on it alone) and its modules import each
//! other without circles.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

/// The crates `package` depends on (normal dependencies, transitively), by name.
fn dependencies_of(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo tree");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_host_library_and_the_embedding_example_pull_in_no_cli_or_http_client() {
    for package in ["host", "embedding-example"] {
        let deps = dependencies_of(package);
        assert!(deps.contains("tokio"), "{package}: {deps:?}");
        for unwanted in [
            "clap",
            "ureq",
            "axum",
            "plugin-host-admin",
            "plugin-host-cli",
        ] {
            assert!(!deps.contains(unwanted), "{package} depends on {unwanted}");
        }
    }
    assert!(!dependencies_of("host").contains("anyhow"));
}

/// The top-level modules each module's files name through `crate::`.
fn module_imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src.to_owned()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("source directory") {
                files.push(entry.expect("entry").path());
            }
            continue;
        }
        let relative = path.strip_prefix(src).expect("under src");
        let module = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|name| name.trim_end_matches(".rs").to_owned())
            .expect("a module");
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source file");
        let used = graph.entry(module.clone()).or_default();
        for target in crate_paths(&text) {
            if target != module {
                used.insert(target);
            }
        }
    }
    graph
}

/// The first segment of every `crate::` path in `text`, `use crate::{a, b::c}` included.
fn crate_paths(text: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = text[at + "crate::".len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push(ident(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            found.push(ident(item.trim()));
        } else {
            found.push(ident(rest));
        }
    }
    found.retain(|name| !name.is_empty() && name != "self");
    found
}

/// A cycle in `graph`, if any, as the path round it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_host_library_modules_import_each_other_without_circles() {
    let graph = module_imports(&workspace_root().join("host/src"));
    assert!(graph.len() >= 10, "modules found: {graph:?}");
    assert!(
        graph["coordinator"].contains("context"),
        "the reader sees imports: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("module circle: {}\n{graph:#?}", cycle.join(" -> "));
    }
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        find_cycle(&graph).map(|c| c.join(" -> ")),
        Some("a -> b -> c -> a".to_owned())
    );
    assert_eq!(
        crate_paths("use crate::{a::B, c::{d, e}, f};\nlet x = crate::g::h();"),
        ["a", "c", "f", "g"]
    );
}
