//! The fence against a hostile plugin: `tests/fixtures/hostile` tries every way out the
//! suite knows (signals, sockets of every family, io_uring, namespaces, privileges,
//! metadata, the host's files and memory, descriptors it inherited, more threads than the
//! fence allows), in its worker and, from its constructor, in the scanner.
//!
//! Each attack is listed with the layers that refuse it (seccomp, Landlock, dropped
//! capabilities, the worker's PID namespace) and what it would get without any of them.
//! The suite runs every attack with the whole fence (all refused), with each layer left
//! out in turn (an attack gets through exactly when every layer that refuses it is out),
//! and with none (each gets through where the kernel lets this user do it). So each
//! layer's attacks fail if that layer is removed, and no attack passes for a reason
//! nobody wrote down.

use std::{
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::PathBuf,
};

use plugin_host_tests::{RunningHost, Sandbox};

mod batch;
mod environment;
mod hello;
mod scanner;

/// A layer of the fence, and the test switch that leaves it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Seccomp,
    Landlock,
    Capabilities,
    Namespaces,
}

impl Layer {
    /// Its name in `PLUGIN_HOST_TEST_SANDBOX_SKIP`; `None` for the namespaces, which
    /// `PLUGIN_HOST_TEST_NO_NAMESPACES` leaves out.
    fn switch(self) -> Option<&'static str> {
        match self {
            Seccomp => Some("seccomp"),
            Landlock => Some("landlock"),
            Capabilities => Some("capabilities"),
            Namespaces => None,
        }
    }
}

/// What each run leaves out: nothing, each layer in turn, everything.
const SCENARIOS: [&[Layer]; 6] = [
    &[],
    &[Seccomp],
    &[Landlock],
    &[Capabilities],
    &[Namespaces],
    &[Seccomp, Landlock, Capabilities, Namespaces],
];

/// Where an attack gets through when nothing fences it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    /// For any user.
    Anyone,
    /// Only as root (it needs a capability, or a file only root reads).
    Root,
    /// As root, or in the user namespace an unprivileged worker is given (its
    /// capabilities are the namespace's).
    RootOrUserNamespace,
    /// Only in a PID namespace (outside one, the worker leads its own session already).
    InNamespace,
    /// Never: the clean start refuses it, whatever the sandbox.
    Never,
}

use Layer::{Capabilities, Landlock, Namespaces, Seccomp};

