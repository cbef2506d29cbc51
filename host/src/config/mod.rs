//! One TOML file configures the whole host. Every key has a documented default
//! (`examples/host.toml` lists them all); unknown keys and wrong types are rejected with
//! the key path and line:column; incompatible settings are rejected with the reason.
//! Precedence: command-line flags > `PLUGIN_HOST_<SECTION>_<KEY>` environment > file >
//! defaults.

mod units;
mod validate;

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

pub use self::units::{parse_duration, parse_size, UnitError};
use crate::{locks::LockManagerBuilder, memory::MemoryManagerBuilder};
pub use crate::{
    locks::OrderViolation,
    memory::{MemoryLimit, PressureThresholds},
};

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
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
    /// `[components.NAME]`: per-component overrides.
    pub components: BTreeMap<String, ComponentConfig>,
}

/// `[host]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Directory scanned for plugin libraries. Defaults to `plugins`.
    pub plugins_dir: PathBuf,
    /// Registry cache directory; empty means `$XDG_CACHE_HOME/plugin-host`. Defaults to empty.
    pub cache_dir: PathBuf,
    /// Scanner processes run at once. Defaults to 2.
    pub scan_concurrency: usize,
    /// Component initialisations run at once. Defaults to 4.
    pub init_concurrency: usize,
    /// How long one scanner may take before its file is marked failed. Defaults to 10 s.
    #[serde(deserialize_with = "units::duration")]
    pub scan_timeout: Duration,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            plugins_dir: PathBuf::from("plugins"),
            cache_dir: PathBuf::new(),
            scan_concurrency: 2,
            init_concurrency: 4,
            scan_timeout: Duration::from_secs(10),
        }
    }
}

/// `"auto"`, a size such as `"2GiB"`, or a number of bytes.
impl<'de> Deserialize<'de> for MemoryLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match units::SizeRepr::deserialize(d)? {
            units::SizeRepr::Text(text) if text.trim() == "auto" => Ok(Self::Auto),
            units::SizeRepr::Text(text) => parse_size(&text)
                .map(Self::Bytes)
                .map_err(|err| serde::de::Error::custom(format!("{err}, or \"auto\""))),
            units::SizeRepr::Number(bytes) => Ok(Self::Bytes(bytes)),
        }
    }
}

/// `[memory]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// `"auto"` or a size such as `"2GiB"`. Defaults to `"auto"`.
    pub limit: MemoryLimit,
    /// How often the sampler reads RSS. Defaults to 1 s.
    #[serde(deserialize_with = "units::duration")]
    pub sample_interval: Duration,
    /// Least idle time before a component may be evicted. Defaults to 300 s.
    #[serde(deserialize_with = "units::duration")]
    pub min_idle: Duration,
    /// Pressure thresholds as fractions of the limit.
    pub pressure: PressureThresholds,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            limit: MemoryLimit::Auto,
            sample_interval: Duration::from_secs(1),
            min_idle: Duration::from_secs(300),
            pressure: PressureThresholds::default(),
        }
    }
}

impl MemoryConfig {
    /// A memory manager builder with these settings.
    pub fn builder(&self) -> MemoryManagerBuilder {
        MemoryManagerBuilder::default()
            .with_limit(self.limit)
            .with_pressure(self.pressure)
            .with_min_idle(self.min_idle)
            .with_sample_interval(self.sample_interval)
    }
}

/// `[timeouts]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    /// Init and call timeout when nothing more specific is set. Defaults to 30 s.
    #[serde(deserialize_with = "units::duration")]
    pub default: Duration,
    /// How long each component may take to stop. Defaults to 10 s.
    #[serde(deserialize_with = "units::duration")]
    pub stop: Duration,
    /// Method name -> call timeout, for every component. Defaults to none.
    #[serde(deserialize_with = "units::duration_map")]
    pub operations: BTreeMap<String, Duration>,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            default: Duration::from_secs(30),
            stop: Duration::from_secs(10),
            operations: BTreeMap::new(),
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Share of calls whose latency is timed, 0 to 1. Defaults to 0.1.
    pub sample_rate: f64,
    /// How often histograms are summarised. Defaults to 10 s.
    #[serde(deserialize_with = "units::duration")]
    pub aggregation_interval: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            sample_rate: 0.1,
            aggregation_interval: Duration::from_secs(10),
        }
    }
}

