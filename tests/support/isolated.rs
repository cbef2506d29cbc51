//! Running one test in a process of its own, for what it measures about its process.

use std::process::Command;

/// Runs the calling test again in a fresh process of this test binary, so that what it
/// measures about its process (RSS above all) sees only this test. Returns true in that
/// child, where the test body runs; in the parent it waits for the child, fails if the
/// child failed, and returns false.
///
/// `test_path` is the test's path inside the binary, e.g. `memory::some_test`.
pub fn isolated(test_path: &str) -> bool {
    const VAR: &str = "E2E_ISOLATED_TEST";
    if std::env::var(VAR).as_deref() == Ok(test_path) {
        return true;
    }
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([test_path, "--exact", "--nocapture", "--test-threads=1"])
        .env(VAR, test_path)
        .output()
        .expect("running the isolated test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "isolated test {test_path} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    false
}
