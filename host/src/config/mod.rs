//! One TOML file configures the whole host. Every key has a documented default
//! (`examples/host.toml` lists them all); unknown keys and wrong types are rejected with
//! the key path and line:column; incompatible settings are rejected with the reason.
//! Precedence: command-line flags > `PLUGIN_HOST_<SECTION>_<KEY>` environment > file >
//! defaults.

mod admin;
mod env;
mod sandbox;
mod sections;
mod sources;
mod units;
mod validate;

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fmt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub(crate) use self::sections::{check_endpoint, check_protocol, read_certificate};
pub use self::{
    admin::AdminConfig,
    sandbox::{ConnectGrant, SandboxGrants, SandboxMode},
    sections::{
        ComponentConfig, HostConfig, Isolation, LimitsConfig, LocksConfig, MemoryConfig,
        MetricsConfig, OtlpProtocol, TelemetryConfig, TimeoutsConfig, WatchMode,
    },
    sources::{PullPolicy, SourceConfig, TrustConfig, TrustKeyConfig},
    units::{parse_duration, parse_listen_address, parse_size, UnitError, LONGEST_DURATION},
};
use crate::trust::{TrustPolicy, TrustStore, TrustStoreError};
pub use crate::{
    locks::OrderViolation,
    memory::{MemoryLimit, PressureThresholds},
    trust::TrustMode,
};