/// Every attack of the fixture: the layers that each refuse it, and its control. Reading
/// another process (its memory, its environment, `process_vm_readv`, `perf_event_open`)
/// is also a capability matter: a process whose capabilities are not a superset of its
/// target's may not trace it (the root host holds them all); and for an unprivileged
/// host, the worker's user namespace fences the same reads ([`UNPRIVILEGED`]). Opening a
/// pidfd of the host or naming it as a descriptor's owner gets past Landlock, whose
/// signal scope stops only the signals that would follow.
const ATTACKS: &[(&str, &[Layer], Control)] = &[
    (
        "signal_host",
        &[Seccomp, Landlock, Namespaces],
        Control::Anyone,
    ),
    (
        "signal_host_thread",
        &[Seccomp, Landlock, Namespaces],
        Control::Anyone,
    ),
    (
        "signal_other_worker",
        &[Seccomp, Landlock, Namespaces],
        Control::Anyone,
    ),
    (
        "signal_everyone",
        &[Seccomp, Landlock, Namespaces],
        Control::Anyone,
    ),
    ("pidfd_host", &[Seccomp, Namespaces], Control::Anyone),
    ("fcntl_owner_host", &[Seccomp, Namespaces], Control::Anyone),
    // Not an attack: what the fence must leave alone (its own SIGIO).
    ("fcntl_owner_self", &[], Control::Anyone),
    ("ioctl_owner_host", &[Seccomp, Namespaces], Control::Anyone),
    // Realtime scheduling takes CAP_SYS_NICE, or a realtime-priority limit the host was
    // given, which the same layer lowers to nothing (a root without CAP_SYS_RESOURCE, as
    // in CI's container, cannot lend one to test with).
    ("realtime_priority", &[Capabilities], Control::Root),
    (
        "read_host_memory",
        &[Landlock, Capabilities],
        Control::Anyone,
    ),
    (
        "process_vm_read_host",
        &[Seccomp, Landlock, Capabilities, Namespaces],
        Control::Anyone,
    ),
    (
        "read_host_environ",
        &[Landlock, Capabilities],
        Control::Anyone,
    ),
    (
        "sched_setaffinity_host",
        &[Seccomp, Namespaces],
        Control::Anyone,
    ),
    ("setpriority_host", &[Seccomp, Namespaces], Control::Anyone),
    ("prlimit_host", &[Seccomp, Namespaces], Control::Anyone),
    ("io_uring", &[Seccomp], Control::Anyone),
    ("udp_send", &[Seccomp], Control::Anyone),
    ("tcp_connect_admin", &[Seccomp, Landlock], Control::Anyone),
    ("tcp_listen", &[Seccomp], Control::Anyone),
    ("raw_socket", &[Seccomp, Capabilities], Control::Root),
    ("unix_socket_path", &[Seccomp], Control::Anyone),
    (
        "unix_socket_abstract",
        &[Seccomp, Landlock],
        Control::Anyone,
    ),
    ("datagram_pair_reconnect", &[Seccomp], Control::Anyone),
    ("netlink_socket", &[Seccomp], Control::Anyone),
    ("packet_socket", &[Seccomp, Capabilities], Control::Root),
    ("clone_user_namespace", &[Seccomp], Control::Anyone),
    (
        "capabilities_held",
        &[Capabilities],
        Control::RootOrUserNamespace,
    ),
    ("setsid", &[Seccomp], Control::InNamespace),
    ("setpgid_host", &[Seccomp, Namespaces], Control::Never),
    ("clear_parent_death_signal", &[Seccomp], Control::Anyone),
    ("make_dumpable", &[Seccomp], Control::Anyone),
    ("chmod", &[Seccomp], Control::Anyone),
    ("chown", &[Seccomp], Control::Anyone),
    ("utimes", &[Seccomp], Control::Anyone),
    ("setxattr", &[Seccomp], Control::Anyone),
    ("o_path_chmod", &[Seccomp], Control::Anyone),
    ("truncate", &[Landlock], Control::Anyone),
    ("hardlink_config", &[Landlock], Control::Anyone),
    ("mknod_fifo", &[Seccomp, Landlock], Control::Anyone),
    ("read_config", &[Landlock], Control::Anyone),
    ("read_trust_file", &[Landlock], Control::Anyone),
    ("read_cache", &[Landlock], Control::Anyone),
    ("read_secret", &[Landlock], Control::Anyone),
    ("read_shadow", &[Landlock], Control::Root),
    ("write_plugins_dir", &[Landlock], Control::Anyone),
    ("inotify_config", &[Seccomp], Control::Anyone),
    ("exec", &[Seccomp, Landlock], Control::Anyone),
    ("fork", &[Seccomp], Control::Anyone),
    ("memfd_exec", &[Seccomp, Landlock], Control::Anyone),
    (
        "perf_event_open",
        &[Seccomp, Landlock, Capabilities, Namespaces],
        Control::Anyone,
    ),
    ("bpf", &[Seccomp, Capabilities], Control::Root),
    ("keyctl", &[Seccomp], Control::Anyone),
    ("userfaultfd", &[Seccomp, Capabilities], Control::Root),
    ("chroot", &[Seccomp, Capabilities], Control::Root),
    ("sysv_shared_memory", &[Seccomp], Control::Anyone),
    ("inherited_descriptor", &[], Control::Never),
    ("core_dump", &[], Control::Never),
    // The namespace's ceiling on tasks (`[limits] worker_tasks`, 1024 by default; the
    // scanner's 256), where the kernel keeps one per namespace ([`tasks_capped_here`]).
    ("thread_bomb", &[Namespaces], Control::Anyone),
];

