//! Registry credentials as `docker login` leaves them, in `$DOCKER_CONFIG/config.json`,
//! else `~/.docker/config.json`: for each registry the credential helper named for it
//! (`credHelpers`), else the default store (`credsStore`), else its `auths` entry; none
//! of them means anonymous. A helper is the program `docker-credential-NAME` on `PATH`,
//! asked as Docker asks it (`get`, the registry on its standard input, a JSON answer).

use std::{
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use oci_client::secrets::RegistryAuth;
use serde_json::{Map, Value};

/// How long a credential helper may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a helper's answer that is read.
const MAX_ANSWER: u64 = 64 << 10;

/// Registry credentials from a Docker config file.
#[derive(Debug, Default)]
pub struct Credentials {
    auths: Map<String, Value>,
    helpers: Map<String, Value>,
    store: Option<String>,
}

impl Credentials {
    /// Reads the Docker config file; none means anonymous, and one that does not parse
    /// is said as a warning and means anonymous.
    pub fn from_docker_config() -> Self {
        let file = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker")))
            .map(|dir| dir.join("config.json"));
        file.map_or_else(Self::default, |file| Self::from_file(&file))
    }

    /// Reads a Docker config file, as [`Self::from_docker_config`].
    pub fn from_file(file: &Path) -> Self {
        let bytes = match crate::capped::read_file_of_at_most(
            file,
            crate::layout::SMALL_FILE_AT_MOST,
        ) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Self::default(),
            Err(err) => {
                tracing::warn!(file = %file.display(), "cannot read the Docker config file, so registries are reached without credentials: {err}");
                return Self::default();
            }
        };
        let config: Map<String, Value> = match serde_json::from_slice(&bytes) {
            Ok(config) => config,
            Err(err) => {
                tracing::warn!(file = %file.display(), "the Docker config file is not a JSON object, so registries are reached without credentials: {err}");
                return Self::default();
            }
        };
        let object = |key: &str| {
            config
                .get(key)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        Self {
            auths: object("auths"),
            helpers: object("credHelpers"),
            store: config
                .get("credsStore")
                .and_then(Value::as_str)
                .filter(|name| !name.is_empty())
                .map(str::to_owned),
        }
    }

    /// The credentials for `registry` (`host:port`), anonymous when none are stored.
    pub(crate) fn for_registry(&self, registry: &str) -> RegistryAuth {
        let helper = find(&self.helpers, registry)
            .and_then(Value::as_str)
            .or(self.store.as_deref());
        if let Some(helper) = helper {
            match ask_helper(helper, registry) {
                Ok(Some(auth)) => return auth,
                Ok(None) => {}
                Err(why) => tracing::warn!(
                    registry,
                    helper = %format!("docker-credential-{helper}"),
                    "the credential helper gave no credentials, so the registry is reached without them: {why}"
                ),
            }
        }
        find(&self.auths, registry)
            .and_then(|entry| entry.get("auth")?.as_str())
            .and_then(basic)
            .unwrap_or(RegistryAuth::Anonymous)
    }
}

/// The entry of `entries` for `registry`, whose keys may carry a scheme and a slash.
fn find<'a>(entries: &'a Map<String, Value>, registry: &str) -> Option<&'a Value> {
    entries.iter().find_map(|(key, value)| {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        (host == registry).then_some(value)
    })
}

/// Basic credentials from an `auths` entry's `auth`: base64 of `user:password`.
fn basic(auth: &str) -> Option<RegistryAuth> {
    use base64::{engine::general_purpose::STANDARD, Engine as _};
    let pair = String::from_utf8(STANDARD.decode(auth).ok()?).ok()?;
    let (user, password) = pair.split_once(':')?;
    Some(RegistryAuth::Basic(user.to_owned(), password.to_owned()))
}

