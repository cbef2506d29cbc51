//! `plugin-host status`: a running host's plugins, components and memory, read from its
//! admin API through the API's own types (`plugin_host_admin::api`).

use std::{net::ToSocketAddrs, process::ExitCode, time::Duration};

use anyhow::Context as _;
use plugin_host::{format_bytes, Isolation};
use plugin_host_admin::api;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{CliResult, Failure, GlobalArgs};

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// Admin API address of the running host, HOST:PORT (`localhost:9464`,
    /// `10.0.0.5:9464`) [default: the config's admin.listen].
    #[arg(long, value_name = "HOST:PORT")]
    addr: Option<String>,
    /// Bearer token [default: the config's admin.token].
    #[arg(long, env = "PLUGIN_HOST_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// Everything `status` reads, as one document (`--json`).
#[derive(Debug, Serialize, Deserialize)]
struct Status {
    address: String,
    health: api::Health,
    ready: api::Readiness,
    plugins: api::Plugins,
    components: api::Components,
    memory: api::Memory,
}

pub(crate) async fn run(global: &GlobalArgs, args: StatusArgs) -> CliResult {
    let config = global.config()?;
    let addr = match args.addr {
        Some(addr) => addr.trim_start_matches("http://").trim_end_matches('/').to_owned(),
        None if config.admin.listen.port() == 0 => {
            return Err(Failure::usage(anyhow::anyhow!(
                "admin.listen uses port 0, so the host's port is not known here; pass --addr with the address `run` printed"
            )))
        }
        None => config.admin.listen.to_string(),
    };
    check_address(&addr)?;
    let token = args
        .token
        .or_else(|| Some(config.admin.token.clone()).filter(|t| !t.is_empty()));
    let base = format!("http://{addr}");
    let fetched = tokio::task::spawn_blocking(move || fetch_all(base, token.as_deref())).await??;
    if args.json {
        say!("{}", serde_json::to_string_pretty(&fetched)?);
    } else {
        print_tables(&fetched);
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses an address that is not HOST:PORT or does not resolve, saying which.
fn check_address(addr: &str) -> Result<(), Failure> {
    match addr.to_socket_addrs().map(|mut resolved| resolved.next()) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Failure::usage(anyhow::anyhow!(
            "{addr} resolves to no address"
        ))),
        Err(err) => Err(Failure::usage(anyhow::anyhow!(
            "--addr {addr} is not HOST:PORT that resolves ({err}); for example localhost:9464"
        ))),
    }
}

fn fetch_all(base: String, token: Option<&str>) -> anyhow::Result<Status> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let get = |path: &str| -> anyhow::Result<ureq::Response> {
        let mut request = agent.get(&format!("{base}{path}"));
        if let Some(token) = token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        match request.call() {
            Ok(response) => Ok(response),
            // Not ready is an answer, not a failure.
            Err(ureq::Error::Status(503, response)) if path == "/readyz" => Ok(response),
            Err(ureq::Error::Status(status, response)) => {
                // Not our error shape: something else listens there.
                let message = response.into_json::<api::ErrorBody>().map_or_else(
                    |_| {
                        "not the admin API's answer; is a `plugin-host run` listening there?"
                            .to_owned()
                    },
                    |body| body.error.message,
                );
                anyhow::bail!("{base}{path} answered {status}: {message}")
            }
            Err(err) => anyhow::bail!(
                "cannot reach the admin API at {base}: {}; is `plugin-host run` running there?",
                innermost(&err)
            ),
        }
    };
    let read = |path: &str| -> anyhow::Result<serde_json::Value> {
        get(path)?
            .into_json()
            .with_context(|| format!("reading {base}{path}"))
    };
    Ok(Status {
        health: typed(read("/healthz")?, "/healthz")?,
        ready: typed(read("/readyz")?, "/readyz")?,
        plugins: typed(read("/plugins")?, "/plugins")?,
        components: typed(read("/components")?, "/components")?,
        memory: typed(read("/memory")?, "/memory")?,
        address: base.clone(),
    })
}

