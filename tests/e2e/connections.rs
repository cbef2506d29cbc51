//! What the admin API's clients may hold: 10,000 keep-alive connections served at once,
//! one over `max_connections` answered 503, heads and bodies sent a byte at a time answered
//! 408, oversized ones 431 and 413, each counted in `/metrics`; all against the real binary
//! over raw sockets, so that what is tested is what is on the wire.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::{Duration, Instant},
};

use plugin_host_tests::{metrics::scrape, rss_of, wait_for, RunningHost, Sandbox};

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n";

/// Reads one HTTP answer: its status and body; `None` when the server closed the
/// connection before any of it.
fn read_answer(stream: &mut TcpStream) -> Option<(u16, String)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) if buffer.is_empty() => return None,
            Ok(0) => panic!("closed mid-answer: {}", String::from_utf8_lossy(&buffer)),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(err) => panic!("reading an answer: {err}"),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {head}"));
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).expect("reading a body");
        assert!(n > 0, "closed mid-body: {head}");
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some((
        status,
        String::from_utf8_lossy(&buffer[head_end..head_end + length]).into_owned(),
    ))
}

fn connect(host: &RunningHost) -> TcpStream {
    let stream = TcpStream::connect(host.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream
}

/// An unlabelled sample of `/metrics`, or the one labelled `reason`.
fn admin_metric(host: &RunningHost, name: &str, reason: Option<&str>) -> f64 {
    // A slot freed by a client that closed is back once the server has seen the close:
    // a 503 `too_many_connections` until then says to retry, and is retried.
    let text = wait_for("a slot for /metrics", || {
        let (status, text) = host.get("/metrics");
        if status == 503 && text.contains("too_many_connections") {
            return None;
        }
        assert_eq!(status, 200, "{text}");
        Some(text)
    });
    scrape(&text)
        .samples
        .iter()
        .find(|s| s.metric == name && s.labels.get("reason") == reason)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            _ => panic!("{name} is not a plain value"),
        })
        .unwrap_or_else(|| panic!("no {name} {reason:?} in /metrics"))
}

#[test]
fn ten_thousand_keep_alive_connections_are_all_served() {
    const N: usize = 10_000;
    let (_, limit) = plugin_host::raise_open_files_limit().expect("open-files limit");
    assert!(
        limit >= 10_500,
        "this test holds 10,000 connections and needs 10,500 descriptors; the hard limit is {limit} (raise it with ulimit -Hn)"
    );
    let sandbox = Sandbox::new();
    let host = RunningHost::start(&sandbox, "[admin]\nlisten = \"127.0.0.1:0\"\n");
    // Warm: the first request builds what every later one shares.
    assert_eq!(host.get("/healthz").0, 200);
    let rss_before = rss_of(host.pid());
    let mut connections: Vec<TcpStream> = (0..N).map(|_| connect(&host)).collect();
    for stream in &mut connections {
        stream.write_all(HEALTHZ).expect("request");
    }
    for (i, stream) in connections.iter_mut().enumerate() {
        let answer = read_answer(stream).unwrap_or_else(|| panic!("connection {i} closed"));
        assert_eq!(answer.0, 200, "connection {i}: {answer:?}");
    }
    // Every connection is still open and kept alive: a second request on each.
    for stream in &mut connections {
        stream.write_all(HEALTHZ).expect("second request");
    }
    for (i, stream) in connections.iter_mut().enumerate() {
        let answer = read_answer(stream).unwrap_or_else(|| panic!("connection {i} closed"));
        assert_eq!(answer.0, 200, "connection {i}, second request: {answer:?}");
    }
    let open = admin_metric(&host, "plugin_host_admin_connections", None);
    assert!(open >= N as f64, "the gauge counts them: {open}");
    assert_eq!(
        admin_metric(&host, "plugin_host_admin_connections_refused_total", None),
        0.0
    );
    let growth = rss_of(host.pid()).saturating_sub(rss_before);
    println!(
        "host RSS grew {} KiB for {N} keep-alive connections ({} bytes each)",
        growth / 1024,
        growth / N as u64
    );
    assert!(
        growth < 256 << 20,
        "10,000 idle connections cost {} MiB of host memory",
        growth >> 20
    );
    drop(connections);
    wait_for("the connections to close", || {
        (admin_metric(&host, "plugin_host_admin_connections", None) <= 1.0).then_some(())
    });
}

