//! What a port grant opens, and nothing beside it: a sandboxed component granted one TCP
//! port connects to that port, and reaches no other by a side way. Landlock's rules are
//! for TCP alone, so a stream socket of another protocol (MPTCP, which falls back to
//! plain TCP with a peer that does not speak it) would connect anywhere: the seccomp
//! layer refuses it. TCP Fast Open connects inside `sendto`; Landlock refuses that as it
//! refuses `connect`. Each is run with the whole fence, with each layer left out, and with none, so a
//! layer that stops refusing fails the test, and so does an attack that cannot work here.

use plugin_host_tests::{RunningHost, Sandbox};

/// The layers a scenario leaves out (`PLUGIN_HOST_TEST_SANDBOX_SKIP`), and whether it
/// leaves out the PID namespace too.
const SCENARIOS: [(&str, bool); 4] = [
    ("", false),
    ("seccomp", false),
    ("landlock", false),
    ("seccomp,landlock,capabilities", true),
];

/// Each attack and the layers that refuse it; it gets through when all of them are out.
const ATTACKS: [(&str, &[&str]); 4] = [
    ("tcp_connect_granted", &[]),
    ("tcp_connect_admin", &["landlock"]),
    ("mptcp_connect_admin", &["seccomp"]),
    ("fastopen_admin", &["landlock"]),
];

#[test]
fn a_port_grant_opens_that_port_and_no_side_way_to_another() {
    let sandbox = Sandbox::with_plugins(&["fixture-hostile"]);
    let granted = std::net::TcpListener::bind("127.0.0.1:0").expect("a granted port");
    let port = granted.local_addr().expect("its address").port();
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[components.hostile]\nisolation = \"process\"\n\
         sandbox = true\n[components.hostile.sandbox_grants]\nconnect = [{port}]\n"
    );
    let mut problems = Vec::new();
    for (skip, no_namespaces) in SCENARIOS {
        let host = RunningHost::start_with(&sandbox, &config, |command| {
            command.env("PLUGIN_HOST_TEST_SANDBOX_SKIP", skip);
            if no_namespaces {
                command.env("PLUGIN_HOST_TEST_NO_NAMESPACES", "1");
            }
        });
        let target = serde_json::json!({ "tcp_port": host.addr.port(), "granted_port": port });
        for (name, fences) in ATTACKS {
            let body = serde_json::json!({ "name": name, "target": target }).to_string();
            let (status, outcome) = host.call("hostile", "attack", &body);
            let outcome = outcome.unwrap_or_else(|err| panic!("{name}: {status}: {err:?}"));
            let outcome = outcome.as_str().unwrap_or_default().to_owned();
            let through = fences.iter().all(|layer| skip.contains(layer));
            let as_expected = if through {
                outcome == "ok"
            } else {
                outcome.starts_with("errno 1:") || outcome.starts_with("errno 13:")
            };
            if !as_expected {
                let wanted = if through { "get through" } else { "be refused" };
                problems.push(format!(
                    "without [{skip}]: {name} should {wanted} (fenced by {fences:?}), got {outcome}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
