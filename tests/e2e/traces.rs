//! One trace from the HTTP request through the ABI and the worker: the admin API's span
//! continues the client's `traceparent`, the call, the component's initialisation and the
//! worker round trip are its children, and the plugin's own span and log record carry the
//! same trace, exported over OTLP (HTTP or gRPC) to a real receiver on loopback.

use plugin_host_tests::{wait_for, OtlpReceiver, ReceivedSpan, RunningHost, Sandbox};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|span| span.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} among {spans:#?}"))
}

fn parent_of<'a>(spans: &'a [ReceivedSpan], span: &ReceivedSpan) -> Option<&'a ReceivedSpan> {
    spans.iter().find(|s| s.span_id == span.parent_span_id)
}

/// The trace of one call of the probe's `counter` (`isolation` set as given), exported
/// over OTLP `protocol` (`http/protobuf`, `http/json`, `grpc`).
fn one_trace(mode: &str, isolation: &str, protocol: &str) {
    let receiver = if protocol == "grpc" {
        OtlpReceiver::start_grpc()
    } else {
        OtlpReceiver::start()
    };
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[telemetry]\notlp_endpoint = {:?}\n\
         otlp_protocol = {protocol:?}\n[components.counter]\n{isolation}",
        receiver.endpoint()
    );
    let host = RunningHost::start(&sandbox, &config);
    let response = host
        .request("POST", "/components/counter/call/traced")
        .set(
            "traceparent",
            &format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),
        )
        .send_string("null")
        .unwrap_or_else(|err| panic!("{mode}: {err}"));
    let body: serde_json::Value =
        serde_json::from_str(&response.into_string().expect("body")).expect("json");
    let seen = body["result"]["traceparent"]
        .as_str()
        .expect("a traceparent")
        .to_owned();
    assert_eq!(host.stop(), Some(0), "{mode}");
    // The host sends what it buffered as it stops.
    let spans = wait_for(&format!("{mode}: the plugin's span"), || {
        let spans = receiver.spans();
        spans.iter().any(|s| s.name == "price").then_some(spans)
    });
    let encoding = match protocol {
        "http/json" => "application/json",
        "grpc" => "grpc",
        _ => "application/x-protobuf",
    };
    for span in &spans {
        assert_eq!(
            span.trace_id, CLIENT_TRACE,
            "{mode}: every span in the client's trace: {span:?}"
        );
        assert_eq!(span.encoding, encoding, "{mode}: sent as {protocol}");
    }
    let http = named(&spans, "POST /components/{name}/call/{method}");
    assert_eq!(http.parent_span_id, CLIENT_SPAN, "{mode}: {http:?}");
    let call = named(&spans, "call");
    assert_eq!(call.parent_span_id, http.span_id, "{mode}: {call:?}");
    let init = named(&spans, "init");
    assert_eq!(init.parent_span_id, http.span_id, "{mode}: {init:?}");
    let plugin = named(&spans, "price");
    assert!(
        plugin.attributes.iter().any(|a| a == "plugin=probe"),
        "{mode}: {plugin:?}"
    );
    // The plugin's span hangs under the call: directly in process, under the worker round
    // trip in a worker.
    let above = parent_of(&spans, plugin).unwrap_or_else(|| panic!("{mode}: orphan {plugin:?}"));
    let call_level = if isolation.is_empty() {
        above
    } else {
        assert_eq!(above.name, "worker round trip", "{mode}: {above:?}");
        parent_of(&spans, above).expect("the round trip's parent")
    };
    assert_eq!(call_level.span_id, call.span_id, "{mode}");
    // The component saw the span above its own as its parent.
    assert_eq!(
        seen,
        format!("00-{CLIENT_TRACE}-{}-01", above.span_id),
        "{mode}"
    );
    // Its log record carries the trace and its span.
    let log = std::fs::read_to_string(sandbox.root().join("run.log")).expect("run.log");
    let line = log
        .lines()
        .find(|l| l.contains("priced inside the caller's trace"))
        .unwrap_or_else(|| panic!("{mode}: no plugin record in\n{log}"));
    assert!(
        line.contains(&format!("trace_id={CLIENT_TRACE}"))
            && line.contains(&format!("span_id={}", plugin.span_id)),
        "{mode}: {line}"
    );
}

#[test]
fn one_trace_runs_from_the_http_request_through_the_plugin_in_process() {
    one_trace("in process", "", "http/protobuf");
}

#[test]
fn one_trace_runs_from_the_http_request_through_the_worker_and_the_plugin() {
    one_trace("isolated", "isolation = \"process\"\n", "http/protobuf");
}

