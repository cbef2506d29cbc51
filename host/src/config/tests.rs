use super::*;
use std::time::Duration;

/// Parses `text` and returns the one problem it must have, as displayed.
fn rejected(text: &str) -> String {
    match Config::from_toml(text) {
        Ok(config) => panic!("accepted:\n{text}\nas {config:?}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn the_example_config_is_valid_and_matches_the_defaults() {
    let example = include_str!("../../../examples/host.toml");
    let config = Config::from_toml(example).expect("examples/host.toml is valid");
    let defaults = Config::default();
    // Every section whole: a key documented with a value other than its default fails.
    assert_eq!(config.host, defaults.host);
    assert_eq!(config.memory, defaults.memory);
    assert_eq!(config.timeouts, defaults.timeouts);
    assert_eq!(config.metrics, defaults.metrics);
    assert_eq!(config.locks, defaults.locks);
    assert_eq!(config.admin, defaults.admin);
    assert_eq!(config.limits, defaults.limits);
    assert_eq!(config.trust, defaults.trust);
    assert_eq!(config.sources, defaults.sources);
    assert_eq!(config.telemetry, defaults.telemetry);
    let history = &config.components["historical-data"];
    assert_eq!(history.memory_estimate, Some(100 << 20));
    assert_eq!(history.operations["bars"], Duration::from_secs(5));
}

#[test]
fn an_empty_file_gives_the_documented_defaults() {
    let config = Config::from_toml("").unwrap();
    assert_eq!(config.host.plugins_dir, PathBuf::from("plugins"));
    assert_eq!(config.host.scan_concurrency, 4);
    assert_eq!(config.host.init_concurrency, 4);
    assert_eq!(config.timeouts.default, Duration::from_secs(30));
    assert_eq!(config.timeouts.stop, Duration::from_secs(10));
    assert_eq!(config.memory.limit, MemoryLimit::Auto);
    assert_eq!(config.metrics.sample_rate, 0.1);
    assert_eq!(config.locks.on_order_violation, OrderViolation::Deny);
    assert!(config.locks.deadlock_detection);
}

#[test]
fn malformed_configs_are_each_rejected_naming_the_key() {
    let cases: &[(&str, &[&str])] = &[
        ("[host]\nplugin_dir = \"x\"\n", &["plugin_dir", "line 2"]),
        ("[hots]\n", &["hots"]),
        (
            "[host]\nscan_concurrency = \"two\"\n",
            &["host.scan_concurrency", "line 2"],
        ),
        (
            "[host]\nscan_concurrency = 0\n",
            &["host.scan_concurrency", "at least 1"],
        ),
        (
            "[memory]\nlimit = \"lots\"\n",
            &["memory.limit", "not a size"],
        ),
        (
            "[memory]\nlimit = \"2 parsecs\"\n",
            &["memory.limit", "parsecs"],
        ),
        (
            "[components.quotes]\ncpu_per_call = \"0s\"\n",
            &["components.quotes.cpu_per_call", "positive"],
        ),
        (
            "[components.quotes]\ncpu_per_call = \"lots\"\n",
            &["components.quotes.cpu_per_call", "not a duration"],
        ),
        (
            "[memory]\nsample_interval = \"soon\"\n",
            &["memory.sample_interval", "not a duration"],
        ),
        (
            "[memory]\npressure = { medium = 0.9, high = 0.8, critical = 0.95 }\n",
            &["memory.pressure", "must rise"],
        ),
        (
            "[memory]\npressure = { medium = 0.5, high = 0.8, critical = 1.5 }\n",
            &["memory.pressure.critical", "outside (0, 1]"],
        ),
        (
            "[memory.pressure]\nextreme = 0.99\n",
            &["memory.pressure", "extreme"],
        ),
        (
            "[timeouts]\ndefault = \"0s\"\n",
            &["timeouts.default", "zero duration"],
        ),
        (
            "[timeouts.operations]\nbars = \"0ms\"\n",
            &["timeouts.operations.bars", "zero duration"],
        ),
        (
            "[metrics]\nsample_rate = 1.5\n",
            &["metrics.sample_rate", "[0, 1]"],
        ),
        (
            "[locks]\norder = [\"a\", \"b\", \"a\"]\n",
            &["locks.order", "`a` is named twice"],
        ),
        (
            "[locks]\non_order_violation = \"ignore\"\n",
            &["locks.on_order_violation", "ignore"],
        ),
        ("[admin]\nlisten = \"not an address\"\n", &["admin.listen"]),
        (
            "[admin]\nlisten = \"0.0.0.0:9464\"\n",
            &["admin.token", "beyond loopback"],
        ),
        (
            "[memory]\nlimit = \"1GiB\"\n[components.big]\nmemory_estimate = \"2GiB\"\n",
            &["components.big.memory_estimate", "above the memory limit"],
        ),
        (
            "[components.x]\npriority = 101\n",
            &["components.x.priority", "above 100"],
        ),
        (
            "[components.x]\neager = true\nenabled = false\n",
            &["components.x.eager", "cannot be disabled"],
        ),
        (
            "[components.x]\ntimeout = \"0s\"\n",
            &["components.x.timeout", "zero duration"],
        ),
        (
            "[components.x]\ncolour = \"red\"\n",
            &["components.x", "colour"],
        ),
        (
            "[components.x.operations]\nbars = 5\n",
            &["components.x.operations", "line 2"],
        ),
        ("[host\n", &["line 1"]),
    ];
    assert!(cases.len() >= 15);
    assert_each_rejected(cases);
}

#[test]
fn admin_limits_that_would_serve_nothing_are_rejected() {
    assert_each_rejected(&[
        (
            "[admin]\nmax_header_size = \"1KiB\"\n",
            &["admin.max_header_size", "at least 8KiB"],
        ),
        (
            "[admin]\nmax_connections = 0\n",
            &["admin.max_connections", "more than 0"],
        ),
        (
            "[admin]\nbody_timeout = \"0s\"\n",
            &["admin.body_timeout", "more than 0"],
        ),
        (
            "[admin]\nmax_body = 0\n",
            &["admin.max_body", "more than 0"],
        ),
    ]);
}

#[test]
fn limits_that_would_refuse_every_call_or_scan_are_rejected() {
    assert_each_rejected(&[
        (
            "[limits]\nmax_reply = \"0B\"\n",
            &["limits.max_reply", "0 refuses every reply"],
        ),
        (
            "[limits]\nmax_reply = \"5GiB\"\n",
            &["limits.max_reply", "does not fit a frame"],
        ),
        (
            "[limits]\nworker_tasks = 5\n",
            &["limits.worker_tasks", "at least 32, or 0"],
        ),
        (
            "[host]\nscan_timeout = \"0s\"\n",
            &["host.scan_timeout", "zero duration"],
        ),
        (
            "[timeouts]\nstream_idle = \"0s\"\n",
            &["timeouts.stream_idle", "zero duration"],
        ),
        (
            "[host]\ninit_concurrency = 9223372036854775807\n",
            &["host.init_concurrency", "at most 1000000"],
        ),
        (
            "[limits]\nworker_requests = 0\n",
            &["limits.worker_requests", "at least 1"],
        ),
        (
            "[components.x]\nmax_concurrent_calls = 0\n",
            &["components.x.max_concurrent_calls", "at least 1"],
        ),
        (
            "[timeouts]\nkill_grace = \"18446744073709551615s\"\n",
            &["timeouts.kill_grace", "at most 100 years"],
        ),
    ]);
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let message = rejected("[timeouts]\ndefault = \"0s\"\n[metrics]\nsample_rate = 2.0\n");
    assert!(
        message.contains("timeouts.default") && message.contains("metrics.sample_rate"),
        "{message}"
    );
}

#[test]
fn environment_overrides_win_over_the_file() {
    let file = "[memory]\nlimit = \"1GiB\"\n[timeouts]\ndefault = \"30s\"\n[host]\nplugins_dir = \"from-file\"\n";
    let env = [
        ("PLUGIN_HOST_MEMORY_LIMIT", "2GiB"),
        ("PLUGIN_HOST_TIMEOUTS_DEFAULT", "5s"),
        ("PLUGIN_HOST_METRICS_SAMPLE_RATE", "0.5"),
        ("PLUGIN_HOST_HOST_PLUGINS_DIR", "/opt/plugins"),
        ("UNRELATED", "ignored"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let config = Config::from_toml_with_env(file, env).unwrap();
    assert_eq!(config.memory.limit, MemoryLimit::Bytes(2 << 30));
    assert_eq!(config.timeouts.default, Duration::from_secs(5));
    assert_eq!(config.metrics.sample_rate, 0.5);
    assert_eq!(config.host.plugins_dir, PathBuf::from("/opt/plugins"));
}

#[test]
fn a_bad_environment_override_names_the_variable_or_key() {
    let env = [("PLUGIN_HOST_NOPE_KEY".to_owned(), "1".to_owned())];
    let config = Config::from_toml_with_env("", env).expect("an unknown name only warns");
    assert_eq!(config.warnings.len(), 1);
    assert!(
        config.warnings[0]
            .to_string()
            .contains("PLUGIN_HOST_NOPE_KEY"),
        "{:?}",
        config.warnings
    );
    let env = [(
        "PLUGIN_HOST_TIMEOUTS_DEFAULT".to_owned(),
        "forever".to_owned(),
    )];
    let message = Config::from_toml_with_env("", env).unwrap_err().to_string();
    assert!(
        message.contains("timeouts.default") && message.contains("environment"),
        "{message}"
    );
}

/// Each text rejected with every needle in its message.
fn assert_each_rejected(cases: &[(&str, &[&str])]) {
    for (text, needles) in cases {
        let message = rejected(text);
        for needle in *needles {
            assert!(
                message.contains(needle),
                "for\n{text}\nexpected `{needle}` in: {message}"
            );
        }
    }
}

#[test]
fn malformed_sources_and_trust_are_each_rejected_naming_the_key() {
    let cases: &[(&str, &[&str])] = &[
        ("[[sources]]\nname = \"x\"\n", &["sources[0].oci", "names nothing"]),
        (
            "[[sources]]\noci = \"r.example/a:1\"\noci-layout = \"d:1\"\n",
            &["sources[0].oci", "so is oci-layout"],
        ),
        (
            "[[sources]]\noci = \"registry.example:5000/p/md:1\"\ninsecure = true\n",
            &["sources[0].insecure", "loopback", "registry.example:5000"],
        ),
        (
            "[[sources]]\noci = \"127.0.0.1:5000/p/md:1\"\nplatform = \"amd64\"\n",
            &["sources[0].platform", "OS/ARCHITECTURE"],
        ),
        (
            "[[sources]]\noci = \"127.0.0.1:5000/a/md:1\"\n[[sources]]\noci = \"127.0.0.1:5000/b/md:1\"\n",
            &["sources[1].name", "\"md\" names two sources"],
        ),
        (
            "[[sources]]\noci = \"127.0.0.1:5000/p/md:1\"\npull = \"sometimes\"\n",
            &["sources", "pull", "line 3"],
        ),
        ("[trust]\nrequire_signature = true\n", &["trust.require_signature", "keygen"]),
        (
            "[[sources]]\noci = \"127.0.0.1:5000/p/md@sha256:00\"\nfollow = \"5m\"\n",
            &["sources[0].follow", "pinned by digest never moves"],
        ),
        (
            "[[sources]]\noci = \"127.0.0.1:5000/p/md:1\"\ntimeout = \"100ms\"\n",
            &["sources[0].timeout", "at least 1s"],
        ),
        (
            "[trust]\nkeys = [{ name = \"old\", public = \"bm90IGEga2V5\" }]\n",
            &["trust.keys[0].public", "\"old\"", "base64 of 32 bytes"],
        ),
    ];
    assert_each_rejected(cases);
}

#[test]
fn an_environment_value_of_many_quotes_in_a_row_is_read_as_it_is() {
    // 256 quotes in a row overflowed the TOML writer's counter when the merged config
    // was written back to text (found by the env_overlay fuzz target).
    let dir = format!("/opt/{}plugins", "\"".repeat(300));
    let env = [("PLUGIN_HOST_HOST_PLUGINS_DIR".to_owned(), dir.clone())];
    let config = Config::from_toml_with_env("", env).expect("a path of quotes");
    assert_eq!(config.host.plugins_dir, PathBuf::from(dir));
}

#[test]
fn localhost_listens_on_loopback_and_an_address_reads_back_as_written() {
    let config = Config::from_toml("[admin]\nlisten = \"localhost:9500\"\n").expect("localhost");
    assert_eq!(
        config.admin.listen,
        "127.0.0.1:9500".parse().expect("address")
    );
    let config = Config::from_toml("[admin]\nlisten = \"[::1]:9501\"\n").expect("IPv6");
    let written = toml::to_string(&config).expect("serialise");
    assert!(written.contains("listen = \"[::1]:9501\""), "{written}");
    let read_back = Config::from_toml(&written).expect("read back");
    assert_eq!(read_back.admin, config.admin);
    // A name is not looked up: it could mean another interface tomorrow.
    for text in [
        "not an address",
        "example.com:9464",
        "localhost",
        "localhost:http",
    ] {
        let said = rejected(&format!("[admin]\nlisten = {text:?}\n"));
        assert!(
            said.contains("admin.listen")
                && said.contains("write IP:PORT, like \"127.0.0.1:9464\""),
            "{said}"
        );
    }
}

#[test]
fn a_config_file_larger_than_any_config_is_refused_without_being_read_whole() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("host.toml");
    // Valid TOML (comments) just over the bound: refused for its size alone.
    let line = "# a comment line of sixty-four bytes, written again and again..\n";
    let lines = (crate::util::TEXT_FILE_AT_MOST as usize) / line.len() + 1;
    std::fs::write(&file, line.repeat(lines)).expect("write the file");
    let refused = Config::load(Some(&file)).expect_err("refused").to_string();
    assert!(
        refused.contains("larger than 16 MiB") && refused.contains("host.toml"),
        "{refused}"
    );
}

#[test]
fn an_otlp_certificate_that_cannot_serve_is_rejected_naming_the_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let not_pem = dir.path().join("not-pem.txt");
    std::fs::write(&not_pem, "a note, not a certificate\n").expect("written");
    let pem = dir.path().join("ca.pem");
    std::fs::write(
        &pem,
        "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
    )
    .expect("written");
    let missing = dir.path().join("missing.pem");
    let section = |endpoint: &str, file: &std::path::Path| {
        format!(
            "[telemetry]\n{endpoint}otlp_certificate = {:?}\n",
            file.display().to_string()
        )
    };
    let (missing_text, not_pem_text, plain_text) = (
        section("", &missing),
        section("otlp_endpoint = \"https://127.0.0.1:4318\"\n", &not_pem),
        section("otlp_endpoint = \"http://127.0.0.1:4318\"\n", &pem),
    );
    let (missing_name, not_pem_name) =
        (missing.display().to_string(), not_pem.display().to_string());
    assert_each_rejected(&[
        (
            &missing_text,
            &[
                "telemetry.otlp_certificate",
                &missing_name,
                "cannot be read",
            ],
        ),
        (
            &not_pem_text,
            &[
                "telemetry.otlp_certificate",
                &not_pem_name,
                "no PEM certificate",
            ],
        ),
        (&plain_text, &["telemetry.otlp_certificate", "plain HTTP"]),
    ]);
    // The same file for an https:// collector, or before any endpoint is known, is taken.
    for endpoint in ["otlp_endpoint = \"https://127.0.0.1:4318\"\n", ""] {
        Config::from_toml(&section(endpoint, &pem)).expect("a PEM CA for an https:// collector");
    }
}
