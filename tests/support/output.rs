//! Reading what a run of the binary printed.

use std::process::Output;

/// Stdout of a run that must have succeeded, with stderr in the panic message if not.
pub fn success_stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "plugin-host failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Parses a run's stdout as JSON, which it must be.
pub fn stdout_json(output: &Output) -> serde_json::Value {
    let stdout = success_stdout(output);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("stdout is not JSON ({err}):\n{stdout}"))
}

/// The plugin entry in `list --json` output whose file name is `file_name`.
pub fn listed<'a>(list: &'a serde_json::Value, file_name: &str) -> &'a serde_json::Value {
    list["plugins"]
        .as_array()
        .expect("plugins array")
        .iter()
        .find(|p| {
            p["path"]
                .as_str()
                .is_some_and(|path| path.ends_with(&format!("/{file_name}")))
        })
        .unwrap_or_else(|| panic!("{file_name} is not listed in {list:#}"))
}

/// An error and each of its sources, as `{:#}` prints an anyhow chain.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