/// Whether `table` still says exactly what `text` says (no override applied), so the text
/// itself can be read with line and column in its errors.
fn text_is(table: &toml::Table, text: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|parsed| &parsed == table)
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[host]`: where plugins are and how they are scanned.
    pub host: HostConfig,
    /// `[memory]`: the memory budget.
    pub memory: MemoryConfig,
    /// `[timeouts]`: init, call and stop timeouts.
    pub timeouts: TimeoutsConfig,
    /// `[metrics]`: sampling and aggregation.
    pub metrics: MetricsConfig,
    /// `[locks]`: named lock order and checks.
    pub locks: LocksConfig,
    /// `[admin]`: the HTTP admin API.
    pub admin: AdminConfig,
    /// `[limits]`: bulkheads and caps on what a plugin can use.
    pub limits: LimitsConfig,
    /// `[[sources]]`: plugins delivered as OCI artifacts.
    pub sources: Vec<SourceConfig>,
    /// `[trust]`: the keys whose signatures of plugin artifacts count.
    pub trust: TrustConfig,
    /// `[telemetry]`: traces exported over OTLP.
    pub telemetry: TelemetryConfig,
    /// `[components.NAME]`: per-component overrides.
    #[serde(skip_serializing)]
    pub components: BTreeMap<String, ComponentConfig>,
    /// What loading noticed and ignored (environment variables that name no key, or are
    /// not UTF-8). The caller logs them.
    #[serde(skip)]
    pub warnings: Vec<ConfigProblem>,
}

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path, e.g. `memory.pressure.high`.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
    /// Line and column in the file, when known.
    pub location: Option<(usize, usize)>,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.key)?;
        if let Some((line, column)) = self.location {
            write!(f, " (line {line}, column {column})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why a configuration was rejected: every problem found, not just the first.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The file, if the config came from one.
    pub file: Option<PathBuf>,
    /// The problems.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "invalid configuration in {}", file.display())?,
            None => write!(f, "invalid configuration")?,
        }
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads `file` (if given; else `$CONFIGURATION_DIRECTORY/host.toml` under systemd, if
    /// it exists), applies environment overrides and validates.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] with every problem found, each naming its key.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let default_file = crate::dirs::default_config_file();
        let file = file.or(default_file.as_deref());
        let text = match file {
            Some(path) => crate::util::read_text_at_most(path, crate::util::TEXT_FILE_AT_MOST)
                .map_err(|err| ConfigError {
                    file: Some(path.to_owned()),
                    problems: vec![ConfigProblem {
                        key: "<file>".into(),
                        message: format!("cannot read it: {err}"),
                        location: None,
                    }],
                })?,
            None => String::new(),
        };
        Self::from_toml_with_env(&text, std::env::vars_os()).map_err(|mut err| {
            err.file = file.map(Path::to_owned);
            err
        })
    }

    /// Parses `text` with no environment overrides, and validates.
    ///
    /// # Errors
    ///
    /// As [`Self::load`].
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_toml_with_env(text, std::iter::empty::<(OsString, OsString)>())
    }

    /// Parses `text`, applies `PLUGIN_HOST_*` overrides from `env`, and validates.
    ///
    /// # Errors
    ///
    /// As [`Self::load`].
    pub fn from_toml_with_env<K: Into<OsString>, V: Into<OsString>>(
        text: &str,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        let fail = |problems| ConfigError {
            file: None,
            problems,
        };
        // First pass on the text itself, so errors carry line and column.
        deserialize_text(text).map_err(|p| fail(vec![p]))?;
        let mut table: toml::Table = toml::from_str(text).map_err(|err| {
            fail(vec![ConfigProblem {
                key: "<root>".into(),
                message: err.to_string(),
                location: None,
            }])
        })?;
        let env = env.into_iter().map(|(k, v)| (k.into(), v.into()));
        let warnings = env::apply(&mut table, env).map_err(|p| fail(vec![p]))?;
        let mut config = if warnings.is_empty() && text_is(&table, text) {
            deserialize_text(text).map_err(|p| fail(vec![p]))?
        } else {
            // Read from the merged table itself: written back to text first, a value of
            // 256 quotes in a row overflowed toml_write's counter (a panic in a build
            // with overflow checks, a wrong quoting without).
            deserialize_from(toml::Value::Table(table), None).map_err(|mut p| {
                p.message = format!("{} (set through the environment)", p.message);
                fail(vec![p])
            })?
        };
        config.warnings = warnings;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(fail(problems))
        }
    }

    /// The trust policy `[host] trust` names, with its trust file read for `pinned`.
    ///
    /// # Errors
    ///
    /// The trust file cannot be read or parsed.
    pub fn trust_policy(&self) -> Result<TrustPolicy, TrustStoreError> {
        match self.host.trust {
            TrustMode::Permissions => Ok(TrustPolicy::permissions()),
            TrustMode::Pinned => TrustStore::load(&self.trust_file()).map(TrustPolicy::pinned),
        }
    }

    /// The trust file: `host.trust_file`, else `trusted.toml` in `$CONFIGURATION_DIRECTORY`
    /// (systemd), else in `$XDG_CONFIG_HOME/plugin-host` (or `~/.config/plugin-host`).
    pub fn trust_file(&self) -> PathBuf {
        if !self.host.trust_file.as_os_str().is_empty() {
            return self.host.trust_file.clone();
        }
        crate::dirs::default_config_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("trusted.toml")
    }

    /// The plugins directory: `host.plugins_dir`; a relative one is taken under systemd's
    /// `$STATE_DIRECTORY` when that is set, else under the working directory.
    pub fn plugins_dir(&self) -> PathBuf {
        match crate::dirs::state_dir() {
            Some(state) if self.host.plugins_dir.is_relative() => {
                state.join(&self.host.plugins_dir)
            }
            _ => self.host.plugins_dir.clone(),
        }
    }

    /// The registry cache directory: `host.cache_dir`, else `$CACHE_DIRECTORY` (systemd),
    /// else `$XDG_CACHE_HOME/plugin-host` (or `~/.cache/plugin-host`).
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if self.host.cache_dir.as_os_str().is_empty() {
            crate::dirs::default_cache_dir()
        } else {
            Some(self.host.cache_dir.clone())
        }
    }
}

fn deserialize_text(text: &str) -> Result<Config, ConfigProblem> {
    deserialize_from(toml::Deserializer::new(text), Some(text))
}

/// The config `deserializer` holds; a problem is placed in `text` when there is one.
fn deserialize_from<'de>(
    deserializer: impl serde::Deserializer<'de, Error = toml::de::Error>,
    text: Option<&str>,
) -> Result<Config, ConfigProblem> {
    serde_path_to_error::deserialize::<_, Config>(deserializer).map_err(|err| {
        let key = err.path().to_string();
        let inner = err.into_inner();
        let location = text.and_then(|text| Some(line_column(text, inner.span()?.start)));
        ConfigProblem {
            key: if key == "." { "<root>".into() } else { key },
            message: inner.message().trim().to_owned(),
            location,
        }
    })
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
