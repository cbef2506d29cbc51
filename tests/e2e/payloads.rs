//! Payloads far larger than a socket buffer to and from an isolated, sandboxed worker:
//! on the link (the default) and in sealed shared memory (`[limits] shared_memory_from`),
//! every byte checked.

use futures::StreamExt;
use plugin_host_tests::{host, runtime, Sandbox};

const ISOLATED_PROBE: &str =
    "[components.counter]\nisolation = \"process\"\n[components.counter.config]\ndelay_ms = 0\n";

#[test]
fn large_payloads_cross_to_a_sandboxed_worker_and_back_intact_on_the_link_and_in_shared_memory() {
    // Requests and replies far past a socket buffer, and stream items past the sharing
    // threshold, each byte checked: on the link (the default) and in sealed memfds (Linux),
    // from a worker whose seccomp filter and Landlock rules apply.
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-probe"]);
        let payload: Vec<u8> = (0..3_000_017u32).map(|i| (i * 7 % 251) as u8).collect();
        for limits in ["", "[limits]\nshared_memory_from = \"64KiB\"\n"] {
            let config = format!("{limits}{ISOLATED_PROBE}sandbox = true\n");
            let host = host(&sandbox, &config).await;
            for size in [0, 1, 65_535, 65_536, payload.len()] {
                let reply = host
                    .coordinator()
                    .call("counter", "echo", payload[..size].to_vec())
                    .await
                    .unwrap_or_else(|err| panic!("{limits}echo of {size} bytes: {err}"));
                assert!(
                    reply == payload[..size],
                    "{limits}echo of {size} bytes changed"
                );
            }
            let request = serde_json::json!({ "raw": true, "count": 6, "bytes": 300_000 });
            let mut items = host
                .stream(
                    "counter",
                    "produce",
                    serde_json::to_vec(&request).expect("json"),
                )
                .await
                .expect("stream");
            let mut taken = 0;
            while let Some(item) = items.next().await {
                assert!(
                    item.expect("an item") == vec![b'x'; 300_000],
                    "{limits}item {taken}"
                );
                taken += 1;
            }
            assert_eq!(taken, 6, "{limits}");
            host.shutdown().await;
        }
    });
}