#[test]
fn a_connection_over_max_connections_is_answered_503_and_counted() {
    let sandbox = Sandbox::new();
    let host = RunningHost::start(
        &sandbox,
        "[admin]\nlisten = \"127.0.0.1:0\"\nmax_connections = 3\n",
    );
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect(&host)).collect();
    for stream in &mut held {
        stream.write_all(HEALTHZ).expect("request");
        assert_eq!(read_answer(stream).expect("answer").0, 200);
    }
    let mut extra = connect(&host);
    // The request may or may not be written before the refusal: the answer is read
    // either way, not lost to a reset.
    let _ = extra.write_all(HEALTHZ);
    let (status, body) = read_answer(&mut extra).expect("an answer, not a bare close");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(r#""kind":"too_many_connections""#) && body.contains("max_connections"),
        "{body}"
    );
    // One held connection goes: its slot serves the next client.
    drop(held.pop());
    wait_for("a freed slot to serve a new client", || {
        let mut stream = connect(&host);
        let served = stream.write_all(HEALTHZ).is_ok()
            && read_answer(&mut stream).is_some_and(|a| a.0 == 200);
        served.then_some(())
    });
    drop(held.pop());
    let refused = admin_metric(&host, "plugin_host_admin_connections_refused_total", None);
    assert!(refused >= 1.0, "counted: {refused}");
}

