//! Registries as operators meet them: one that asks for a password, one that accepts a
//! connection and never answers.

use std::{
    fs,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use plugin_host_tests::{library, success_stdout, Sandbox, TestRegistry, DEADLINE};

use super::failure_text;

/// User `fleet`, password `fleet-secret` (bcrypt).
const FLEET_HTPASSWD: &str = "fleet:$2b$12$9RpbjHwtGV2rMXJHb8lNluftAn5WdFA7NVNEjpXHh5mHozBTDNMne\n";

#[cfg(unix)]
#[test]
fn a_registry_that_asks_for_a_password_gets_it_from_a_credential_helper_or_docker_login() {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(registry) = TestRegistry::start_with_users(Some(FLEET_HTPASSWD)) else {
        return;
    };
    let sandbox = Sandbox::new();
    let reference = format!("{}/plugins/market-data:1", registry.address);
    let library = library("market-data");
    let library = library.to_str().expect("utf-8 path");
    // A helper as Docker's are: `get`, the registry on stdin, JSON out.
    let helpers = sandbox.root().join("helpers");
    fs::create_dir_all(&helpers).expect("helpers");
    let helper = helpers.join("docker-credential-fleet");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\nregistry=$(cat)\nif [ \"$1\" = get ] && [ \"$registry\" = \"{}\" ]; then\n  \
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"fleet\",\"Secret\":\"fleet-secret\"}}' \"$registry\"\n\
             else\n  echo 'credentials not found in native keychain'\n  exit 1\nfi\n",
            registry.address
        ),
    )
    .expect("the helper");
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).expect("executable");
    let path = format!(
        "{}:{}",
        helpers.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (sandbox, path) = (&sandbox, &path);
    let with_docker_config = |name: &str, config: &str| {
        let dir = sandbox.root().join(name);
        fs::create_dir_all(&dir).expect("a Docker config directory");
        fs::write(dir.join("config.json"), config).expect("config.json");
        move |args: &[&str]| {
            sandbox
                .host()
                .env("DOCKER_CONFIG", &dir)
                .env("PATH", path)
                .args(args)
                .output()
                .expect("plugin-host")
        }
    };
    let anonymous = with_docker_config("anonymous", "{}");
    let refused = failure_text(&anonymous(&["push", "--insecure", library, &reference]));
    assert!(
        refused.contains("401") || refused.contains("Not authorized"),
        "{refused}"
    );
    assert!(refused.contains("docker login"), "{refused}");
    let helped = with_docker_config(
        "helper",
        &format!(r#"{{"credHelpers": {{"{}": "fleet"}}}}"#, registry.address),
    );
    success_stdout(&helped(&["push", "--insecure", library, &reference]));
    let inspected = success_stdout(&helped(&[
        "inspect",
        "--insecure",
        &format!("oci://{reference}"),
    ]));
    assert!(inspected.contains("market-data"), "{inspected}");
    // "fleet:fleet-secret", as `docker login` writes it.
    let logged_in = with_docker_config(
        "login",
        &format!(
            r#"{{"auths": {{"{}": {{"auth": "ZmxlZXQ6ZmxlZXQtc2VjcmV0"}}}}}}"#,
            registry.address
        ),
    );
    let inspected = success_stdout(&logged_in(&[
        "inspect",
        "--insecure",
        &format!("oci://{reference}"),
    ]));
    assert!(inspected.contains("market-data"), "{inspected}");
    let refused = failure_text(&anonymous(&[
        "inspect",
        "--insecure",
        &format!("oci://{reference}"),
    ]));
    assert!(
        refused.contains("401") || refused.contains("Not authorized"),
        "{refused}"
    );
    assert!(refused.contains("docker login"), "{refused}");
}

/// A registry on loopback that accepts every connection and never writes a byte; each
/// connection's `mark` goes to `accepted` in the order they come.
fn silent_registry(mark: char, accepted: &Arc<Mutex<String>>) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let address = listener.local_addr().expect("its address");
    let accepted = Arc::clone(accepted);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            accepted.lock().expect("the log").push(mark);
            held.push(stream);
        }
    });
    address
}

#[test]
fn a_registry_that_accepts_and_never_answers_fails_each_pull_after_the_source_timeout_at_once() {
    let accepted = Arc::new(Mutex::new(String::new()));
    let sources = [
        ("market-data", silent_registry('m', &accepted)),
        ("risk-engine", silent_registry('r', &accepted)),
    ];
    let sandbox = Sandbox::new();
    let config: String = sources
        .iter()
        .map(|(name, address)| {
            format!(
                "[[sources]]\nname = \"{name}\"\noci = \"{address}/plugins/{name}:1\"\n\
                 insecure = true\ntimeout = \"2s\"\n"
            )
        })
        .collect();
    sandbox.write_config(&config);
    let config = sandbox.root().join("host.toml");
    let mut check = sandbox
        .host()
        .args(["--config", config.to_str().expect("utf-8 path"), "check"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("plugin-host check");
    let started = Instant::now();
    let ended = loop {
        if check.try_wait().expect("waiting").is_some() {
            break true;
        }
        if started.elapsed() > DEADLINE {
            let _ = check.kill();
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = check.wait_with_output().expect("its output");
    let text = failure_text(&output);
    assert!(
        ended,
        "check still waited on a silent registry after {DEADLINE:?}: {text}"
    );
    for (name, address) in sources {
        assert!(
            text.contains(&format!("source {name}:")) && text.contains(&address.to_string()),
            "{name} not named with its registry: {text}"
        );
    }
    assert!(text.contains("stayed silent"), "{text}");
    // One after the other, market-data's connections would all come before risk-engine's
    // first (each pull waits out its timeout on each request it makes).
    let order = accepted.lock().expect("the log").clone();
    let first_risk = order.find('r').expect("risk-engine's registry was asked");
    assert!(
        order[first_risk..].contains('m'),
        "the sources were pulled one after the other, not at once: {order}"
    );
}

/// `inspect oci://` and `push` wait on a registry as long as `--timeout` says, not the
/// default 30 s (an operator at a terminal, a CI job with its own budget).
#[test]
fn inspect_and_push_give_up_on_a_silent_registry_after_their_timeout() {
    let accepted = Arc::new(Mutex::new(String::new()));
    let address = silent_registry('i', &accepted);
    let sandbox = Sandbox::new();
    let reference = format!("{address}/plugins/market-data:1");
    let library = library("market-data");
    let commands = [
        vec!["inspect".to_owned(), format!("oci://{reference}")],
        vec!["push".to_owned(), library.display().to_string(), reference],
    ];
    for command in commands {
        let mut child = sandbox
            .host()
            .args(&command)
            .args(["--insecure", "--timeout", "2s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("plugin-host");
        // The default, 30 s a request, cannot end it in time.
        let limit = Duration::from_secs(25);
        let started = Instant::now();
        while child.try_wait().expect("waiting").is_none() && started.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(20));
        }
        let ended = child.try_wait().expect("waiting").is_some();
        if !ended {
            let _ = child.kill();
        }
        let output = child.wait_with_output().expect("its output");
        let text = failure_text(&output);
        assert!(ended, "{command:?} still waited after {limit:?}: {text}");
        assert!(text.contains("stayed silent"), "{command:?}: {text}");
    }
}