/// Reads an answer as its API type: a host of another version is named, not shown as "-".
fn typed<T: DeserializeOwned>(value: serde_json::Value, path: &str) -> anyhow::Result<T> {
    serde_json::from_value(value).with_context(|| {
        format!("{path} does not answer in this version's admin API shape; is the host the same version as this plugin-host ({})?", env!("CARGO_PKG_VERSION"))
    })
}

/// What an error comes down to: the last of its causes (a connection's "Connection
/// refused", not the layers that carried it).
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn bytes(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), format_bytes)
}

fn print_tables(status: &Status) {
    print_summary(status);
    say!();
    print_plugins(&status.plugins);
    say!();
    print_components(&status.components.components);
}

fn print_summary(status: &Status) {
    say!(
        "host at {}: {}, {}",
        status.address,
        status.health.status,
        match (&status.ready.ready, &status.ready.shutting_down) {
            (_, true) => "stopping",
            (true, _) => "ready",
            _ => "not ready",
        }
    );
    let memory = &status.memory;
    say!(
        "memory: RSS {} of {} limit, {} reserved, pressure {}, {} evictions ({} reclaimed), {} workers",
        format_bytes(memory.rss_bytes),
        format_bytes(memory.limit_bytes),
        format_bytes(memory.reserved_bytes),
        memory.pressure,
        memory.evictions,
        format_bytes(memory.reclaimed_bytes),
        memory.workers.len(),
    );
}

fn print_plugins(plugins: &api::Plugins) {
    say!("PLUGIN                   VERSION   LOADED  FILE");
    for verdict in &plugins.plugins {
        let file = verdict
            .path
            .file_name()
            .map_or_else(|| "-".into(), |n| n.to_string_lossy());
        let loaded = if verdict.loaded == Some(true) {
            "yes"
        } else {
            "no"
        };
        match (&verdict.plugin, &verdict.error) {
            (Some(info), _) => {
                say!("{:<24} {:<9} {loaded:<7} {file}", info.name, info.version);
            }
            (None, error) => say!(
                "{:<24} {:<9} {:<7} {file}: {}",
                "(unusable)",
                "-",
                "no",
                error.as_ref().map_or("error", |e| e.kind.as_str())
            ),
        }
        if let Some(source) = &verdict.source {
            say!("{:<24} source: {}", "", super::source_line(source));
        }
    }
}

fn print_components(components: &[api::Component]) {
    say!(
        "{:<20} {:<12} {:<18} {:<14} {:>10} {:>10} {:>10} {:>7} {:>6} {:>10} {:>9}",
        "COMPONENT",
        "STATE",
        "PLUGIN",
        "MODE",
        "ESTIMATE",
        "MEASURED",
        "INIT",
        "CALLS",
        "ERRORS",
        "P99",
        "CPU"
    );
    for component in components {
        let mode = match (component.isolation, component.worker_pid) {
            (Isolation::Process, Some(pid)) => format!("pid {pid}"),
            (Isolation::Auto, Some(pid)) => format!("auto, pid {pid}"),
            (isolation, _) => isolation.to_string(),
        };
        let p99 = component.call_latency.p99_ms;
        say!(
            "{:<20} {:<12} {:<18} {:<14} {:>10} {:>10} {:>10} {:>7} {:>6} {:>10} {:>9}",
            component.name,
            component.state,
            component.plugin.as_deref().unwrap_or("native"),
            mode,
            bytes(Some(component.memory_estimate_bytes)),
            bytes(component.memory_measured_bytes),
            component
                .init_ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms")),
            component.calls,
            component.call_errors,
            if p99 > 0.0 {
                format!("{p99:.2} ms")
            } else {
                "-".to_owned()
            },
            format!("{:.3} s", component.cpu_seconds),
        );
        if let (Some(_), Some(fence)) = (component.worker_pid, &component.fence) {
            say!("    fence: {fence}");
        }
        if let Some(sandbox) = component.sandbox.as_ref().and_then(|s| s.applied.as_ref()) {
            say!("    sandbox: {sandbox}");
        }
        if component.cpu_overruns > 0 {
            say!(
                "    cpu budget: {} call(s) abandoned over cpu_per_call",
                component.cpu_overruns
            );
        }
        if let Some(error) = &component.last_error {
            say!("    last error: {error}");
        }
    }
}
