//! Every call carries its context: a plugin sees its deadline and trace, and sees it is
//! cancelled (and may stop early) when its call times out, its HTTP client goes away, its
//! stream's consumer drops it, or the host stops, in process and in a worker.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use plugin_host_tests::{wait_for, RunningHost, Sandbox};

const ISOLATED: &str = "isolation = \"process\"\n";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A host with the probe, `counter` set up by `counter` (and logging to a file), and
/// that file.
fn start(sandbox: &Sandbox, counter: &str) -> (RunningHost, PathBuf) {
    let log = sandbox.root().join("probe.log");
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[components.counter]\n{counter}\
         [components.counter.config]\nlog_file = {:?}\n",
        log.display().to_string()
    );
    (RunningHost::start(sandbox, &config), log)
}

/// The cancellations the probe noticed, in order: (when, in µs since the epoch; how late
/// past the call's deadline, in µs).
fn noticed(log: &Path) -> Vec<(u64, u64)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("cancel-noticed counter ")?.split(' ');
            Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
        })
        .collect()
}

fn wait_noticed(log: &Path, count: usize) -> Vec<(u64, u64)> {
    wait_for(&format!("{count} cancellations noticed"), || {
        let seen = noticed(log);
        (seen.len() >= count).then_some(seen)
    })
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

/// Asserts the median of `delays` (µs) is within 10 ms: one hiccup of a loaded machine
/// does not fail it, a cancellation that does not arrive does.
fn assert_prompt(what: &str, delays: Vec<u64>) {
    println!("{what}: noticed after {delays:?} µs");
    let median = median(delays);
    assert!(
        median <= 10_000,
        "{what}: the plugin noticed its cancellation {median} µs after it (median), over 10 ms"
    );
}

fn timeouts_cancel(counter: &str, mode: &str) {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let (host, log) = start(&sandbox, &format!("{counter}timeout = \"300ms\"\n"));
    for _ in 0..5 {
        let (status, answer) = host.call("counter", "until_cancelled", "null");
        assert_eq!(status, 504, "{mode}: {answer:?}");
    }
    let late = wait_noticed(&log, 5)
        .into_iter()
        .map(|(_, late)| late)
        .collect();
    assert_prompt(&format!("{mode}, timeout"), late);
    host.stop();
}

#[test]
fn a_call_that_times_out_is_cancelled_in_its_code_in_process() {
    timeouts_cancel("", "in process");
}

#[test]
fn a_call_that_times_out_is_cancelled_in_its_code_in_its_worker() {
    timeouts_cancel(ISOLATED, "isolated");
}

/// Sends `request` over a raw connection, waits `hold`, closes it; returns when it closed.
fn send_and_leave(host: &RunningHost, request: &str, hold: Duration, read_first: bool) -> u64 {
    let mut connection = TcpStream::connect(host.addr).expect("connect");
    connection.write_all(request.as_bytes()).expect("request");
    if read_first {
        // The stream's first item is there: the stream runs.
        let mut buffer = [0u8; 512];
        let read = connection.read(&mut buffer).expect("first item");
        assert!(read > 0);
    }
    std::thread::sleep(hold);
    let closed = now_us();
    drop(connection);
    closed
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn clients_leaving_cancel(counter: &str, mode: &str, path: &str, read_first: bool) {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let (host, log) = start(&sandbox, counter);
    let (status, _) = host.call("counter", "ping", "null");
    assert_eq!(status, 200, "{mode}");
    let mut delays = Vec::new();
    for n in 1..=3 {
        let closed = send_and_leave(
            &host,
            &post(path, "null"),
            Duration::from_millis(300),
            read_first,
        );
        let (at, _) = wait_noticed(&log, n)[n - 1];
        delays.push(at.saturating_sub(closed));
    }
    assert_prompt(mode, delays);
    host.stop();
}

#[test]
fn a_call_whose_http_client_goes_away_is_cancelled_in_its_code_in_process() {
    clients_leaving_cancel(
        "",
        "in process, client gone",
        "/components/counter/call/until_cancelled",
        false,
    );
}

#[test]
fn a_call_whose_http_client_goes_away_is_cancelled_in_its_code_in_its_worker() {
    clients_leaving_cancel(
        ISOLATED,
        "isolated, client gone",
        "/components/counter/call/until_cancelled",
        false,
    );
}

#[test]
fn a_stream_whose_consumer_goes_away_is_cancelled_in_its_code_in_process() {
    clients_leaving_cancel(
        "",
        "in process, stream dropped",
        "/components/counter/stream/watch",
        true,
    );
}

#[test]
fn a_stream_whose_consumer_goes_away_is_cancelled_in_its_code_in_its_worker() {
    clients_leaving_cancel(
        ISOLATED,
        "isolated, stream dropped",
        "/components/counter/stream/watch",
        true,
    );
}

fn stopping_cancels(counter: &str, mode: &str) {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let (host, log) = start(&sandbox, counter);
    let (status, _) = host.call("counter", "ping", "null");
    assert_eq!(status, 200, "{mode}");
    let _running = send_and_leave(
        &host,
        &post("/components/counter/call/until_cancelled", "null"),
        Duration::ZERO,
        false,
    );
    let mut connection = TcpStream::connect(host.addr).expect("connect");
    connection
        .write_all(post("/components/counter/call/until_cancelled", "null").as_bytes())
        .expect("request");
    std::thread::sleep(Duration::from_millis(300));
    let stopped = now_us();
    assert_eq!(host.stop(), Some(0), "{mode}: the host stops cleanly");
    let noticed = noticed(&log);
    assert!(
        !noticed.is_empty(),
        "{mode}: the call was not cancelled by the stop"
    );
    let (at, _) = noticed[noticed.len() - 1];
    println!(
        "{mode}: noticed the stop after {} µs",
        at.saturating_sub(stopped)
    );
    drop(connection);
}

#[test]
fn a_stopping_host_cancels_the_calls_in_flight_in_process() {
    stopping_cancels("", "in process, stop");
}

#[test]
fn a_stopping_host_cancels_the_calls_in_flight_in_its_worker() {
    stopping_cancels(ISOLATED, "isolated, stop");
}

fn context_is_seen(mode: &str, isolation: &str) {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\
         [components.counter]\ntimeout = \"7s\"\n{isolation}\
         [components.rec-mid]\n{isolation}[components.rec-base]\n{isolation}"
    );
    let host = RunningHost::start(&sandbox, &config);
    let traced = |path: &str| {
        let response = host
            .request("POST", path)
            .set("traceparent", TRACEPARENT)
            .set("tracestate", "desk=fx")
            .send_string("null")
            .unwrap_or_else(|err| panic!("{mode}: {err}"));
        let body: serde_json::Value =
            serde_json::from_str(&response.into_string().expect("body")).expect("json");
        body["result"].clone()
    };
    let seen = traced("/components/counter/call/context");
    assert_eq!(seen["traceparent"], TRACEPARENT, "{mode}: {seen}");
    assert_eq!(seen["tracestate"], "desk=fx", "{mode}: {seen}");
    assert_eq!(seen["cancelled"], false, "{mode}: {seen}");
    let left = seen["remaining_ms"].as_u64().expect("a deadline");
    assert!(
        (6_000..=7_000).contains(&left),
        "{mode}: {left} ms left of 7 s"
    );
    // A dependency call made by the plugin keeps the chain.
    let chain = traced("/components/rec-mid/call/dependency_context");
    assert_eq!(chain["own"]["traceparent"], TRACEPARENT, "{mode}: {chain}");
    assert_eq!(
        chain["dependency"]["traceparent"], TRACEPARENT,
        "{mode}: {chain}"
    );
    assert_eq!(
        chain["own"]["remaining_ms"].is_u64(),
        chain["dependency"]["remaining_ms"].is_u64(),
        "{mode}: the dependency has its caller's deadline: {chain}"
    );
    // Without a trace, or with an invalid one, nothing is made up.
    let (status, plain) = host.call("counter", "context", "null");
    assert_eq!(status, 200);
    assert!(plain.expect("result")["traceparent"].is_null(), "{mode}");
    let response = host
        .request("POST", "/components/counter/call/context")
        .set("traceparent", "00-not-a-trace-01")
        .send_string("null")
        .expect("call");
    let body: serde_json::Value =
        serde_json::from_str(&response.into_string().expect("body")).expect("json");
    assert!(body["result"]["traceparent"].is_null(), "{mode}: {body}");
    host.stop();
}

#[test]
fn a_call_sees_its_deadline_and_its_callers_trace_in_process() {
    context_is_seen("in process", "");
}

#[test]
fn a_call_sees_its_deadline_and_its_callers_trace_in_its_worker() {
    context_is_seen("isolated", ISOLATED);
}

/// What the host runs for a worker's code (here a dependency call, in process) is
/// cancelled when the worker dies mid-call, not left running for a caller that is gone.
#[test]
fn a_dependency_call_made_by_a_worker_that_dies_is_cancelled_in_its_code() {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let log = sandbox.root().join("probe.log");
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[components.joiner]\n{ISOLATED}\
         [components.slow-a.config]\nlog_file = {:?}\n",
        log.display().to_string()
    );
    let host = RunningHost::start(&sandbox, &config);
    // The dependency waits up to 10 s for its cancellation; the worker aborts 300 ms in.
    let (status, answer) = host.call(
        "joiner",
        "call_dep",
        r#"{"name":"slow-a","method":"until_cancelled","abort_after_ms":300}"#,
    );
    let err = answer.expect_err("the worker died");
    assert_eq!((status, err.kind.as_str()), (502, "worker_died"), "{err:?}");
    let died = now_us();
    let noticed: u64 = wait_for("the dependency to notice its cancellation", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("cancel-noticed slow-a "))?;
        line.split(' ').next()?.parse().ok()
    });
    println!(
        "noticed {} µs after the call failed",
        noticed.saturating_sub(died)
    );
    host.stop();
}
