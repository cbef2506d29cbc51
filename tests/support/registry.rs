//! A real OCI registry for the tests: Debian's `docker-registry` (the reference
//! registry, distribution 2.8) on 127.0.0.1, with its own storage, stopped when dropped.
//!
//! Where it is not installed the tests that need it say so and pass without running,
//! unless `PLUGIN_HOST_REQUIRE_REGISTRY=1` (set by `.ci/run`, which installs it) makes
//! its absence a failure.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use crate::wait::wait_for;

/// A running registry.
pub struct TestRegistry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
    log: PathBuf,
    _storage: tempfile::TempDir,
}

impl TestRegistry {
    /// Starts a registry, or `None` (with a note on stderr) where none is installed.
    pub fn start() -> Option<Self> {
        Self::start_with_users(None)
    }

    /// As [`Self::start`], asking every client for a password when `htpasswd` (the
    /// file's lines, bcrypt) is given: HTTP basic authentication.
    pub fn start_with_users(htpasswd: Option<&str>) -> Option<Self> {
        let program = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file());
        let Some(program) = program else {
            assert!(
                std::env::var_os("PLUGIN_HOST_REQUIRE_REGISTRY").is_none(),
                "PLUGIN_HOST_REQUIRE_REGISTRY is set but docker-registry is not installed (apt-get install docker-registry)"
            );
            eprintln!("docker-registry is not installed (apt-get install docker-registry): this registry test did not run");
            return None;
        };
        let storage = tempfile::tempdir().expect("registry storage");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = storage.path().join("config.yml");
        let text = format!(
            "version: 0.1\nlog:\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n",
            storage.path().join("data").display()
        );
        let text = match htpasswd {
            Some(users) => {
                let file = storage.path().join("htpasswd");
                std::fs::write(&file, users).expect("htpasswd");
                format!(
                    "{text}auth:\n  htpasswd:\n    realm: plugin-host-tests\n    path: {}\n",
                    file.display()
                )
            }
            None => text,
        };
        std::fs::write(&config, text).expect("registry config");
        let log = storage.path().join("registry.log");
        let child = Command::new(program)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("registry log"))
            .spawn()
            .expect("starting docker-registry");
        let registry = Self {
            child,
            address,
            log,
            _storage: storage,
        };
        let url = format!("http://{}/v2/", registry.address);
        wait_for("the registry to answer", || match ureq::get(&url).call() {
            Ok(_) | Err(ureq::Error::Status(..)) => Some(()),
            Err(_) => None,
        });
        Some(registry)
    }

    /// How many HTTP requests the registry has answered so far (from its access log).
    pub fn requests(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| {
                line.contains("\"GET ")
                    || line.contains("\"HEAD ")
                    || line.contains("\"PUT ")
                    || line.contains("\"POST ")
                    || line.contains("\"PATCH ")
            })
            .count()
    }

    /// Its access log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where it keeps its content.
    pub fn storage(&self) -> PathBuf {
        self._storage.path().join("data")
    }

    /// Stops the registry now.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}
