//! The host's children on Unix (workers and scanners): each leads a session and process
//! group of its own (so it and whatever it starts end together, and nothing it starts
//! can join the host's group), dies with the host (`PR_SET_PDEATHSIG` on Linux, set by a
//! thread that lives as long as the host), starts with the open-files limit the host had
//! before raising its own, and its death is learned from the kernel
//! (`waitid`), not from its socket, which a descendant may hold open. What the child
//! does to fence itself in is `contain`'s.

use std::{
    io,
    os::unix::process::{CommandExt, ExitStatusExt},
    process::{Child, Command, ExitStatus},
    sync::{mpsc, Mutex, OnceLock},
};

type SpawnJob = (Command, mpsc::SyncSender<io::Result<Child>>);

/// Starts `command` as a child of the host: the leader of a new session, killed when the
/// host dies. The spawn happens on one thread that lives as long as the process, because
/// Linux delivers the parent-death signal when the *thread* that forked the child exits.
pub(crate) fn spawn_child(mut command: Command) -> io::Result<Child> {
    let host = std::process::id();
    let open_files = super::descriptors::children_open_files_limit();
    // SAFETY: setsid, prctl, getppid, getrlimit and setrlimit are async-signal-safe;
    // nothing else runs between fork and exec here.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(soft) = open_files {
                super::descriptors::lower_open_files_limit(soft);
            }
            #[cfg(target_os = "linux")]
            {
                let signal = libc::c_ulong::try_from(host_death_signal()).unwrap_or(9);
                if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // The host may have died before the line above: then nothing kills us.
            if u32::try_from(libc::getppid()).ok() != Some(host) {
                return Err(io::Error::other("the host is gone"));
            }
            Ok(())
        });
    }
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, incoming) = mpsc::channel::<SpawnJob>();
        let started = std::thread::Builder::new()
            .name("plugin-host-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            });
        if let Err(err) = started {
            tracing::error!(error = %err, "cannot start the child spawner thread");
        }
        Mutex::new(jobs)
    });
    let (reply, answer) = mpsc::sync_channel(1);
    let sent = spawner
        .lock()
        .map_err(|_| io::Error::other("the child spawner failed"))?
        .send((command, reply));
    if sent.is_err() {
        return Err(io::Error::other("the child spawner thread is not running"));
    }
    answer
        .recv()
        .unwrap_or_else(|_| Err(io::Error::other("the child spawner thread ended")))
}

/// The signal a child gets when its host dies (Linux): a real-time one that nothing else
/// sends, whose handler ends the child's whole process group, so that what its plugin
/// started dies too. Before the handler is in place (between exec and
/// [`end_group_when_host_dies`]) its default action ends the child alone, which has
/// started nothing yet.
fn host_death_signal() -> libc::c_int {
    libc::SIGRTMIN() + 4
}

/// In a child: on the host's death, end this process group (this process included).
/// Installed by the process that runs no plugin code (the warden, where there is one),
/// so no plugin can take it away.
pub(crate) fn end_group_when_host_dies() {
    extern "C" fn end_group(_signal: libc::c_int) {
        // SAFETY: kill is async-signal-safe; group 0 is this process's own.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(0, libc::SIGKILL);
        }
    }
    #[cfg(target_os = "linux")]
    // SAFETY: installs a handler that makes one async-signal-safe call; the sigaction
    // struct is zeroed and then filled in, and read only by the kernel.
    #[allow(unsafe_code)]
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = end_group as *const () as usize;
        libc::sigemptyset(&raw mut action.sa_mask);
        libc::sigaction(host_death_signal(), &raw const action, std::ptr::null_mut());
    }
}

/// The process group of a running worker: learn its end from the kernel, kill it and
/// everything it started.
///
/// The worker is not reaped until [`Self::wait`]'s caller says so ([`Self::reap`]):
/// until then its pid, which names the group, cannot be reused, so a kill can never hit
/// another process.
#[derive(Debug)]
pub(crate) struct ProcessWatch {
    pid: libc::pid_t,
}

impl ProcessWatch {
    /// Watches the worker `child` started by [`spawn_child`] (its pid is its group's).
    pub(crate) fn new(child: &Child) -> io::Result<Self> {
        let pid = libc::pid_t::try_from(child.id())
            .map_err(|_| io::Error::other("a process id out of range"))?;
        Ok(Self { pid })
    }

    /// Blocks until the worker has ended, without reaping it; how it ended.
    pub(crate) fn wait(&self) -> io::Result<ExitStatus> {
        loop {
            // SAFETY: waitid writes the siginfo it is given and reads nothing else.
            #[allow(unsafe_code)]
            let (result, info) = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                let result = libc::waitid(
                    libc::P_PID,
                    libc::id_t::try_from(self.pid).unwrap_or_default(),
                    &raw mut info,
                    libc::WEXITED | libc::WNOWAIT,
                );
                (result, info)
            };
            if result == 0 {
                // SAFETY: after a successful waitid for WEXITED the child fields are set.
                #[allow(unsafe_code)]
                let (code, status) = unsafe { (info.si_code, info.si_status()) };
                let raw = match code {
                    libc::CLD_EXITED => (status & 0xff) << 8,
                    libc::CLD_DUMPED => (status & 0x7f) | 0x80,
                    _ => status & 0x7f,
                };
                return Ok(ExitStatus::from_raw(raw));
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Kills the child's whole process group, and the child itself should it have left
    /// the group: the child and what it started (in a PID namespace, everything it
    /// started; outside one, what has not left the group). Call it only before
    /// [`Self::reap`].
    pub(crate) fn kill_group(&self) {
        // SAFETY: kill has no memory effects; group and process are named by an
        // unreaped pid, which cannot have been reused.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
            libc::kill(self.pid, libc::SIGKILL);
        }
    }

    /// Reaps the ended worker: its pid is free afterwards.
    pub(crate) fn reap(&self) {
        let mut status = 0;
        // SAFETY: waitpid writes the status it is given and reads nothing else.
        #[allow(unsafe_code)]
        unsafe {
            libc::waitpid(self.pid, &raw mut status, 0);
        }
    }
}

/// How a child process ended, naming the signal where one killed it.
pub(crate) fn describe_status(status: ExitStatus) -> String {
    if let Some(signal) = status.signal() {
        let name = match signal {
            4 => " (SIGILL)",
            6 => " (SIGABRT)",
            7 => " (SIGBUS)",
            9 => " (SIGKILL)",
            11 => " (SIGSEGV)",
            _ => "",
        };
        return format!("killed by signal {signal}{name}");
    }
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => status.to_string(),
    }
}