#[test]
fn one_trace_is_exported_as_json_to_a_collector_that_asks_for_it() {
    one_trace(
        "isolated, http/json",
        "isolation = \"process\"\n",
        "http/json",
    );
}

#[test]
fn one_trace_is_exported_over_grpc_to_a_collectors_grpc_port() {
    one_trace("in process, grpc", "", "grpc");
}

#[test]
fn a_request_without_a_trace_starts_one_and_tracing_off_exports_nothing() {
    let receiver = OtlpReceiver::start();
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[telemetry]\notlp_endpoint = {:?}\n",
        receiver.endpoint()
    );
    let host = RunningHost::start(&sandbox, &config);
    let (status, seen) = host.call("counter", "traced", "null");
    assert_eq!(status, 200);
    let seen = seen.expect("result")["traceparent"]
        .as_str()
        .expect("traced")
        .to_owned();
    host.stop();
    let spans = wait_for("the spans of a new trace", || {
        let spans = receiver.spans();
        spans.iter().any(|s| s.name == "price").then_some(spans)
    });
    let http = named(&spans, "POST /components/{name}/call/{method}");
    assert!(
        http.parent_span_id.is_empty(),
        "a new trace's root: {http:?}"
    );
    assert!(seen.contains(&http.trace_id), "{seen} in {http:?}");

    // Without an endpoint nothing is sent, and a client's trace still reaches the plugin.
    let quiet = OtlpReceiver::start();
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let host = RunningHost::start(&sandbox, "[admin]\nlisten = \"127.0.0.1:0\"\n");
    let client = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let response = host
        .request("POST", "/components/counter/call/traced")
        .set("traceparent", &client)
        .send_string("null")
        .expect("call");
    let body: serde_json::Value =
        serde_json::from_str(&response.into_string().expect("body")).expect("json");
    assert_eq!(body["result"]["traceparent"], client.as_str());
    host.stop();
    assert!(quiet.spans().is_empty());
}

#[test]
fn a_bad_telemetry_setting_is_one_clear_error() {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let config = sandbox.write_config("[telemetry]\notlp_endpoint = \"localhost:4318\"\n");
    let output = sandbox
        .host()
        .arg("--config")
        .arg(&config)
        .arg("run")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("telemetry.otlp_endpoint") && stderr.contains("http://"),
        "{stderr}"
    );
    let output = sandbox
        .host()
        .arg("run")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/thrift")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: \"http/thrift\" is not an OTLP")
            && stderr.contains("http/protobuf"),
        "{stderr}"
    );
}

/// A C plugin's own spans (`ph_host.span_begin` / `span_end`) in the caller's trace:
/// nested as it opened them, under the host's span for the call (in process) or the
/// worker round trip, its log record in the innermost, a span left open ended with the
/// call, and handles ended twice or never opened ignored.
fn c_spans(mode: &str, isolation: &str) {
    let receiver = OtlpReceiver::start();
    let sandbox = Sandbox::new();
    sandbox.add_c_plugin("tests/c/probe.c", &[], "libc_probe.so");
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[telemetry]\notlp_endpoint = {:?}\n\
         [components.c-probe]\n{isolation}",
        receiver.endpoint()
    );
    let host = RunningHost::start(&sandbox, &config);
    let answer = host
        .request("POST", "/components/c-probe/call/spans")
        .set(
            "traceparent",
            &format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),
        )
        .send_string("null")
        .unwrap_or_else(|err| panic!("{mode}: {err}"))
        .into_string()
        .expect("body");
    assert!(answer.contains("\"recorded\""), "{mode}: {answer}");
    assert_eq!(host.stop(), Some(0), "{mode}");
    let spans = wait_for(&format!("{mode}: the C plugin's spans"), || {
        let spans = receiver.spans();
        spans
            .iter()
            .any(|s| s.name == "c-left-open")
            .then_some(spans)
    });
    for name in ["c-book", "c-level", "c-left-open"] {
        let span = named(&spans, name);
        assert_eq!(span.trace_id, CLIENT_TRACE, "{mode}: {span:?}");
        let count = spans.iter().filter(|s| s.name == name).count();
        assert_eq!(count, 1, "{mode}: {name} exported {count} times");
    }
    let (book, level, left) = (
        named(&spans, "c-book"),
        named(&spans, "c-level"),
        named(&spans, "c-left-open"),
    );
    assert_eq!(level.parent_span_id, book.span_id, "{mode}: {level:?}");
    assert_eq!(left.parent_span_id, book.parent_span_id, "{mode}: {left:?}");
    let above = parent_of(&spans, book).unwrap_or_else(|| panic!("{mode}: orphan {book:?}"));
    let call_level = if isolation.is_empty() {
        above
    } else {
        assert_eq!(above.name, "worker round trip", "{mode}: {above:?}");
        parent_of(&spans, above).expect("the round trip's parent")
    };
    assert_eq!(call_level.span_id, named(&spans, "call").span_id, "{mode}");
    let log = std::fs::read_to_string(sandbox.root().join("run.log")).expect("run.log");
    let line = log
        .lines()
        .find(|l| l.contains("inside c-level"))
        .unwrap_or_else(|| panic!("{mode}: no C record in\n{log}"));
    assert!(
        line.contains(&format!("trace_id={CLIENT_TRACE}"))
            && line.contains(&format!("span_id={}", level.span_id)),
        "{mode}: {line}"
    );
}

