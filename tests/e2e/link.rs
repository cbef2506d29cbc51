//! The host's end of a worker's link holds against a worker that stops reading it, or
//! reads it a little at a time: a write that waits `[timeouts] worker_unread` for the
//! worker to read fails, one that takes longer in all ends with the worker killed, and
//! the call it was not sent goes to a new worker.

use plugin_host_tests::{alive, host, runtime, wait_for, Sandbox};

#[test]
fn a_worker_that_leaves_what_the_host_sends_unread_is_killed_for_it() {
    unread_by("deafen");
}

#[test]
fn a_worker_that_reads_what_the_host_sends_a_little_at_a_time_is_killed_for_it() {
    // Each write makes progress within the socket's timeout; the whole one would take
    // over ten seconds, and then the same worker would answer.
    unread_by("trickle");
}

/// A hostile worker that stops reading its link as `method` does: the host's next large
/// write ends its worker within about `worker_unread`, and the call runs in a new one.
fn unread_by(method: &str) {
    runtime().block_on(async {
        let sandbox = Sandbox::with_plugins(&["fixture-hostile"]);
        let config = "[timeouts]\nworker_unread = \"1s\"\n\
                      [components.hostile]\nisolation = \"process\"\ntimeout = \"120s\"\n";
        let host = host(&sandbox, config).await;
        let deaf: u32 = host.call_json("hostile", "pid", &()).await.expect("pid");
        let deafened: bool = host.call_json("hostile", method, &()).await.expect(method);
        assert!(
            deafened,
            "{method}: a socket took the place of the worker's link"
        );
        // 8 MiB, more than the link holds: the write waits for a reader that never comes
        // and fails a second later (not at the call's timeout two minutes on); the worker
        // is killed, and the call, never sent whole, runs in a new one.
        let input = serde_json::to_vec(&"x".repeat(8 << 20)).expect("json");
        let answer = match host.call("hostile", "pid", input.clone()).await {
            Ok(answer) => answer,
            // The watcher can end a write in the instant its last bytes went into the
            // socket (a core kept busy delays it): the frame was sent whole, the worker
            // reads it and then its link's end and exits, and the call fails as any call
            // whose worker died after it was sent does (it may have run). Seen once in
            // CI under load; the next call must then go to a new worker.
            Err(err) if err.kind() == "worker_died" => host
                .call("hostile", "pid", input)
                .await
                .expect("the next call runs in a new worker"),
            Err(err) => panic!("{method}: the call runs in a new worker: {err}"),
        };
        let served: u32 = serde_json::from_slice(&answer).expect("a pid");
        assert_ne!(served, deaf, "a new worker served it");
        wait_for("the deaf worker to be gone", || {
            (!alive(deaf)).then_some(())
        });
        host.shutdown().await;
    });
}
