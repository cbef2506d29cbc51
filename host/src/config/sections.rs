//! The sections of the config file, each key with its documented default.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::{
    sandbox::{SandboxGrants, SandboxMode},
    units::{self, flag_or_word, parse_size, FlagOrWord},
};
use crate::{
    locks::{LockManagerBuilder, OrderViolation},
    memory::{MemoryLimit, MemoryManagerBuilder, PressureThresholds},
    trust::TrustMode,
};

/// `[host]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Directory scanned for plugin libraries; a relative path is taken under systemd's
    /// `$STATE_DIRECTORY` when set, else under the working directory. Defaults to `plugins`.
    pub plugins_dir: PathBuf,
    /// Registry cache directory; empty means `$CACHE_DIRECTORY` (systemd), else
    /// `$XDG_CACHE_HOME/plugin-host` (Windows: `%LOCALAPPDATA%\plugin-host\cache`).
    /// Defaults to empty.
    pub cache_dir: PathBuf,
    /// Scanner processes run at once. Defaults to 4.
    pub scan_concurrency: usize,
    /// Component initialisations run at once. Defaults to 4.
    pub init_concurrency: usize,
    /// How long one scanner may take before its file is marked failed. Defaults to 10 s.
    #[serde(with = "units::duration")]
    pub scan_timeout: Duration,
    /// Which plugin files the host runs: `permissions` or `pinned`. Defaults to
    /// `permissions`.
    pub trust: TrustMode,
    /// The trust file of `pinned`; empty means `trusted.toml` in `$CONFIGURATION_DIRECTORY`
    /// (systemd), else in `$XDG_CONFIG_HOME/plugin-host` (Windows: `%APPDATA%\plugin-host`).
    /// Defaults to empty.
    pub trust_file: PathBuf,
    /// Whether `run` follows the plugins directory (new, removed and changed files):
    /// `true` (inotify and the like, polling where that cannot be set up), `"poll"`
    /// (every second, for file systems that report no changes, such as NFS), or `false`
    /// (only SIGHUP and `POST /plugins/rescan` rescan). Defaults to true.
    pub watch: WatchMode,
    /// With `watch = true`, how often the directory is rescanned anyway, in case a change
    /// notification was missed (at least 1 s). Defaults to 30 s.
    #[serde(with = "units::duration")]
    pub watch_rescan: Duration,
    /// Whether isolated components run in a sandbox unless `[components.NAME] sandbox`
    /// says otherwise: `false`, `true` or `"best-effort"`. Defaults to false.
    pub sandbox: SandboxMode,
    /// Where components run unless `[components.NAME] isolation` says otherwise:
    /// `in-process`, or `process` (a worker process per plugin library). Defaults to
    /// `in-process`.
    pub isolation: Isolation,
    /// A plugins directory on a `noexec` mount (no library on it can be mapped): `true`
    /// loads verified copies from the cache directory, `false` refuses it. Defaults to
    /// true.
    pub copy_from_noexec: bool,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            plugins_dir: PathBuf::from("plugins"),
            cache_dir: PathBuf::new(),
            scan_concurrency: 4,
            init_concurrency: 4,
            scan_timeout: Duration::from_secs(10),
            trust: TrustMode::Permissions,
            trust_file: PathBuf::new(),
            watch: WatchMode::Notify,
            watch_rescan: Duration::from_secs(30),
            sandbox: SandboxMode::Off,
            isolation: Isolation::InProcess,
            copy_from_noexec: true,
        }
    }
}

