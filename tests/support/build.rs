//! The built workspace: the binary and the plugin libraries the tests run, built once
//! per test process so `cargo test` alone is enough.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, OnceLock},
};

/// The target directory of the build the tests run from (`target/debug`).
pub fn target_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/e2e-HASH for tests and benches, target/<profile>/NAME for
        // this crate's binaries.
        let parent = exe.parent().expect("the executable's directory");
        let dir = if parent.file_name().is_some_and(|name| name == "deps") {
            parent.parent().expect("target/<profile> directory")
        } else {
            parent
        }
        .to_owned();
        build_workspace(&dir);
        dir
    })
}

/// Builds every crate of the workspace (binary, plugins, fixtures) once per test process,
/// so `cargo test` alone is enough. A no-op when everything is fresh.
fn build_workspace(dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--workspace", "--quiet"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if dir.file_name().is_some_and(|name| name == "release") {
        command.arg("--release");
    }
    let status = command.status().expect("running cargo build");
    assert!(status.success(), "cargo build --workspace failed");
}

/// The `plugin-host` binary.
pub fn binary() -> PathBuf {
    target_dir().join(format!("plugin-host{}", std::env::consts::EXE_SUFFIX))
}

/// The built library of crate `crate_name` (`market-data` -> `libmarket_data.so`).
pub fn library(crate_name: &str) -> PathBuf {
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        crate_name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    let path = target_dir().join(file);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// The file name of crate `name`'s library.
pub fn library_file_name(name: &str) -> String {
    library(name)
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

/// The compatibility workspaces under `tests/compat` (plugin-api 0.1.0 frozen, a plugin
/// built against it, a host as old as it; plugin-api 0.1.1 and 0.1.2 frozen, a plugin
/// built against each), built once per test process into the same target directory; returns
/// that directory.
pub fn compat_dir() -> &'static Path {
    static BUILT: OnceLock<()> = OnceLock::new();
    let dir = target_dir();
    BUILT.get_or_init(|| {
        for workspace in [
            "compat/Cargo.toml",
            "compat/v0.1.1/Cargo.toml",
            "compat/v0.1.2/Cargo.toml",
        ] {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join(workspace);
            let mut command = Command::new(cargo);
            command
                .args(["build", "--quiet", "--manifest-path"])
                .arg(&manifest)
                .arg("--target-dir")
                .arg(dir.parent().expect("the target directory"));
            if dir.file_name().is_some_and(|name| name == "release") {
                command.arg("--release");
            }
            let status = command.status().expect("running cargo build");
            assert!(status.success(), "building tests/{workspace} failed");
        }
    });
    dir
}

/// A C or C++ plugin compiled with the system compiler (`cc`, `c++`, or `$CC`, `$CXX`)
/// against `plugin-api/include/plugin_host.h`: `source` is relative to the workspace
/// root, `flags` are more compiler arguments (`-DNAME=VALUE`; `-IDIR` to find an older
/// `plugin_host.h` first), `file` is the library's file name. Built once per test process
/// into `target/<profile>/c-plugins`; returns its path.
pub fn c_plugin(source: &str, flags: &[&str], file: &str) -> PathBuf {
    static BUILT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = target_dir().join("c-plugins");
    let output = dir.join(file);
    if built.contains(&output) {
        return output;
    }
    std::fs::create_dir_all(&dir).expect("creating target/c-plugins");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let cpp = source.ends_with(".cpp");
    let compiler = match (cpp, std::env::var_os(if cpp { "CXX" } else { "CC" })) {
        (_, Some(set)) => set,
        (true, None) => "c++".into(),
        (false, None) => "cc".into(),
    };
    let partial = dir.join(format!("{file}.partial"));
    let mut command = Command::new(compiler);
    command
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror"])
        .args(flags)
        .arg("-I")
        .arg(root.join("plugin-api/include"))
        .arg("-o")
        .arg(&partial)
        .arg(root.join(source));
    if cpp {
        command.arg("-std=c++17");
    }
    let status = command.status().expect("running the C compiler");
    assert!(status.success(), "compiling {source} failed");
    std::fs::rename(&partial, &output).expect("placing the C plugin");
    built.push(output.clone());
    output
}
