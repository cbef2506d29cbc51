//! Sandboxes: a plugins directory and registry cache of their own, and the binary run
//! against them with a clean environment.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use crate::build::{binary, library};

/// A temporary plugins directory and registry cache of its own.
pub struct Sandbox {
    root: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// An empty sandbox.
    pub fn new() -> Self {
        let root = tempfile::tempdir().expect("temporary directory");
        fs::create_dir(root.path().join("plugins")).expect("plugins directory");
        Self { root }
    }

    /// A sandbox with the given crates' libraries in its plugins directory.
    pub fn with_plugins(crates: &[&str]) -> Self {
        let sandbox = Self::new();
        for name in crates {
            sandbox.add_plugin(name);
        }
        sandbox
    }

    /// The sandbox's root directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The plugins directory.
    pub fn plugins_dir(&self) -> PathBuf {
        self.root.path().join("plugins")
    }

    /// The registry cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    /// Copies crate `name`'s library into the plugins directory; returns its path there.
    pub fn add_plugin(&self, name: &str) -> PathBuf {
        let source = library(name);
        let target = self
            .plugins_dir()
            .join(source.file_name().expect("library file name"));
        fs::copy(&source, &target).expect("copying a plugin library");
        target
    }

    /// Compiles C or C++ plugin `source` (see [`crate::c_plugin`]) and copies it into
    /// the plugins directory as `file`; returns its path there.
    pub fn add_c_plugin(&self, source: &str, flags: &[&str], file: &str) -> PathBuf {
        let built = crate::c_plugin(source, flags, file);
        let target = self.plugins_dir().join(file);
        fs::copy(&built, &target).expect("copying a C plugin");
        target
    }

    /// Writes an arbitrary file into the plugins directory.
    pub fn write_plugin_file(&self, file_name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.plugins_dir().join(file_name);
        fs::write(&path, bytes).expect("writing a plugin file");
        path
    }

    /// Writes `text` as a config file in the sandbox and returns its path.
    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.root.path().join("host.toml");
        fs::write(&path, text).expect("writing the config");
        path
    }

    /// The binary with this sandbox's plugins and cache directories, and a clean
    /// environment for its settings.
    pub fn host(&self) -> Command {
        let mut command = Command::new(binary());
        command
            .arg("--plugins-dir")
            .arg(self.plugins_dir())
            .arg("--cache-dir")
            .arg(self.cache_dir())
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1");
        for (name, _) in std::env::vars() {
            if name.starts_with("PLUGIN_HOST_") || name.starts_with("LD_DEBUG") {
                command.env_remove(name);
            }
        }
        command
    }

    /// Runs the binary with `args` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.host()
            .args(args)
            .output()
            .expect("running plugin-host")
    }
}