/// `"auto"`, a size such as `"2GiB"`, or a number of bytes.
/// As written in the file: `"auto"` or a number of bytes.
impl Serialize for MemoryLimit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::Bytes(bytes) => s.serialize_u64(*bytes),
        }
    }
}

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
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// `"auto"` or a size such as `"2GiB"`. Defaults to `"auto"`.
    pub limit: MemoryLimit,
    /// How often the sampler reads RSS. Defaults to 1 s.
    #[serde(with = "units::duration")]
    pub sample_interval: Duration,
    /// Least idle time before a component may be evicted. Defaults to 300 s.
    #[serde(with = "units::duration")]
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
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    /// Init and call timeout when nothing more specific is set. Defaults to 30 s.
    #[serde(with = "units::duration")]
    pub default: Duration,
    /// How long each component may take to stop. Defaults to 10 s.
    #[serde(with = "units::duration")]
    pub stop: Duration,
    /// Method name -> call timeout, for every component. Defaults to none.
    #[serde(with = "units::duration_map")]
    pub operations: BTreeMap<String, Duration>,
    /// How long a call on an isolated component may run past its timeout before its
    /// worker process is killed. Defaults to 1 s.
    #[serde(with = "units::duration")]
    pub kill_grace: Duration,
    /// The longest gap between two items of a stream before the stream is ended (not a
    /// bound on the whole stream). Defaults to 30 s.
    #[serde(with = "units::duration")]
    pub stream_idle: Duration,
    /// How long a worker may leave what the host writes to it unread (its link full)
    /// before it is killed for breaking the protocol. Defaults to 30 s.
    #[serde(with = "units::duration")]
    pub worker_unread: Duration,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            default: Duration::from_secs(30),
            stop: Duration::from_secs(10),
            operations: BTreeMap::new(),
            kill_grace: Duration::from_secs(1),
            stream_idle: Duration::from_secs(30),
            worker_unread: Duration::from_secs(30),
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Share of calls whose latency is timed, 0 to 1. Defaults to 0.1.
    pub sample_rate: f64,
    /// Share of in-process calls whose CPU time is read (a system call each side), 0 to 1,
    /// scaled up in `cpu_seconds`; isolated calls are all counted by their worker.
    /// Defaults to 0.01.
    pub cpu_sample_rate: f64,
    /// How often histograms are summarised. Defaults to 10 s.
    #[serde(with = "units::duration")]
    pub aggregation_interval: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            sample_rate: 0.1,
            cpu_sample_rate: 0.01,
            aggregation_interval: Duration::from_secs(10),
        }
    }
}

/// `[telemetry]`: traces exported over OTLP. Off unless an endpoint is given here or
/// in `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the standard
/// variables win over the file).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Where spans go: an OTLP collector's base URL (`http://127.0.0.1:4318` over HTTP,
    /// whose `/v1/traces` path is added unless given; `http://127.0.0.1:4317` for gRPC).
    /// None: no export.
    pub otlp_endpoint: Option<String>,
    /// `"http/protobuf"` (the default, as the specification recommends), `"http/json"`
    /// or `"grpc"`; `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, then
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`, win.
    pub otlp_protocol: String,
    /// Share of new traces recorded, 0 to 1 (a call in a client's trace follows the
    /// client's decision). Defaults to 1.
    pub sample_ratio: f64,
    /// The `service.name` spans carry. Defaults to "plugin-host".
    pub service_name: String,
    /// A PEM file of CA certificates an `https://` collector's certificate may chain to,
    /// beside the system's roots (a private CA); `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`,
    /// then `OTEL_EXPORTER_OTLP_CERTIFICATE`, win. None: the system's roots only.
    pub otlp_certificate: Option<PathBuf>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_certificate: None,
            otlp_endpoint: None,
            otlp_protocol: "http/protobuf".to_owned(),
            sample_ratio: 1.0,
            service_name: "plugin-host".to_owned(),
        }
    }
}

/// `[locks]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocksConfig {
    /// Lock names, first acquired first. Defaults to empty.
    pub order: Vec<String>,
    /// Defaults to `deny`.
    pub on_order_violation: OrderViolation,
    /// Defaults to true.
    pub deadlock_detection: bool,
    /// Acquire timeout. Defaults to 5 s.
    #[serde(with = "units::duration")]
    pub default_timeout: Duration,
    /// Holding longer is logged. Defaults to 30 s.
    #[serde(with = "units::duration")]
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