/// Writes `bytes` one at a time, 100 ms apart, until the server answers or closes.
fn trickle(stream: &mut TcpStream, bytes: &[u8]) {
    for byte in bytes {
        if stream.write_all(&[*byte]).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_head_sent_a_byte_at_a_time_is_answered_408_and_an_idle_connection_closed() {
    let sandbox = Sandbox::new();
    let host = RunningHost::start(
        &sandbox,
        "[admin]\nlisten = \"127.0.0.1:0\"\nheader_timeout = \"1s\"\n",
    );
    let mut slow = connect(&host);
    let started = Instant::now();
    let writer = {
        let mut slow = slow.try_clone().expect("clone");
        std::thread::spawn(move || trickle(&mut slow, &[b'x'; 100]))
    };
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n")
        .expect("head");
    let (status, body) = read_answer(&mut slow).expect("an answer");
    assert_eq!(status, 408, "{body}");
    assert!(body.contains(r#""kind":"header_timeout""#), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "refused at the deadline, not after the whole trickle: {:?}",
        started.elapsed()
    );
    writer.join().expect("writer");

    // A keep-alive connection with no request is closed after the same time, silently,
    // after a request with a body too (its body's bytes are not a next request's head).
    let mut idle = connect(&host);
    idle.write_all(HEALTHZ).expect("request");
    assert_eq!(read_answer(&mut idle).expect("answer").0, 200);
    // The body comes in a read of its own, after the head has been handed on.
    idle.write_all(
        b"POST /components/none/call/m HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\n\r\n",
    )
    .expect("a request's head");
    std::thread::sleep(Duration::from_millis(200));
    idle.write_all(b"{}").expect("its body");
    assert_eq!(read_answer(&mut idle).expect("answer").0, 404);
    assert_eq!(read_answer(&mut idle), None, "closed without an answer");

    assert!(
        admin_metric(
            &host,
            "plugin_host_admin_requests_refused_total",
            Some("header_timeout")
        ) >= 1.0
    );
    assert!(admin_metric(&host, "plugin_host_admin_idle_closed_total", None) >= 1.0);
    assert_eq!(host.get("/healthz").0, 200, "the server serves on");
}

#[test]
fn a_body_sent_a_byte_at_a_time_is_answered_408() {
    let sandbox = Sandbox::new();
    let host = RunningHost::start(
        &sandbox,
        "[admin]\nlisten = \"127.0.0.1:0\"\nbody_timeout = \"1s\"\n",
    );
    let mut slow = connect(&host);
    slow.write_all(
        b"POST /components/none/call/m HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100\r\n\r\n{",
    )
    .expect("head");
    let writer = {
        let mut slow = slow.try_clone().expect("clone");
        std::thread::spawn(move || trickle(&mut slow, &[b' '; 99]))
    };
    let (status, body) = read_answer(&mut slow).expect("an answer");
    assert_eq!(status, 408, "{body}");
    assert!(
        body.contains(r#""kind":"body_timeout""#) && body.contains("admin.body_timeout"),
        "{body}"
    );
    writer.join().expect("writer");
    assert!(
        admin_metric(
            &host,
            "plugin_host_admin_requests_refused_total",
            Some("body_timeout")
        ) >= 1.0
    );
}

#[test]
fn oversized_heads_and_bodies_are_refused_with_431_and_413() {
    let sandbox = Sandbox::new();
    let host = RunningHost::start(
        &sandbox,
        "[admin]\nlisten = \"127.0.0.1:0\"\nmax_header_size = \"8KiB\"\nmax_body = \"1KiB\"\n\
         body_timeout = \"1h\"\n",
    );
    let mut big_head = connect(&host);
    let cookie = "a".repeat(20_000);
    let _ = big_head.write_all(
        format!("GET /healthz HTTP/1.1\r\nhost: localhost\r\ncookie: {cookie}\r\n\r\n").as_bytes(),
    );
    assert_eq!(read_answer(&mut big_head).expect("an answer").0, 431);

    let body = format!("{{\"pad\":\"{}\"}}", "b".repeat(2000));
    let (status, answer) = host.post("/components/none/call/m", &body);
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer.contains(r#""kind":"payload_too_large""#) && answer.contains("admin.max_body"),
        "{answer}"
    );
    // A length over the limit is refused from the head: no body is waited for (with a
    // body_timeout of an hour, only that answers within the read's 30 s).
    let mut declared = connect(&host);
    declared
        .write_all(
            b"POST /components/none/call/m HTTP/1.1\r\nhost: localhost\r\ncontent-length: 3000000\r\n\r\n",
        )
        .expect("a head");
    let (status, answer) = read_answer(&mut declared).expect("an answer before any body");
    assert_eq!(status, 413, "{answer}");
    // Chunked, with no length to refuse up front: counted as it arrives.
    let mut chunked = connect(&host);
    let mut request =
        b"POST /components/none/call/m HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..4 {
        request.extend_from_slice(format!("200\r\n{}\r\n", "c".repeat(512)).as_bytes());
    }
    request.extend_from_slice(b"0\r\n\r\n");
    chunked.write_all(&request).expect("chunked request");
    let (status, answer) = read_answer(&mut chunked).expect("an answer");
    assert_eq!(status, 413, "{answer}");

    assert!(
        admin_metric(
            &host,
            "plugin_host_admin_requests_refused_total",
            Some("header_too_large")
        ) >= 1.0
    );
    assert!(
        admin_metric(
            &host,
            "plugin_host_admin_requests_refused_total",
            Some("body_too_large")
        ) >= 3.0
    );
    // A body within the limit still reaches the handler (an unknown component here).
    let (status, answer) = host.post("/components/none/call/m", "{}");
    assert_eq!(status, 404, "{answer}");
}

#[test]
fn a_browser_page_of_another_site_or_a_rebound_name_is_refused_and_programs_are_served() {
    let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
    let host = RunningHost::start(&sandbox, "[admin]\nlisten = \"127.0.0.1:0\"\n");
    let port = host.addr.port();
    let ask = |head: &str| {
        let mut stream = connect(&host);
        let request = format!("{head}content-length: 4\r\n\r\nnull");
        stream.write_all(request.as_bytes()).expect("write");
        read_answer(&mut stream).expect("an answer")
    };
    let call = "POST /components/counter/call/ping HTTP/1.1\r\n";
    // A form another site's page posts (no preflight): the call would run.
    let (status, body) = ask(&format!(
        "{call}host: 127.0.0.1:{port}\r\norigin: http://evil.example\r\n"
    ));
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("cross_origin") && body.contains("evil.example"),
        "{body}"
    );
    let (status, body) = ask(&format!(
        "{call}host: 127.0.0.1:{port}\r\nsec-fetch-site: cross-site\r\n"
    ));
    assert_eq!(status, 403, "{body}");
    // A page whose name was rebound to 127.0.0.1: its own origin, its own name.
    let (status, body) = ask(&format!(
        "{call}host: evil.example:{port}\r\norigin: http://evil.example:{port}\r\n"
    ));
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("foreign_host") && body.contains("admin.token"),
        "{body}"
    );
    // Its GET carries no Origin: the name alone tells it from a program's.
    let (status, body) = ask(&format!(
        "GET /plugins HTTP/1.1\r\nhost: evil.example:{port}\r\n"
    ));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("foreign_host"), "{body}");
    // This server's own page, programs naming a loopback address, and HTTP/1.0 (no Host).
    for head in [
        format!("{call}host: 127.0.0.1:{port}\r\norigin: http://127.0.0.1:{port}\r\n"),
        format!("{call}host: localhost:{port}\r\norigin: http://localhost:{port}\r\n"),
        format!("{call}host: 127.0.0.1:{port}\r\n"),
        format!("{call}host: [::1]:{port}\r\n"),
        "POST /components/counter/call/ping HTTP/1.0\r\n".to_owned(),
    ] {
        let (status, body) = ask(&head);
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"result":"pong"}"#),
            "{head}"
        );
    }
    let refused = |reason| {
        admin_metric(
            &host,
            "plugin_host_admin_requests_refused_total",
            Some(reason),
        )
    };
    assert_eq!(refused("cross_origin"), 2.0);
    assert_eq!(refused("foreign_host"), 2.0);
}
