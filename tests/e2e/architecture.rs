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

/// The crates `package` links (normal dependencies, transitively, without proc-macros,
/// which run at build time and link nothing in), by name.
fn dependencies_of(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal,no-proc-macro",
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
    paths_after(text, "crate::")
}

/// The first segment of every path that starts with `prefix` in the code of `text` (not
/// its comments: a doc link is no import).
fn paths_after(text: &str, prefix: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let text = code.as_str();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    for (at, _) in text.match_indices(prefix) {
        let rest = text[at + prefix.len()..].trim_start();
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

/// In every folder module under `src`, which sibling files each file names through
/// `super::` (the folder's `mod.rs`, which declares and re-exports them, aside).
fn file_imports(src: &Path) -> Vec<(PathBuf, BTreeMap<String, BTreeSet<String>>)> {
    let mut folders = Vec::new();
    let mut dirs = vec![src.to_owned()];
    while let Some(dir) = dirs.pop() {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("source directory")
            .map(|entry| entry.expect("entry").path())
            .collect();
        let siblings: BTreeSet<String> = entries
            .iter()
            .filter_map(|path| {
                let name = path.file_stem()?.to_str()?.to_owned();
                (name != "mod" && name != "tests").then_some(name)
            })
            .collect();
        for path in entries {
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let Some(name) = path.file_stem().and_then(|n| n.to_str()) else {
                continue;
            };
            if !siblings.contains(name) {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source file");
            let used: BTreeSet<String> = paths_after(&text, "super::")
                .into_iter()
                .filter(|target| target != name && siblings.contains(target))
                .collect();
            graph.insert(name.to_owned(), used);
        }
        folders.push((dir, graph));
    }
    folders
}

#[test]
fn no_file_imports_a_file_that_imports_it_back_in_any_crate() {
    let root = workspace_root();
    for crate_src in [
        "host/src",
        "host/admin/src",
        "host/cli/src",
        "plugin-api/src",
    ] {
        let modules = module_imports(&root.join(crate_src));
        if let Some(cycle) = find_cycle(&modules) {
            panic!("{crate_src}: module circle: {}", cycle.join(" -> "));
        }
        for (folder, files) in file_imports(&root.join(crate_src)) {
            if let Some(cycle) = find_cycle(&files) {
                panic!("{}: file circle: {}", folder.display(), cycle.join(" -> "));
            }
        }
    }
    let isolation = file_imports(&root.join("host/src"))
        .into_iter()
        .find(|(folder, _)| folder.ends_with("isolation"))
        .expect("the isolation folder");
    assert!(
        isolation.1["monitor"].contains("process"),
        "the reader sees sibling imports: {:?}",
        isolation.1
    );
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
    assert_eq!(
        paths_after("use super::{a::B, c};\nsuper::d::e();", "super::"),
        ["a", "c", "d"]
    );
}

/// The error type of each `Result<T, E>` written in `text` (generic arguments followed
/// to their matching `>`), before its tests.
fn result_errors(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut errors = Vec::new();
    for (start, _) in code.match_indices("Result<") {
        let (mut depth, mut last_comma) = (0usize, None);
        for (at, c) in code[start + "Result".len()..].char_indices() {
            match c {
                '<' => depth += 1,
                ',' if depth == 1 => last_comma = Some(at),
                '>' => {
                    depth -= 1;
                    if depth == 0 {
                        let args = &code[start + "Result".len()..][..at];
                        if let Some(comma) = last_comma {
                            errors.push(args[comma + 1..].split_whitespace().collect());
                        }
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    errors
}

/// Issue 28: failures in the library crates are typed, never `Result<_, String>` (the
/// binary's argument parsers, which clap makes return a message, aside).
#[test]
fn the_library_crates_return_no_string_errors() {
    let mut found = Vec::new();
    for dir in [
        "host/src",
        "host/oci/src",
        "host/admin/src",
        "plugin-api/src",
    ] {
        let mut dirs = vec![workspace_root().join(dir)];
        while let Some(dir) = dirs.pop() {
            for path in std::fs::read_dir(&dir)
                .expect("source directory")
                .map(|e| e.expect("entry").path())
            {
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && path.file_stem().is_some_and(|s| s != "tests")
                {
                    let text = std::fs::read_to_string(&path).expect("source");
                    if result_errors(&text).iter().any(|e| e == "String") {
                        found.push(path.display().to_string());
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "Result<_, String> in: {found:#?}");
    assert_eq!(
        result_errors("fn a() -> Result<Vec<u8>, String> {}\nfn b() -> Result<(), Error> {}"),
        ["String", "Error"]
    );
    assert_eq!(
        result_errors("Result<Query<HashMap<String, String>>, QueryRejection>"),
        ["QueryRejection"]
    );
}