/// Attacks that the worker's user namespace also fences, when the host is unprivileged
/// (a process in a child user namespace may not trace one in its parent's).
const UNPRIVILEGED: &[&str] = &[
    "read_host_memory",
    "read_host_environ",
    "process_vm_read_host",
    "perf_event_open",
];

/// The descriptor the host's parent leaves open (and which no child of it may see).
const INHERITED_FD: i32 = 57;

const HOSTILE: &str = "[components.hostile]\nisolation = \"process\"\nsandbox = true\n\
                       [components.rogue]\nisolation = \"process\"\n";

/// Whether this kernel keeps a ceiling on tasks per PID namespace (its `pid_max`, Linux
/// 6.14 and later), which the host sets on every worker and scanner.
fn tasks_capped_here() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let mut next = || parts.next().and_then(|part| part.parse::<u32>().ok());
    next().zip(next()).is_some_and(|version| version >= (6, 14))
}

/// Whether this test runs as root (as CI does).
fn root() -> bool {
    plugin_host_tests::running_as_root()
}

/// Whether `attack` gets through with `removed` layers left out, for this user.
fn gets_through(fences: &[Layer], control: Control, removed: &[Layer], as_root: bool) -> bool {
    let namespaces = !removed.contains(&Namespaces);
    let possible = match control {
        Control::Anyone => true,
        Control::Root => as_root,
        Control::RootOrUserNamespace => as_root || namespaces,
        Control::InNamespace => namespaces,
        Control::Never => false,
    };
    possible && fences.iter().all(|layer| removed.contains(layer))
}

/// An outcome is a refusal: a permission error, a call that does not exist here, a
/// process out of sight, a descriptor that is gone.
fn refused(outcome: &str) -> bool {
    [
        "errno 1:",  // EPERM
        "errno 13:", // EACCES
        "errno 38:", // ENOSYS
        "errno 3:",  // ESRCH
        "errno 9:",  // EBADF
        "errno 11:", // EAGAIN: past a ceiling
    ]
    .iter()
    .any(|refusal| outcome.starts_with(refusal))
}

/// The files, sockets and processes the attacks aim at.
struct Lab {
    sandbox: Sandbox,
    udp: std::net::UdpSocket,
    _unix: std::os::unix::net::UnixListener,
    _datagram: std::os::unix::net::UnixDatagram,
    _abstract: std::os::unix::net::UnixListener,
    abstract_name: String,
    inherited: std::fs::File,
    /// The user the host runs as: this test's, or `nobody` (as root, to test the fence
    /// of an unprivileged host).
    user: Option<u32>,
}

impl Lab {
    fn new(user: Option<u32>) -> Self {
        use std::os::linux::net::SocketAddrExt;
        let sandbox = Sandbox::with_plugins(&["fixture-hostile", "fixture-rogue"]);
        let root = sandbox.root();
        std::fs::write(root.join("secret"), "id_rsa: not yours").expect("secret");
        std::fs::write(root.join("victim"), "keep me").expect("victim");
        std::fs::write(root.join("trusted.toml"), "").expect("trust file");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let unix = std::os::unix::net::UnixListener::bind(root.join("socket")).expect("unix");
        let datagram =
            std::os::unix::net::UnixDatagram::bind(root.join("datagram")).expect("datagram");
        let abstract_name = format!(
            "plugin-host-fence-{}",
            root.file_name().unwrap_or_default().to_string_lossy()
        );
        let address = std::os::unix::net::SocketAddr::from_abstract_name(&abstract_name)
            .expect("abstract address");
        let abstract_listener =
            std::os::unix::net::UnixListener::bind_addr(&address).expect("abstract socket");
        let inherited = std::fs::File::open(root.join("secret")).expect("inherited");
        let lab = Self {
            sandbox,
            udp,
            _unix: unix,
            _datagram: datagram,
            _abstract: abstract_listener,
            abstract_name,
            inherited,
            user,
        };
        if let Some(uid) = user {
            lab.hand_over(uid);
        }
        lab
    }

