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