#[test]
fn a_c_plugins_spans_are_in_the_callers_trace_in_process() {
    c_spans("in process", "");
}

#[test]
fn a_c_plugins_spans_are_in_the_callers_trace_isolated() {
    c_spans("isolated", "isolation = \"process\"\n");
}

#[test]
fn a_plugins_huge_span_is_exported_cut_to_a_bound() {
    // Spans are not rate-limited as log records are, and wait in the exporter's queue: a
    // field of a million bytes is exported as its first 4,096 characters.
    let receiver = OtlpReceiver::start();
    let sandbox = Sandbox::with_plugins(&["fixture-hostile"]);
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[telemetry]\notlp_endpoint = {:?}\n",
        receiver.endpoint()
    );
    let host = RunningHost::start(&sandbox, &config);
    let response = host
        .request("POST", "/components/hostile/call/huge_span")
        .set(
            "traceparent",
            &format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),
        )
        .send_string("1000000")
        .expect("the call");
    assert_eq!(response.status(), 200);
    assert_eq!(host.stop(), Some(0));
    let spans = wait_for("the plugin's span", || {
        let spans = receiver.spans();
        spans.iter().any(|s| s.name == "huge_span").then_some(spans)
    });
    let fields = named(&spans, "huge_span")
        .attributes
        .iter()
        .find(|a| a.starts_with("fields="))
        .expect("its fields")
        .clone();
    assert!(
        (4_096..4_200).contains(&fields.len()) && fields.ends_with("fff..."),
        "fields of {} bytes: {:.100}",
        fields.len(),
        fields
    );
}

/// A collector whose certificate a private authority signed: reached over HTTPS and gRPC
/// alike once `otlp_certificate` names that authority; before, the handshake fails and
/// nothing is sent (the certificate is verified, not merely accepted). Credentials go in
/// `OTEL_EXPORTER_OTLP_HEADERS`, as the specification says.
#[test]
fn a_collector_behind_a_private_ca_is_reached_over_tls_once_its_ca_is_trusted() {
    for grpc in [false, true] {
        let protocol = if grpc { "grpc" } else { "http/protobuf" };
        let receiver = OtlpReceiver::start_tls(grpc);
        let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
        let ca = sandbox.root().join("collector-ca.pem");
        std::fs::write(&ca, receiver.ca_pem()).expect("write the CA");
        let config = |trusted: bool| {
            let certificate = if trusted {
                format!("otlp_certificate = {:?}\n", ca.display().to_string())
            } else {
                String::new()
            };
            format!(
                "[admin]\nlisten = \"127.0.0.1:0\"\n[telemetry]\notlp_endpoint = {:?}\n\
                 otlp_protocol = {protocol:?}\n{certificate}",
                receiver.endpoint()
            )
        };
        let host = RunningHost::start(&sandbox, &config(false));
        assert_eq!(host.call("counter", "traced", "null").0, 200, "{protocol}");
        // The host sends what it buffered as it stops: by now it has tried.
        host.stop();
        assert!(
            receiver.spans().is_empty(),
            "{protocol}: spans reached a collector no trusted authority vouches for"
        );
        // A collector that asks for credentials gets them from the standard variable.
        let credentials = [("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer s3cret")];
        let host = RunningHost::start_with_env(&sandbox, &config(true), &credentials);
        assert_eq!(host.call("counter", "traced", "null").0, 200, "{protocol}");
        host.stop();
        let spans = wait_for(&format!("{protocol}: spans over TLS"), || {
            let spans = receiver.spans();
            spans.iter().any(|s| s.name == "price").then_some(spans)
        });
        let http = named(&spans, "POST /components/{name}/call/{method}");
        assert_eq!(named(&spans, "call").parent_span_id, http.span_id);
        assert_eq!(http.authorization, "Bearer s3cret", "{protocol}");
    }
}