/// `[locks]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocksConfig {
    /// Lock names, first acquired first. Defaults to empty.
    pub order: Vec<String>,
    /// Defaults to `deny`.
    pub on_order_violation: OrderViolation,
    /// Defaults to true.
    pub deadlock_detection: bool,
    /// Acquire timeout. Defaults to 5 s.
    #[serde(deserialize_with = "units::duration")]
    pub default_timeout: Duration,
    /// Holding longer is logged. Defaults to 30 s.
    #[serde(deserialize_with = "units::duration")]
    pub max_hold: Duration,
}

impl LocksConfig {
    /// A lock manager builder with these settings.
    pub fn builder(&self) -> LockManagerBuilder {
        LockManagerBuilder::default()
            .with_order(self.order.iter().cloned())
            .with_order_violation(self.on_order_violation)
            .with_deadlock_detection(self.deadlock_detection)
            .with_default_timeout(self.default_timeout)
            .with_max_hold(self.max_hold)
    }
}

impl Default for LocksConfig {
    fn default() -> Self {
        Self {
            order: Vec::new(),
            on_order_violation: OrderViolation::Deny,
            deadlock_detection: true,
            default_timeout: Duration::from_secs(5),
            max_hold: Duration::from_secs(30),
        }
    }
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin HTTP API. Defaults to `127.0.0.1:9464`.
    pub listen: SocketAddr,
    /// Bearer token required when listening beyond loopback. Defaults to empty.
    pub token: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            token: String::new(),
        }
    }
}

/// `[limits]`: how much of the host one component or plugin may take.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Calls in flight per component; past it a call is refused at once as `saturated`.
    /// A timed-out call still running counts until it returns. Defaults to 64.
    pub max_concurrent_calls: usize,
    /// Abandoned calls (timed out, still running) after which a component is quarantined:
    /// its calls fail fast until they return. Defaults to 8.
    pub quarantine_after: usize,
    /// Log records per second per component; past it records are dropped and counted.
    /// 0 means no limit. Defaults to 1000.
    pub log_records_per_second: u32,
    /// Records a component may log in a burst above its rate. Defaults to 2000.
    pub log_burst: u32,
    /// Distinct lock names one plugin may use. Defaults to 256.
    pub locks_per_plugin: usize,
    /// Distinct metric names one plugin may register. Defaults to 64.
    pub metrics_per_plugin: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_concurrent_calls: 64,
            quarantine_after: 8,
            log_records_per_second: 1000,
            log_burst: 2000,
            locks_per_plugin: 256,
            metrics_per_plugin: 64,
        }
    }
}

/// `[components.NAME]`: overrides for one component; every key optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComponentConfig {
    /// Whether the component is registered at all. Defaults to true.
    pub enabled: bool,
    /// Initialise it when `run` starts. Defaults to false.
    pub eager: bool,
    /// Overrides the manifest's priority (0-100).
    pub priority: Option<u8>,
    /// Overrides the manifest's memory estimate.
    #[serde(deserialize_with = "units::opt_size")]
    pub memory_estimate: Option<u64>,
    /// Init and call timeout for this component.
    #[serde(deserialize_with = "units::opt_duration")]
    pub timeout: Option<Duration>,
    /// Method name -> call timeout for this component.
    #[serde(deserialize_with = "units::duration_map")]
    pub operations: BTreeMap<String, Duration>,
    /// Overrides `[limits] max_concurrent_calls`.
    pub max_concurrent_calls: Option<usize>,
    /// Overrides `[limits] quarantine_after`.
    pub quarantine_after: Option<usize>,
    /// Overrides `[limits] log_records_per_second`.
    pub log_records_per_second: Option<u32>,
    /// The component's own settings, handed to it as JSON.
    pub config: toml::Table,
}

