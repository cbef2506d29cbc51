//! The admin HTTP API of a real `plugin-host run`, over loopback.

use plugin_host_tests::{
    library_file_name,
    metrics::{scrape, value_of},
    RunningHost, Sandbox,
};

fn histogram_count(scrape: &prometheus_parse::Scrape, name: &str, component: &str) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && s.labels.get("component") == Some(component))
        .unwrap_or_else(|| panic!("no histogram {name}{{component={component}}}"));
    match &sample.value {
        prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        _ => panic!("{name} is not a histogram"),
    }
}

#[test]
fn calls_over_http_are_counted_in_valid_prometheus_metrics_and_shown_by_status() {
    let sandbox = Sandbox::with_plugins(&["market-data", "historical-data"]);
    let host = RunningHost::start(&sandbox, "[admin]\nlisten = \"127.0.0.1:0\"\n");
    assert_eq!(host.get("/healthz").0, 200);
    for _ in 0..25 {
        let (status, quote) = host.call("market-data", "quote", r#"{"symbol":"GOOG"}"#);
        let quote = quote.unwrap_or_else(|err| panic!("{status}: {err:?}"));
        assert_eq!(quote["symbol"], "GOOG");
    }

    let (status, text) = host.get("/metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains("# TYPE plugin_host_component_calls_total counter"),
        "{text}"
    );
    let scrape = scrape(&text);
    assert_eq!(
        value_of(&scrape, "plugin_host_component_calls_total", "market-data"),
        25.0
    );
    assert_eq!(
        value_of(
            &scrape,
            "plugin_host_component_calls_total",
            "historical-data"
        ),
        0.0
    );
    assert!(
        scrape.docs.contains_key("plugin_host_memory_rss_bytes"),
        "HELP lines are present"
    );
    for family in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
        "plugin_host_build_info",
    ] {
        assert!(scrape.docs.contains_key(family), "{family} is exported");
    }
    let rss = scrape
        .samples
        .iter()
        .find(|s| s.metric == "process_resident_memory_bytes")
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) => v,
            _ => 0.0,
        })
        .expect("process RSS");
    assert!(rss > 1e6, "the host's RSS: {rss}");
    let build = scrape
        .samples
        .iter()
        .find(|s| s.metric == "plugin_host_build_info")
        .expect("build info");
    assert_eq!(
        build.labels.get("plugin_api"),
        Some(plugin_host::plugin_api::API_VERSION)
    );

    assert_eq!(host.component("market-data").state, "ready");
    assert_eq!(host.component("historical-data").state, "registered");

    // The library nobody called is not mapped into the running host.
    let maps =
        std::fs::read_to_string(format!("/proc/{}/maps", host.pid())).expect("/proc/PID/maps");
    let dir = sandbox.plugins_dir();
    assert!(maps.contains(
        &dir.join(library_file_name("market-data"))
            .display()
            .to_string()
    ));
    assert!(!maps.contains(
        &dir.join(library_file_name("historical-data"))
            .display()
            .to_string()
    ));

    // A host name, as operators type it.
    let addr = format!("localhost:{}", host.addr.port());
    let status = sandbox
        .host()
        .args(["status", "--addr", &addr])
        .output()
        .expect("plugin-host status");
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("market-data ") && l.contains("ready"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("ready") && row.contains(" 25 "), "{row}");
    assert!(
        table.contains("historical-data") && table.contains("registered"),
        "{table}"
    );
    let json = sandbox
        .host()
        .args(["status", "--json", "--addr", &addr])
        .output()
        .expect("plugin-host status --json");
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(
        parsed["components"]["components"][0]["name"],
        "historical-data"
    );
    let bad = sandbox
        .host()
        .args(["status", "--addr", "no port here"])
        .output()
        .expect("plugin-host status");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("HOST:PORT"));
    assert_eq!(host.stop(), Some(0));
}

#[test]
fn every_call_is_counted_exactly_and_the_latency_histogram_counts_the_calls_it_timed() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let host = RunningHost::start(
        &sandbox,
        "[admin]\nlisten = \"127.0.0.1:0\"\n[metrics]\nsample_rate = 0.25\n",
    );
    let calls = 400;
    for _ in 0..calls {
        assert_eq!(host.post("/components/market-data/call/symbols", "").0, 200);
    }
    let scrape = scrape(&host.get("/metrics").1);
    assert_eq!(
        value_of(&scrape, "plugin_host_component_calls_total", "market-data"),
        f64::from(calls),
        "calls_total is exact"
    );
    let timed = histogram_count(
        &scrape,
        "plugin_host_component_call_duration_seconds",
        "market-data",
    );
    // 400 calls sampled at 1/4: 100 timed on average; 43 is five standard deviations.
    assert!(
        (57.0..=143.0).contains(&timed) && timed.fract() == 0.0,
        "the histogram counts the calls it timed, unscaled: {timed}"
    );
    let docs = &scrape.docs["plugin_host_component_call_duration_seconds"];
    assert!(
        docs.contains("sample"),
        "its help says it is a sample: {docs}"
    );
}

