//! `plugin-host status`: a running host's plugins, components and memory, read from its
//! admin API.

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use anyhow::Context as _;
use plugin_host::format_bytes;
use serde_json::Value;

use super::{CliResult, Failure, GlobalArgs};

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// Admin API address of the running host [default: the config's admin.listen].
    #[arg(long, value_name = "ADDR")]
    addr: Option<SocketAddr>,
    /// Bearer token [default: the config's admin.token].
    #[arg(long, env = "PLUGIN_HOST_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(global: &GlobalArgs, args: StatusArgs) -> CliResult {
    let config = global.config()?;
    let addr = args.addr.unwrap_or(config.admin.listen);
    if addr.port() == 0 {
        return Err(Failure::usage(anyhow::anyhow!(
            "admin.listen uses port 0, so the host's port is not known here; pass --addr with the address `run` printed"
        )));
    }
    let token = args
        .token
        .or_else(|| Some(config.admin.token.clone()).filter(|t| !t.is_empty()));
    let base = format!("http://{addr}");
    let fetched = tokio::task::spawn_blocking(move || fetch_all(&base, token.as_deref())).await??;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&fetched)?);
    } else {
        print_tables(&addr, &fetched);
    }
    Ok(ExitCode::SUCCESS)
}

fn fetch_all(base: &str, token: Option<&str>) -> anyhow::Result<Value> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let get = |path: &str| -> anyhow::Result<Value> {
        let mut request = agent.get(&format!("{base}{path}"));
        if let Some(token) = token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        match request.call() {
            Ok(response) => response
                .into_json()
                .with_context(|| format!("reading {base}{path}")),
            Err(ureq::Error::Status(status, response)) => {
                let body: Value = response.into_json().unwrap_or_default();
                let message = body["error"]["message"]
                    .as_str()
                    .unwrap_or("no details")
                    .to_owned();
                if path == "/readyz" && status == 503 {
                    return Ok(body);
                }
                anyhow::bail!("{base}{path} answered {status}: {message}")
            }
            Err(err) => Err(err).with_context(|| {
                format!("cannot reach the admin API at {base}; is `plugin-host run` running there?")
            }),
        }
    };
    Ok(serde_json::json!({
        "address": base,
        "health": get("/healthz")?,
        "ready": get("/readyz")?,
        "plugins": get("/plugins")?,
        "components": get("/components")?,
        "memory": get("/memory")?,
    }))
}

fn bytes(value: &Value) -> String {
    value.as_u64().map_or_else(|| "-".to_owned(), format_bytes)
}

fn millis(seconds: f64) -> String {
    if seconds <= 0.0 {
        "-".to_owned()
    } else {
        format!("{:.2} ms", seconds * 1000.0)
    }
}

fn print_tables(addr: &SocketAddr, status: &Value) {
    print_summary(addr, status);
    println!();
    print_plugins(&status["plugins"]["plugins"]);
    println!();
    print_components(&status["components"]);
}

fn print_summary(addr: &SocketAddr, status: &Value) {
    let ready = status["ready"]["ready"].as_bool().unwrap_or(false);
    println!(
        "host at http://{addr}: {}, {}",
        status["health"]["status"].as_str().unwrap_or("unknown"),
        if ready { "ready" } else { "not ready" }
    );
    let memory = &status["memory"];
    println!(
        "memory: RSS {} of {} limit, {} reserved, pressure {}, {} evictions ({} reclaimed)",
        bytes(&memory["rss"]),
        bytes(&memory["limit"]),
        bytes(&memory["reserved"]),
        memory["pressure"].as_str().unwrap_or("-"),
        memory["evictions"],
        bytes(&memory["reclaimed"]),
    );
}

fn print_plugins(plugins: &Value) {
    println!("PLUGIN                   VERSION   LOADED  FILE");
    for plugin in plugins.as_array().into_iter().flatten() {
        let file = plugin["path"]
            .as_str()
            .and_then(|p| p.rsplit('/').next())
            .unwrap_or("-");
        let loaded = if plugin["loaded"].as_bool().unwrap_or(false) {
            "yes"
        } else {
            "no"
        };
        if plugin["usable"].as_bool().unwrap_or(false) {
            println!(
                "{:<24} {:<9} {:<7} {file}",
                plugin["plugin"]["name"].as_str().unwrap_or("-"),
                plugin["plugin"]["version"].as_str().unwrap_or("-"),
                loaded
            );
        } else {
            println!(
                "{:<24} {:<9} {:<7} {file}: {}",
                "(unusable)",
                "-",
                "no",
                plugin["error"]["kind"].as_str().unwrap_or("error")
            );
        }
    }
}

fn print_components(components: &Value) {
    println!(
        "{:<20} {:<12} {:<18} {:<14} {:>10} {:>10} {:>10} {:>7} {:>6} {:>10}",
        "COMPONENT",
        "STATE",
        "PLUGIN",
        "MODE",
        "ESTIMATE",
        "MEASURED",
        "INIT",
        "CALLS",
        "ERRORS",
        "P99"
    );
    for component in components.as_array().into_iter().flatten() {
        let mode = match (
            component["isolation"].as_str(),
            component["worker_pid"].as_u64(),
        ) {
            (Some("process"), Some(pid)) => format!("pid {pid}"),
            (Some(mode), _) => mode.to_owned(),
            (None, _) => "-".to_owned(),
        };
        println!(
            "{:<20} {:<12} {:<18} {:<14} {:>10} {:>10} {:>10} {:>7} {:>6} {:>10}",
            component["name"].as_str().unwrap_or("-"),
            component["state"].as_str().unwrap_or("-"),
            component["plugin"].as_str().unwrap_or("native"),
            mode,
            bytes(&component["memory_estimate"]),
            bytes(&component["memory_measured"]),
            component["init_ms"]
                .as_f64()
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms")),
            component["calls"].to_string(),
            component["call_errors"].to_string(),
            millis(
                component["latency"]["call_latency"]["p99"]
                    .as_f64()
                    .unwrap_or(0.0)
            ),
        );
        if let Some(error) = component["last_error"].as_str() {
            println!("    last error: {error}");
        }
    }
}