/// `[limits]`: how much of the host one component or plugin may take.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
    /// The largest reply one call may return, in process and isolated alike; a larger one
    /// fails that call as `reply_too_large` (an isolated worker never sends it, and keeps
    /// running). Defaults to 64 MiB.
    #[serde(with = "units::size")]
    pub max_reply: u64,
    /// Requests, replies and stream items of this many bytes or more cross to and from an
    /// isolated worker in shared memory (a new sealed memfd each, on Linux) with only its
    /// descriptor on the link; smaller ones, and all of them elsewhere, travel on the link.
    /// 0, the default, keeps every one on the link: where touching new pages is dear (the
    /// virtual machines measured, BENCHMARKS.md) a fresh region costs more than the link's
    /// two copies. Try `"64KiB"` where it is not.
    #[serde(with = "units::size")]
    pub shared_memory_from: u64,
    /// Threads and processes one worker process may run at once, what its plugin starts
    /// included: past it, the plugin's next thread or process is refused (`EAGAIN`), so
    /// a thread or fork bomb stays inside its worker. Linux 6.14 and later (the worker's
    /// PID namespace's `pid_max`, this plus the 300 ids the kernel keeps back once they
    /// wrap, so up to 300 more until then); elsewhere, and outside a namespace, not
    /// capped. 0: not capped. Defaults to 1024.
    pub worker_tasks: u32,
    /// Requests of one worker's plugin code (locks, dependency calls, metrics) the host
    /// serves at once, each on a plugin thread; a worker with more in flight breaks the
    /// protocol and is killed. Defaults to 256.
    pub worker_requests: usize,
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
            max_reply: 64 << 20,
            shared_memory_from: 0,
            worker_tasks: 1024,
            worker_requests: 256,
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
    #[serde(deserialize_with = "units::duration_map::deserialize")]
    pub operations: BTreeMap<String, Duration>,
    /// The most CPU time one call may use; a call past it is abandoned as a hung call is
    /// (and, isolated, its worker killed after the kill grace). Unset: no budget.
    #[serde(deserialize_with = "units::opt_duration")]
    pub cpu_per_call: Option<Duration>,
    /// Overrides `[limits] max_concurrent_calls`.
    pub max_concurrent_calls: Option<usize>,
    /// Overrides `[limits] quarantine_after`.
    pub quarantine_after: Option<usize>,
    /// Overrides `[limits] log_records_per_second`.
    pub log_records_per_second: Option<u32>,
    /// Overrides `[host] isolation`: `in-process` or `process`.
    pub isolation: Option<Isolation>,
    /// The most RSS its worker process may use (isolated components only); the worker
    /// is killed past it. A worker's limit is the largest among its components'.
    #[serde(deserialize_with = "units::opt_size")]
    pub memory_limit: Option<u64>,
    /// Overrides `[host] sandbox` (isolated components only).
    pub sandbox: Option<SandboxMode>,
    /// What the sandbox grants, each key replacing what the plugin declares (narrowing or
    /// widening it).
    pub sandbox_grants: SandboxGrants,
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
            cpu_per_call: None,
            max_concurrent_calls: None,
            quarantine_after: None,
            log_records_per_second: None,
            isolation: None,
            memory_limit: None,
            sandbox: None,
            sandbox_grants: SandboxGrants::default(),
            config: toml::Table::new(),
        }
    }
}

impl ComponentConfig {
    /// Where the component runs, given the host-wide default.
    pub fn isolation_or(&self, default: Isolation) -> Isolation {
        self.isolation.unwrap_or(default)
    }

    /// Whether it runs sandboxed, given the host-wide default.
    pub fn sandbox_or(&self, default: SandboxMode) -> SandboxMode {
        self.sandbox.unwrap_or(default)
    }

    /// The component's own settings (`[components.NAME.config]`) as the JSON handed to it.
    ///
    /// # Errors
    ///
    /// When a value has no JSON form; [`Config::problems`] reports it at load.
    pub fn config_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(&self.config)
    }
}

/// How `run` follows the plugins directory: `[host] watch`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WatchMode {
    /// `true`: change notifications from the kernel, polling where they cannot be had.
    #[default]
    Notify,
    /// `"poll"`: a rescan every second, whatever the file system reports.
    Poll,
    /// `false`: only when asked (SIGHUP, `POST /plugins/rescan`).
    Off,
}