#[test]
fn a_token_is_required_when_listening_beyond_loopback() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let refused = sandbox.write_config("[admin]\nlisten = \"0.0.0.0:0\"\n");
    let output = sandbox
        .host()
        .arg("--config")
        .arg(&refused)
        .arg("run")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("admin.token"));

    let host = RunningHost::start(
        &sandbox,
        "[admin]\nlisten = \"0.0.0.0:0\"\ntoken = \"s3cret\"\n",
    );
    assert!(host.printed.ip().is_unspecified());
    let (status, body) = host.get("/components");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("bearer token"), "{body}");
    let wrong = RunningHost::answer(
        host.request("GET", "/components")
            .set("Authorization", "Bearer nope")
            .call(),
    );
    assert_eq!(wrong.0, 401);
    let right = RunningHost::answer(
        host.request("GET", "/components")
            .set("Authorization", "Bearer s3cret")
            .call(),
    );
    assert_eq!(right.0, 200, "{}", right.1);
}

#[test]
fn probes_answer_without_the_token_when_allowed_and_readyz_fails_as_the_stop_begins() {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let host = RunningHost::start(
        &sandbox,
        "[admin]\nlisten = \"0.0.0.0:0\"\ntoken = \"s3cret\"\nprobes_without_token = true\n\
         [timeouts]\nstop = \"20s\"\n",
    );
    assert_eq!(host.get("/healthz").0, 200);
    let (status, body) = host.get("/readyz");
    assert_eq!(status, 200, "{body}");
    let ready: plugin_host_admin::api::Readiness = serde_json::from_str(&body).expect("readiness");
    assert!(ready.ready && !ready.shutting_down);
    assert_eq!(
        host.get("/components").0,
        401,
        "everything else needs the token"
    );

    // A call in flight holds the stop open; /readyz says 503 meanwhile.
    let authorized = |method: &str, path: &str| {
        host.request(method, path)
            .set("Authorization", "Bearer s3cret")
    };
    let call = authorized("POST", "/components/sleeper/call/sleep");
    let running =
        std::thread::spawn(move || RunningHost::answer(call.send_string(r#"{"ms":5000}"#)));
    plugin_host_tests::wait_for("the call to run", || {
        let (_, body) = RunningHost::answer(authorized("GET", "/components").call());
        let list: plugin_host_admin::api::Components = serde_json::from_str(&body).ok()?;
        let sleeper = list.components.into_iter().find(|c| c.name == "sleeper")?;
        (sleeper.calls_in_flight == 1).then_some(())
    });
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &host.pid().to_string()])
        .status();
    // Within the call's 5 s: the stop waits for it.
    let stopping = plugin_host_tests::wait_for("/readyz to say 503", || {
        let (status, body) = host.get("/readyz");
        (status == 503).then_some(body)
    });
    let stopping: plugin_host_admin::api::Readiness =
        serde_json::from_str(&stopping).expect("readiness");
    assert!(!stopping.ready && stopping.shutting_down);
    let (status, body) = running.join().expect("the call");
    assert_eq!(status, 200, "the call in flight finished: {body}");
    assert_eq!(
        host.wait(),
        Some(0),
        "the stop the SIGTERM began ends in order"
    );
}

#[test]
fn errors_come_back_as_json_with_fitting_status_codes() {
    let sandbox = Sandbox::with_plugins(&["market-data", "fixture-probe", "fixture-memory-hog"]);
    let config = "[admin]\nlisten = \"127.0.0.1:0\"\n[memory]\nlimit = \"100MiB\"\n\
                  [components.hog-low]\nmemory_estimate = \"90MiB\"\n\
                  [components.sleeper.operations]\nsleep = \"100ms\"\n";
    let host = RunningHost::start(&sandbox, config);
    let expect = |status: u16, (got, body): (u16, String)| {
        assert_eq!(got, status, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
        assert!(json["error"]["kind"].is_string(), "{json}");
        json["error"]["message"]
            .as_str()
            .expect("an error message")
            .to_owned()
    };
    expect(404, host.post("/components/order-book/call/depth", ""));
    expect(
        400,
        host.post("/components/market-data/call/quote", "{not json"),
    );
    expect(
        400,
        host.post("/components/market-data/call/quote", r#"{"symbol":"NOPE"}"#),
    );
    expect(404, host.post("/components/market-data/call/teleport", ""));
    // A kind a plugin names itself: its status and its kind, the whole text as message.
    let (status, body) = host.post("/components/counter/call/missing", "");
    assert_eq!(status, 404, "{body}");
    let error: plugin_host_admin::api::ErrorBody = serde_json::from_str(&body).expect("error");
    assert_eq!(error.error.kind, "not_found");
    assert!(
        error
            .error
            .message
            .contains("[not_found] no such thing here"),
        "{body}"
    );
    let message = expect(
        504,
        host.post("/components/sleeper/call/sleep", r#"{"ms": 2000}"#),
    );
    assert!(message.contains("100ms"), "{message}");
    let message = expect(507, host.post("/components/hog-low/call/size", ""));
    assert!(message.contains("cannot be admitted"), "{message}");
    expect(503, host.post("/components/needs-fails/call/ping", ""));

    assert_eq!(host.post("/components/market-data/call/symbols", "").0, 200);
    // A query evict does not know is refused, and evicts nothing.
    let message = expect(
        400,
        host.post("/components/market-data/evict?cascade=yes", ""),
    );
    assert!(message.contains("cascade=yes"), "{message}");
    let message = expect(
        400,
        host.post("/components/market-data/evict?cascde=true", ""),
    );
    assert!(message.contains("`cascde`"), "{message}");
    let (status, body) = host.post("/components/market-data/evict", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("market-data"));
    expect(409, host.post("/components/market-data/evict", ""));
    expect(404, host.get("/nowhere"));
    // The framework's own refusals come in the same shape.
    let kind = |(status, body): (u16, String)| {
        let error: plugin_host_admin::api::ErrorBody =
            serde_json::from_str(&body).unwrap_or_else(|err| panic!("{status} {body}: {err}"));
        (status, error.error.kind)
    };
    assert_eq!(
        kind(host.get("/components/market-data/call/quote")),
        (405, "method_not_allowed".to_owned())
    );
    assert_eq!(
        kind(host.post("/timeouts/not-a-number/cancel", "")),
        (400, "bad_request".to_owned())
    );
    // A body over the limit is refused once the limit is passed: written from one thread
    // while the answer is read on another, since the server closes the connection without
    // reading the rest (the writer's broken pipe is expected).
    let raw = {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(host.addr).expect("connect");
        let mut writer = stream.try_clone().expect("writer");
        let size = 3 << 20;
        let head = format!(
            "POST /components/market-data/call/quote HTTP/1.1\r\nHost: {}\r\n\
             Content-Type: application/json\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n",
            host.addr
        );
        let writing = std::thread::spawn(move || {
            let _ = writer.write_all(head.as_bytes());
            let _ = writer.write_all(&vec![b' '; size]);
        });
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        let _ = writing.join();
        answer
    };
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert_eq!(
        kind((413, body.to_owned())),
        (413, "payload_too_large".to_owned())
    );
}

#[test]
fn plugin_metrics_recorded_through_the_host_context_are_exported() {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let host = RunningHost::start(&sandbox, "[admin]\nlisten = \"127.0.0.1:0\"\n");
    for _ in 0..3 {
        assert_eq!(host.post("/components/rec-base/call/record", "").0, 200);
    }
    let scrape = scrape(&host.get("/metrics").1);
    assert_eq!(
        value_of(&scrape, "plugins_probe_events_total", "rec-base"),
        6.0
    );
    assert_eq!(
        histogram_count(&scrape, "plugins_probe_latency_seconds", "rec-base"),
        3.0
    );
}

/// A rescan of a plugins directory that is gone is refused as the directory's fault (503
/// `rescan_failed`, naming it), and what was registered keeps serving.
#[test]
fn a_rescan_of_a_plugins_directory_that_is_gone_fails_and_the_registered_keep_serving() {
    let sandbox = Sandbox::with_plugins(&["market-data"]);
    let host = RunningHost::start(&sandbox, "[admin]\nlisten = \"127.0.0.1:0\"\n");
    let (status, quote) = host.call("market-data", "quote", r#"{"symbol":"GOOG"}"#);
    assert!(quote.is_ok(), "{status}: {quote:?}");
    std::fs::remove_dir_all(sandbox.plugins_dir()).expect("remove the plugins directory");
    let (status, body) = host.post("/plugins/rescan", "");
    assert_eq!(status, 503, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["error"]["kind"], "rescan_failed", "{body}");
    let dir = sandbox.plugins_dir().display().to_string();
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&dir)),
        "{body}"
    );
    let (status, quote) = host.call("market-data", "quote", r#"{"symbol":"GOOG"}"#);
    assert!(quote.is_ok(), "still served: {status}: {quote:?}");
    host.stop();
}
