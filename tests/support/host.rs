//! A real `plugin-host run` with its admin API, driven over loopback.

use std::{fs, process::Command};

use plugin_host_admin::api;

use crate::sandbox::Sandbox;

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
        Self::start_with_env(sandbox, config, &[])
    }

    /// As [`Self::start`], with extra environment variables.
    pub fn start_with_env(sandbox: &Sandbox, config: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with(sandbox, config, |command| {
            command.envs(env.iter().copied());
        })
    }

    /// As [`Self::start`], with the command set up further by `configure` (environment,
    /// descriptors, another user) before it starts.
    pub fn start_with(
        sandbox: &Sandbox,
        config: &str,
        configure: impl FnOnce(&mut Command),
    ) -> Self {
        use std::io::BufRead;
        let config = sandbox.write_config(config);
        let mut command = sandbox.host();
        configure(&mut command);
        let mut child = command
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

    /// Calls `component.method` with `body`: the component's result, or the error body.
    pub fn call(
        &self,
        component: &str,
        method: &str,
        body: &str,
    ) -> (u16, Result<serde_json::Value, api::ErrorDetail>) {
        let (status, text) = self.post(&format!("/components/{component}/call/{method}"), body);
        let parsed = if status == 200 {
            let answer: api::CallResult = serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("not a call result ({err}): {text}"));
            Ok(answer.result)
        } else {
            let answer: api::ErrorBody = serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("not an error body ({err}): {text}"));
            Err(answer.error)
        };
        (status, parsed)
    }

    /// The value of plain metric `name` for `component` in `GET /metrics`, if there is one.
    pub fn metric(&self, name: &str, component: &str) -> Option<f64> {
        let (status, text) = self.get("/metrics");
        assert_eq!(status, 200, "{text}");
        crate::metrics::sample_of(&crate::metrics::scrape(&text), name, component)
    }

    /// `GET /components`, typed.
    pub fn components(&self) -> Vec<api::Component> {
        let (status, text) = self.get("/components");
        assert_eq!(status, 200, "{text}");
        let components: api::Components =
            serde_json::from_str(&text).unwrap_or_else(|err| panic!("{err}: {text}"));
        components.components
    }

    /// Component `name` from `GET /components`.
    pub fn component(&self, name: &str) -> api::Component {
        self.components()
            .into_iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no component {name}"))
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

    /// Waits for a host already told to stop to exit, and returns its exit code (a
    /// second SIGTERM would cut its stop short).
    pub fn wait(mut self) -> Option<i32> {
        self.child.wait().ok().and_then(|status| status.code())
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