    /// Makes the lab the unprivileged host's: its files and directories its own, as an
    /// operator's would be.
    fn hand_over(&self, uid: u32) {
        let root = self.sandbox.root();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::create_dir_all(self.sandbox.cache_dir()).expect("cache dir");
        for path in [
            root.to_path_buf(),
            self.sandbox.plugins_dir(),
            self.sandbox.cache_dir(),
            root.join("secret"),
            root.join("victim"),
            root.join("trusted.toml"),
            root.join("socket"),
            root.join("datagram"),
        ] {
            std::os::unix::fs::chown(&path, Some(uid), Some(uid)).expect("chown");
        }
    }

    /// Starts the host with `removed` layers left out, the host's parent leaving a
    /// descriptor open.
    fn host(&self, removed: &[Layer]) -> RunningHost {
        let skip: Vec<&str> = removed.iter().filter_map(|layer| layer.switch()).collect();
        let config = format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[host]\ntrust_file = {:?}\n{HOSTILE}",
            self.sandbox
                .root()
                .join("trusted.toml")
                .display()
                .to_string()
        );
        let inherited = std::os::fd::AsRawFd::as_raw_fd(&self.inherited);
        let user = self.user;
        let written = self.sandbox.write_config(&config);
        if let Some(uid) = user {
            std::os::unix::fs::chown(&written, Some(uid), Some(uid)).expect("chown config");
        }
        RunningHost::start_with(&self.sandbox, &config, |command| {
            if !skip.is_empty() {
                command.env("PLUGIN_HOST_TEST_SANDBOX_SKIP", skip.join(","));
            }
            if removed.contains(&Namespaces) {
                command.env("PLUGIN_HOST_TEST_NO_NAMESPACES", "1");
            }
            // SAFETY: dup2, setgroups, setgid and setuid are async-signal-safe; the first
            // copies a descriptor this process owns onto a number it does not use, the
            // others make the child `user` with no supplementary group.
            #[allow(unsafe_code)]
            unsafe {
                command.pre_exec(move || {
                    let become_user = |uid: u32| {
                        libc::setgroups(0, std::ptr::null()) == 0
                            && libc::setgid(uid) == 0
                            && libc::setuid(uid) == 0
                    };
                    if libc::dup2(inherited, INHERITED_FD) < 0 || !user.is_none_or(become_user) {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        })
    }

    /// What the attacks aim at in `host`.
    fn target(&self, host: &RunningHost) -> serde_json::Value {
        let (status, other) = host.call("rogue", "pid", "null");
        let other = other.unwrap_or_else(|err| panic!("{status}: {err:?}"));
        let cache_file = std::fs::read_dir(self.sandbox.cache_dir())
            .expect("cache dir")
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| path.is_file())
            .expect("a registry cache file");
        // SAFETY: getpgid has no memory effects.
        #[allow(unsafe_code)]
        let host_pgid = unsafe { libc::getpgid(host.pid() as libc::pid_t) };
        let other = other.as_u64().and_then(|pid| u32::try_from(pid).ok());
        self.aim(
            (host.pid(), host_pgid),
            other.expect("the other worker's pid"),
            host.addr.port(),
            &cache_file,
        )
    }

    /// The target of the attacks: the host (pid and group), another process of the same
    /// user, a TCP port (the admin API's), the registry cache, and the lab's own files,
    /// sockets and descriptor.
    fn aim(
        &self,
        (host_pid, host_pgid): (u32, i32),
        other_pid: u32,
        tcp_port: u16,
        cache_file: &std::path::Path,
    ) -> serde_json::Value {
        let root = self.sandbox.root();
        let path = |p: PathBuf| p.display().to_string();
        serde_json::json!({
            "host_pid": host_pid,
            "host_pgid": host_pgid,
            "other_pid": other_pid,
            "tcp_port": tcp_port,
            "udp_port": self.udp.local_addr().expect("udp address").port(),
            "unix_path": path(root.join("socket")),
            "datagram_path": path(root.join("datagram")),
            "abstract_name": self.abstract_name,
            "config": path(root.join("host.toml")),
            "trust_file": path(root.join("trusted.toml")),
            "cache_file": path(cache_file.to_path_buf()),
            "secret": path(root.join("secret")),
            "victim": path(root.join("victim")),
            "plugins_dir": path(self.sandbox.plugins_dir()),
            "inherited_fd": INHERITED_FD,
        })
    }
}

/// Runs every attack in `host`'s sandboxed worker; the outcome of each.
fn attack_all(host: &RunningHost, target: &serde_json::Value) -> Vec<(String, String)> {
    let (status, names) = host.call("hostile", "attacks", "null");
    let names = names.unwrap_or_else(|err| panic!("{status}: {err:?}"));
    let names: Vec<String> = serde_json::from_value(names).expect("names");
    assert_eq!(
        names.len(),
        ATTACKS.len(),
        "the suite lists every attack of the fixture: {names:?}"
    );
    names
        .into_iter()
        .map(|name| {
            let body = serde_json::json!({ "name": name, "target": target }).to_string();
            let (status, outcome) = host.call("hostile", "attack", &body);
            let outcome = outcome.unwrap_or_else(|err| panic!("{name}: {status}: {err:?}"));
            (name, outcome.as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

/// Each outcome against what the table says for `removed`; every mismatch, in words.
fn mismatches(outcomes: &[(String, String)], removed: &[Layer], as_root: bool) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|(name, outcome)| {
            let Some((_, fences, control)) = ATTACKS.iter().find(|(n, _, _)| n == name) else {
                return Some(format!("{name}: not in the suite's table"));
            };
            let mut fences = fences.to_vec();
            if !as_root && UNPRIVILEGED.contains(&name.as_str()) {
                fences.push(Namespaces);
            }
            if name == "thread_bomb" && !tasks_capped_here() {
                fences.clear();
            }
            let expected = gets_through(&fences, *control, removed, as_root);
            let through = outcome == "ok";
            if through == expected && (through || refused(outcome)) {
                return None;
            }
            let wanted = if expected {
                "get through"
            } else {
                "be refused"
            };
            Some(format!(
                "{name} should {wanted} (fenced by {fences:?}), got {outcome}"
            ))
        })
        .collect()
}

/// The fence in full, each layer left out in turn, and none: every outcome as the table
/// says, in the worker, with the host serving throughout and its log quiet.
fn every_scenario(user: Option<u32>) {
    let as_root = root() && user.is_none();
    let lab = Lab::new(user);
    let mut problems = Vec::new();
    for removed in SCENARIOS {
        let host = lab.host(removed);
        let target = lab.target(&host);
        let outcomes = attack_all(&host, &target);
        for problem in mismatches(&outcomes, removed, as_root) {
            problems.push(format!("without {removed:?}: {problem}"));
        }
        let (status, _) = host.get("/healthz");
        assert_eq!(status, 200, "the host serves after the attacks");
        if removed.is_empty() && tasks_capped_here() {
            // The ceiling is the configured one (the default), and the operator sees it.
            let (_, components) = host.get("/components");
            assert!(
                components.contains("at most 1024 tasks"),
                "the worker's fence names its ceiling: {components}"
            );
        }
        if removed.is_empty() {
            let log =
                std::fs::read_to_string(lab.sandbox.root().join("run.log")).unwrap_or_default();
            let loud: Vec<&str> = log
                .lines()
                .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
                .collect();
            assert!(
                loud.is_empty(),
                "the host's log stays quiet under attack:\n{}",
                loud.join("\n")
            );
        }
        drop(host);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_attack_is_refused_by_the_layers_that_fence_it_and_gets_through_without_them() {
    every_scenario(None);
}

#[test]
fn an_unprivileged_host_fences_its_workers_as_well() {
    if !root() {
        // This test runs unprivileged already: the test above is that run.
        return;
    }
    every_scenario(Some(plugin_host_tests::UNPRIVILEGED_UID));
}