impl Default for ComponentConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            eager: false,
            priority: None,
            memory_estimate: None,
            timeout: None,
            operations: BTreeMap::new(),
            max_concurrent_calls: None,
            quarantine_after: None,
            log_records_per_second: None,
            config: toml::Table::new(),
        }
    }
}

impl ComponentConfig {
    /// The component's own settings (`[components.NAME.config]`) as the JSON handed to it.
    ///
    /// # Errors
    ///
    /// When a value has no JSON form; [`Config::problems`] reports it at load.
    pub fn config_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(&self.config)
    }
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

const ENV_PREFIX: &str = "PLUGIN_HOST_";
const SECTIONS: [&str; 7] = [
    "host", "memory", "timeouts", "metrics", "locks", "admin", "limits",
];

impl Config {
    /// Reads `file` (if given), applies environment overrides and validates.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] with every problem found, each naming its key.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path).map_err(|err| ConfigError {
                file: Some(path.to_owned()),
                problems: vec![ConfigProblem {
                    key: "<file>".into(),
                    message: format!("cannot read it: {err}"),
                    location: None,
                }],
            })?,
            None => String::new(),
        };
        Self::from_toml_with_env(&text, std::env::vars()).map_err(|mut err| {
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
        Self::from_toml_with_env(text, std::iter::empty())
    }

    /// Parses `text`, applies `PLUGIN_HOST_*` overrides from `env`, and validates.
    ///
    /// # Errors
    ///
    /// As [`Self::load`].
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let fail = |problems| ConfigError {
            file: None,
            problems,
        };
        // First pass on the text itself, so errors carry line and column.
        let config = deserialize_text(text).map_err(|p| fail(vec![p]))?;
        let overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        let config = if overrides.is_empty() {
            config
        } else {
            // The text parsed above, so this cannot fail; if it did, say so.
            let mut table: toml::Table = toml::from_str(text).map_err(|err| {
                fail(vec![ConfigProblem {
                    key: "<root>".into(),
                    message: err.to_string(),
                    location: None,
                }])
            })?;
            for (name, value) in &overrides {
                apply_env(&mut table, name, value).map_err(|p| fail(vec![p]))?;
            }
            let merged = toml::to_string(&table).map_err(|err| {
                fail(vec![ConfigProblem {
                    key: "<environment>".into(),
                    message: err.to_string(),
                    location: None,
                }])
            })?;
            deserialize_text(&merged).map_err(|mut p| {
                p.location = None;
                p.message = format!("{} (set through the environment)", p.message);
                fail(vec![p])
            })?
        };
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(fail(problems))
        }
    }

    /// The registry cache directory: `host.cache_dir`, else the default.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if self.host.cache_dir.as_os_str().is_empty() {
            crate::util::default_cache_dir()
        } else {
            Some(self.host.cache_dir.clone())
        }
    }
}

fn deserialize_text(text: &str) -> Result<Config, ConfigProblem> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize::<_, Config>(deserializer).map_err(|err| {
        let key = err.path().to_string();
        let inner = err.into_inner();
        let location = inner.span().map(|span| line_column(text, span.start));
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

/// Applies `PLUGIN_HOST_SECTION_KEY=value` to the table.
fn apply_env(table: &mut toml::Table, name: &str, value: &str) -> Result<(), ConfigProblem> {
    let rest = name[ENV_PREFIX.len()..].to_ascii_lowercase();
    let section = SECTIONS
        .iter()
        .find(|s| rest.starts_with(&format!("{s}_")))
        .ok_or_else(|| ConfigProblem {
            key: name.to_owned(),
            message: format!(
                "unknown environment override; use {ENV_PREFIX}<SECTION>_<KEY> with a section of {}",
                SECTIONS.join(", ")
            ),
            location: None,
        })?;
    let key = &rest[section.len() + 1..];
    // A value that parses as TOML keeps its type (numbers, booleans, arrays); anything else
    // is a string.
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let section_table = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match section_table {
        toml::Value::Table(section_table) => {
            section_table.insert(key.to_owned(), parsed);
            Ok(())
        }
        _ => Err(ConfigProblem {
            key: (*section).to_owned(),
            message: "is not a table".into(),
            location: None,
        }),
    }
}

#[cfg(test)]
mod tests;
