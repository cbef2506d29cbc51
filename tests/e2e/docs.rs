//! What the docs claim, held to its sources: the README's isolation figures are the
//! benchmark table's.

use std::path::Path;

fn read(relative: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    std::fs::read_to_string(root.join(relative)).unwrap_or_else(|err| panic!("{relative}: {err}"))
}

/// The p50 and p99 cells of the README table row that starts with `row`.
fn readme_row(readme: &str, row: &str) -> (String, String) {
    let line = readme
        .lines()
        .find(|line| line.starts_with(&format!("| {row} |")))
        .unwrap_or_else(|| panic!("README has no row `{row}`"));
    let cells: Vec<&str> = line.split('|').map(str::trim).collect();
    (cells[2].to_owned(), cells[3].to_owned())
}

#[test]
fn the_readmes_isolation_figures_are_the_benchmark_tables() {
    let readme = read("README.md");
    let benchmarks = read("tests/benches/BENCHMARKS.md");
    let row = benchmarks
        .lines()
        .find(|line| line.starts_with("| isolated call round trip"))
        .expect("BENCHMARKS.md has the isolated round trip");
    for (name, subject) in [
        ("isolated call", true),
        (
            "bare socketpair ping-pong between two processes (the floor)",
            false,
        ),
    ] {
        let (p50, p99) = readme_row(&readme, name);
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let cell = if subject { cells[2] } else { cells[3] };
        assert!(
            cell.contains(&p50) && cell.contains(&format!("p99 {p99}")),
            "README says {name} p50 {p50}, p99 {p99}; BENCHMARKS.md says `{cell}`"
        );
    }
}

/// The `host.toml` block of the Kubernetes example's ConfigMap: the lines under
/// `host.toml: |`, indented deeper than that key.
fn configmap_host_toml(yaml: &str) -> String {
    let mut lines = yaml
        .lines()
        .skip_while(|l| l.trim() != "host.toml: |")
        .skip(1);
    let first = lines.next().expect("host.toml has content");
    let indent = first.len() - first.trim_start().len();
    std::iter::once(first)
        .chain(
            lines.take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent),
        )
        .map(|l| l.get(indent..).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_kubernetes_examples_config_is_a_valid_config_with_a_pinned_signed_source() {
    let text = configmap_host_toml(&read("examples/kubernetes/configmap.yaml"));
    // The admin token comes from the Secret, through the environment: without it the
    // config is refused, since the admin API listens beyond loopback.
    let refused = plugin_host::Config::from_toml(&text)
        .expect_err("no token")
        .to_string();
    assert!(refused.contains("admin.token"), "{refused}");
    let token = [("PLUGIN_HOST_ADMIN_TOKEN", "from-the-secret")];
    let config = plugin_host::Config::from_toml_with_env(&text, token)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(config.host.copy_from_noexec);
    assert!(config.trust.require_signature && !config.trust.keys.is_empty());
    assert!(
        config.sources.iter().all(|s| s.oci.contains("@sha256:")),
        "{:?}",
        config.sources
    );
    for manifest in ["deployment.yaml", "deployment-init.yaml"] {
        let text = read(&format!("examples/kubernetes/{manifest}"));
        for needle in [
            "readOnlyRootFilesystem: true",
            "path: /readyz",
            "path: /healthz",
            "name: plugin-host-admin",
        ] {
            assert!(text.contains(needle), "{manifest} lacks {needle}");
        }
    }
}