impl Serialize for WatchMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Notify => s.serialize_bool(true),
            Self::Off => s.serialize_bool(false),
            Self::Poll => s.serialize_str("poll"),
        }
    }
}

impl<'de> Deserialize<'de> for WatchMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match flag_or_word(d, "poll")? {
            FlagOrWord::True => Self::Notify,
            FlagOrWord::False => Self::Off,
            FlagOrWord::Word => Self::Poll,
        })
    }
}

/// Where a component runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Isolation {
    /// In the host's process: the fastest, and trusted with the whole host.
    #[default]
    #[serde(rename = "in-process")]
    InProcess,
    /// In a worker process of its library, which the host can kill.
    #[serde(rename = "process")]
    Process,
    /// In the host's process until one of its calls panics, times out or it is
    /// quarantined; from then on in a worker process (until the host restarts).
    #[serde(rename = "auto")]
    Auto,
}

impl Isolation {
    /// As in the config file: `in-process` or `process`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProcess => "in-process",
            Self::Process => "process",
            Self::Auto => "auto",
        }
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How spans travel to an OTLP collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtlpProtocol {
    /// `http/protobuf`: the specification's default, which every collector accepts.
    #[default]
    HttpProtobuf,
    /// `http/json`: the same messages as JSON.
    HttpJson,
    /// `grpc`: the same messages over gRPC (HTTP/2), to the collector's gRPC port (4317).
    Grpc,
}

/// An OTLP setting this build cannot export with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OtlpProblem {
    /// Not an OTLP protocol at all.
    #[error("\"{0}\" is not an OTLP protocol; use \"http/protobuf\" (the specification's default, on the collector's HTTP port, 4318), \"http/json\" or \"grpc\" (on its gRPC port, 4317)")]
    NoProtocol(String),
    /// Not an endpoint URL.
    #[error("{0:?} is not an http:// or https:// URL of an OTLP collector (e.g. \"http://127.0.0.1:4318\")")]
    NoEndpoint(String),
    /// A CA certificate for a collector reached over plain HTTP.
    #[error("a CA certificate applies to an https:// collector, and {0} is plain HTTP; use https:// or remove the certificate")]
    CertificateForPlainHttp(String),
    /// A CA file that cannot be read.
    #[error("cannot be read ({0})")]
    CertificateUnreadable(std::io::Error),
    /// A CA file without a PEM certificate in it.
    #[error("holds no PEM certificate (a block that begins {CERTIFICATE_BEGINS}); give the collector's CA certificate in PEM")]
    NoCertificate,
}

/// How a PEM certificate begins.
const CERTIFICATE_BEGINS: &str = "-----BEGIN CERTIFICATE-----";

/// The PEM certificates in `path`, to trust for the collector at `url`.
pub(crate) fn read_certificate(path: &std::path::Path, url: &str) -> Result<Vec<u8>, OtlpProblem> {
    if !url.starts_with("https://") {
        return Err(OtlpProblem::CertificateForPlainHttp(url.to_owned()));
    }
    read_pem(path)
}

/// The PEM certificates in `path` (read bounded, as the host's other text files).
pub(crate) fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, OtlpProblem> {
    let pem = crate::util::read_text_at_most(path, crate::util::TEXT_FILE_AT_MOST)
        .map_err(OtlpProblem::CertificateUnreadable)?;
    if !pem.contains(CERTIFICATE_BEGINS) {
        return Err(OtlpProblem::NoCertificate);
    }
    Ok(pem.into_bytes())
}

/// The OTLP protocol `protocol` names.
pub(crate) fn check_protocol(protocol: &str) -> Result<OtlpProtocol, OtlpProblem> {
    match protocol {
        "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
        "http/json" => Ok(OtlpProtocol::HttpJson),
        "grpc" => Ok(OtlpProtocol::Grpc),
        other => Err(OtlpProblem::NoProtocol(other.to_owned())),
    }
}

/// Checks an OTLP endpoint: an `http://` or `https://` URL.
pub(crate) fn check_endpoint(endpoint: &str) -> Result<(), OtlpProblem> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        _ => Err(OtlpProblem::NoEndpoint(endpoint.to_owned())),
    }
}