/// Why a credential helper gave no credentials.
#[derive(Debug, thiserror::Error)]
enum HelperError {
    /// It could not be started.
    #[error("cannot run `{program}`: {error}")]
    Start {
        /// `docker-credential-NAME`.
        program: String,
        /// What the system said.
        error: std::io::Error,
    },
    /// It did not answer in time, and was killed.
    #[error("it did not answer within {HELPER_TIMEOUT:?}")]
    Silent,
    /// It failed, saying this.
    #[error("it failed ({status}): {said}")]
    Failed {
        /// How it exited.
        status: std::process::ExitStatus,
        /// What it wrote.
        said: String,
    },
    /// Its answer is not the JSON the protocol describes.
    #[error("its answer is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    /// It answered an identity token (an OAuth2 refresh token).
    #[error("it answered an identity token, which this host cannot use")]
    IdentityToken,
}

/// Asks `docker-credential-NAME get` for `registry`'s credentials: `None` when it has
/// none stored.
fn ask_helper(name: &str, registry: &str) -> Result<Option<RegistryAuth>, HelperError> {
    let program = format!("docker-credential-{name}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| HelperError::Start {
            program: program.clone(),
            error,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that does not read its input fails below, by its answer.
        let _ = stdin.write_all(registry.as_bytes());
    }
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut answer = Vec::new();
        if let Some(stdout) = stdout {
            let _ = stdout.take(MAX_ANSWER).read_to_end(&mut answer);
        }
        answer
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < HELPER_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HelperError::Silent);
            }
        }
    };
    let answer = reader.join().unwrap_or_default();
    let text = String::from_utf8_lossy(&answer);
    if !status.success() {
        // Docker's helpers say this when they hold nothing for the registry.
        if text.contains("credentials not found") {
            return Ok(None);
        }
        return Err(HelperError::Failed {
            status,
            said: text.trim().to_owned(),
        });
    }
    let answer: Value = serde_json::from_str(&text)?;
    let field = |key: &str| answer.get(key).and_then(Value::as_str).unwrap_or_default();
    match (field("Username"), field("Secret")) {
        (_, "") => Ok(None),
        ("<token>", _) => Err(HelperError::IdentityToken),
        (user, secret) => Ok(Some(RegistryAuth::Basic(
            user.to_owned(),
            secret.to_owned(),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::{Credentials, RegistryAuth};

    fn credentials(config: &str) -> Credentials {
        let dir = tempfile::tempdir().expect("a directory");
        let file = dir.path().join("config.json");
        std::fs::write(&file, config).expect("written");
        Credentials::from_file(&file)
    }

    #[test]
    fn credentials_are_those_docker_login_wrote_for_that_registry_else_anonymous() {
        // "user:secret" and "other:pw", as `docker login` writes them.
        let config = r#"{"auths": {"https://registry.example:5000/": {"auth": "dXNlcjpzZWNyZXQ="},
                                    "127.0.0.1:5000": {"auth": "b3RoZXI6cHc="}}}"#;
        let read = credentials(config);
        let basic = |registry| match read.for_registry(registry) {
            RegistryAuth::Basic(user, password) => Some((user, password)),
            _ => None,
        };
        assert_eq!(
            basic("registry.example:5000"),
            Some(("user".into(), "secret".into()))
        );
        assert_eq!(basic("127.0.0.1:5000"), Some(("other".into(), "pw".into())));
        assert_eq!(basic("elsewhere:5000"), None);
        let broken = credentials("{not json").for_registry("127.0.0.1:5000");
        assert!(matches!(broken, RegistryAuth::Anonymous), "{broken:?}");
        let dir = tempfile::tempdir().expect("a directory");
        let none = Credentials::from_file(&dir.path().join("none.json"));
        assert!(matches!(
            none.for_registry("127.0.0.1:5000"),
            RegistryAuth::Anonymous
        ));
    }

    #[test]
    fn a_helper_that_cannot_be_run_leaves_the_auths_entry() {
        let config = r#"{"credsStore": "plugin-host-test-no-such-helper",
            "auths": {"127.0.0.1:5000": {"auth": "b3RoZXI6cHc="}}}"#;
        let found = credentials(config).for_registry("127.0.0.1:5000");
        assert!(matches!(found, RegistryAuth::Basic(..)), "{found:?}");
    }
}
