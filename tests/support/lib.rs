//! Support for the end-to-end tests: the built binary and plugin libraries, sandboxes
//! with their own plugin and cache directories, and traces of which process mapped which
//! library (from glibc's `LD_DEBUG=files`, one file per process).

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

/// The target directory of the build the tests run from (`target/debug`).
pub fn target_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/e2e-HASH
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile> directory")
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

    /// Runs the binary with `args` and records which process mapped which file.
    pub fn run_traced(&self, args: &[&str], env: &[(&str, &str)]) -> (Output, LoadTrace) {
        let trace_dir = tempfile::tempdir().expect("trace directory");
        let mut command = self.host();
        command
            .args(args)
            .envs(env.iter().copied())
            .env("LD_DEBUG", "files")
            .env("LD_DEBUG_OUTPUT", trace_dir.path().join("ld"));
        let child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running plugin-host");
        let main_pid = child.id();
        let output = child.wait_with_output().expect("waiting for plugin-host");
        let mut per_pid = HashMap::new();
        for entry in fs::read_dir(trace_dir.path()).expect("trace files") {
            let path = entry.expect("trace file").path();
            let pid = path
                .extension()
                .and_then(|ext| ext.to_str())
                .and_then(|ext| ext.parse::<u32>().ok())
                .expect("trace file named ld.PID");
            per_pid.insert(pid, fs::read_to_string(&path).unwrap_or_default());
        }
        assert!(
            per_pid.contains_key(&main_pid),
            "no loader trace for the host process; is this glibc?"
        );
        (output, LoadTrace { main_pid, per_pid })
    }
}

/// Which process mapped which shared object, read from glibc's loader trace.
#[derive(Debug)]
pub struct LoadTrace {
    main_pid: u32,
    per_pid: HashMap<u32, String>,
}

fn mentions(trace: &str, library: &Path) -> bool {
    let needle = format!("file={}", library.display());
    trace.lines().any(|line| line.contains(&needle))
}

impl LoadTrace {
    /// Whether the host process itself mapped `library`.
    pub fn host_mapped(&self, library: &Path) -> bool {
        mentions(&self.per_pid[&self.main_pid], library)
    }

    /// How many child processes (scanners) ran.
    pub fn child_processes(&self) -> usize {
        self.per_pid.len() - 1
    }

    /// Whether any child process mapped `library`.
    pub fn child_mapped(&self, library: &Path) -> bool {
        self.per_pid
            .iter()
            .any(|(pid, trace)| *pid != self.main_pid && mentions(trace, library))
    }
}

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

/// The file name of crate `name`'s library.
pub fn library_file_name(name: &str) -> String {
    library(name)
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

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

/// A `plugin-host run` process with its admin API; stopped with SIGTERM when dropped.
pub struct RunningHost {
    child: std::process::Child,
    /// The admin API's address as printed by `run` (may be 0.0.0.0:PORT).
    pub printed: std::net::SocketAddr,
    /// An address to connect to: the printed one, on loopback.
    pub addr: std::net::SocketAddr,
    agent: ureq::Agent,
}

impl RunningHost {
    /// Starts `run` in `sandbox` with `config` and waits for its admin address.
    pub fn start(sandbox: &Sandbox, config: &str) -> Self {
        use std::io::BufRead;
        let config = sandbox.write_config(config);
        let mut child = sandbox
            .host()
            .arg("--config")
            .arg(&config)
            .arg("run")
            .stdout(std::process::Stdio::piped())
            .stderr(fs::File::create(sandbox.root().join("run.log")).expect("run.log"))
            .spawn()
            .expect("starting plugin-host run");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading run's stdout");
        let printed: std::net::SocketAddr = line
            .trim()
            .strip_prefix("admin listening on http://")
            .unwrap_or_else(|| {
                let log = fs::read_to_string(sandbox.root().join("run.log")).unwrap_or_default();
                panic!("unexpected first line from run: {line:?}\nrun.log:\n{log}")
            })
            .parse()
            .expect("an address");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], printed.port()));
        let agent = ureq::AgentBuilder::new()
            .timeout(std::time::Duration::from_secs(30))
            .build();
        Self {
            child,
            printed,
            addr,
            agent,
        }
    }

    /// The process id of the host.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A request to `path` on the admin API.
    pub fn request(&self, method: &str, path: &str) -> ureq::Request {
        self.agent
            .request(method, &format!("http://{}{path}", self.addr))
    }

    /// GET `path`, returning status and body (errors included).
    pub fn get(&self, path: &str) -> (u16, String) {
        Self::answer(self.request("GET", path).call())
    }

    /// POST `body` to `path`, returning status and body (errors included).
    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        Self::answer(self.request("POST", path).send_string(body))
    }

    /// Status and body of a response, error statuses included.
    pub fn answer(result: Result<ureq::Response, ureq::Error>) -> (u16, String) {
        match result {
            Ok(response) => (
                response.status(),
                response.into_string().unwrap_or_default(),
            ),
            Err(ureq::Error::Status(status, response)) => {
                (status, response.into_string().unwrap_or_default())
            }
            Err(err) => panic!("admin API unreachable: {err}"),
        }
    }

    /// Stops the host with SIGTERM and returns its exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.terminate()
    }

    fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().ok().and_then(|status| status.code())
    }
}

impl Drop for RunningHost {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

/// A coordinator configured by `config` (TOML) with every usable plugin of `sandbox`
/// registered, discovered through the real scanner binary.
pub async fn coordinator(sandbox: &Sandbox, config: &str) -> plugin_host::Coordinator {
    let config = plugin_host::Config::from_toml(config).expect("test config");
    let catalog = plugin_host::Discovery::new(sandbox.plugins_dir())
        .with_cache_dir(Some(sandbox.cache_dir()))
        .with_scan_mode(plugin_host::ScanMode::Subprocess(binary()))
        .discover()
        .await
        .expect("discovery");
    let coordinator = plugin_host::CoordinatorBuilder::from_config(&config).build();
    let problems = coordinator.register_catalog(&catalog);
    assert!(problems.is_empty(), "{problems:?}");
    coordinator
}

/// The state of component `name`.
pub fn state(coordinator: &plugin_host::Coordinator, name: &str) -> plugin_host::ComponentState {
    coordinator
        .components()
        .into_iter()
        .find(|c| c.name == name)
        .map(|c| c.state)
        .unwrap_or_else(|| panic!("no component {name}"))
}
