//! The same attacks from a plugin's constructor, in the scanner: its children run each
//! library fenced in as a sandboxed worker is, whatever the plugin's own setting.

use std::os::unix::process::CommandExt;

use super::{
    mismatches, root, Lab, Layer,
    Layer::{Namespaces, Seccomp},
    ATTACKS, INHERITED_FD, SCENARIOS,
};

/// Runs the scanner on the hostile library with `removed` layers left out, as the host
/// starts it (a session of its own, this process as its parent, a descriptor left open);
/// the outcome of each attack its constructor made.
fn scanner_attacks(
    lab: &Lab,
    removed: &[Layer],
    target: &serde_json::Value,
) -> Vec<(String, String)> {
    let library = lab
        .sandbox
        .plugins_dir()
        .join(plugin_host_tests::library_file_name("fixture-hostile"));
    let mut command = std::process::Command::new(plugin_host_tests::binary());
    command
        .arg("--plugin-host-scan")
        .arg(&library)
        .env("PLUGIN_HOST_TEST_HOSTILE_CTOR_TARGET", target.to_string())
        .env_remove("PLUGIN_HOST_TEST_SANDBOX_SKIP")
        .env_remove("PLUGIN_HOST_TEST_NO_NAMESPACES");
    let skip: Vec<&str> = removed.iter().filter_map(|layer| layer.switch()).collect();
    if !skip.is_empty() {
        command.env("PLUGIN_HOST_TEST_SANDBOX_SKIP", skip.join(","));
    }
    if removed.contains(&Namespaces) {
        command.env("PLUGIN_HOST_TEST_NO_NAMESPACES", "1");
    }
    let inherited = std::os::fd::AsRawFd::as_raw_fd(&lab.inherited);
    // SAFETY: setsid and dup2 are async-signal-safe; dup2 copies a descriptor this
    // process owns onto a number it does not use.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 || libc::dup2(inherited, INHERITED_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = command.output().expect("running the scanner");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout.contains("plugin-host-scan-result: "),
        "the scanner reports on the library: {stdout}\n{stderr}"
    );
    // What the library prints in its scanning child comes on through the scanner's
    // standard error.
    stderr
        .lines()
        .filter_map(|line| line.strip_prefix("hostile-attack "))
        .filter_map(|line| line.split_once(' '))
        .map(|(name, outcome)| (name.to_owned(), outcome.to_owned()))
        .collect()
}

/// What the scanner's attacks aim at: this process as the host, a child of it as
/// another process of the same user, the lab's files and sockets.
fn scanner_target(
    lab: &Lab,
    other: &std::process::Child,
    tcp: &std::net::TcpListener,
) -> serde_json::Value {
    let cache_file = lab.sandbox.cache_dir().join("registry-v3.bin");
    std::fs::create_dir_all(lab.sandbox.cache_dir()).expect("cache dir");
    std::fs::write(&cache_file, "{}").expect("cache file");
    std::fs::write(lab.sandbox.root().join("host.toml"), "").expect("config");
    // SAFETY: getpgid has no memory effects.
    #[allow(unsafe_code)]
    let host_pgid = unsafe { libc::getpgid(0) };
    lab.aim(
        (std::process::id(), host_pgid),
        other.id(),
        tcp.local_addr().expect("tcp address").port(),
        &cache_file,
    )
}

#[test]
fn a_plugins_constructor_in_the_scanner_is_fenced_in_as_a_sandboxed_worker_is() {
    let as_root = root();
    let lab = Lab::new(None);
    let mut other = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("another process");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp");
    let target = scanner_target(&lab, &other, &tcp);
    let mut problems = Vec::new();
    for removed in SCENARIOS {
        let mut outcomes = scanner_attacks(&lab, removed, &target);
        assert_eq!(
            outcomes.len(),
            ATTACKS.len(),
            "every attack ran: {outcomes:?}"
        );
        // The library runs in a child of the scanner, which it can see (the host it
        // cannot), and `kill(-1)` answers success when any process is in sight, though
        // Landlock refuses every signal: without seccomp, which refuses the call itself,
        // that probe tells nothing here.
        if removed.contains(&Seccomp) {
            outcomes.retain(|(name, _)| name != "signal_everyone");
        }
        for problem in mismatches(&outcomes, removed, as_root) {
            problems.push(format!("scanner without {removed:?}: {problem}"));
        }
    }
    let _ = other.kill();
    let _ = other.wait();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
