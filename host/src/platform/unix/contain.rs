//! Containment of the host's children on Unix (workers and scanners, which run plugin
//! code): a clean start, and a fence that ends everything the child starts when it ends.
//!
//! On Linux, where the kernel allows it (as root, or through an unprivileged user
//! namespace), the child becomes three processes:
//!
//! ```text
//! host ── warden (the host's child: waits, mirrors, never runs plugin code)
//!           └── init (pid 1 of a new PID namespace: waits, reaps, nothing else)
//!                 └── worker (pid 2 there: runs the plugin)
//! ```
//!
//! When the worker ends, init tells the warden how and exits, and the kernel kills every
//! process left in the namespace, whatever it did (`setsid` included); then the warden
//! exits as the worker did (its exit code, or the signal that killed it), so the host sees
//! the worker's own end. When the warden dies (the host killed its group, or the host
//! died and its parent-death signal fired), init gets SIGKILL from the kernel (its own
//! parent-death signal), and the namespace goes with it. Every process in the namespace
//! is init's child or reparented to it, so init reaps them all as the namespace ends and
//! the teardown never waits on another reaper. The worker is not the namespace's init
//! because an init cannot be killed by its own signals: an `abort()` there would end as
//! a segfault.
//!
//! Elsewhere (no namespaces: a container that forbids them, or another Unix), the child
//! stays one process, the leader of its own session and process group, and a child
//! subreaper: the host kills the group, and what the plugin started but left behind is
//! reparented to the worker rather than lost, and dies with the group.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether this process runs inside a PID namespace of its own (its warden ends what it
/// leaves behind), rather than as the leader of a process group that it must end itself.
static IN_NAMESPACE: AtomicBool = AtomicBool::new(false);

/// The descriptor of the dynamic loader's trace that [`clean_start`] kept (-1: none),
/// for the children of [`fork_apart`] to keep too.
static LOADER_TRACE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// The test switch that keeps children out of namespaces, so the fallback is tested.
const NO_NAMESPACES: &str = "PLUGIN_HOST_TEST_NO_NAMESPACES";

/// Which fence holds a child of the host.
#[derive(Debug, Clone)]
pub(crate) struct Containment {
    /// In words, for `status`: "PID namespace", or why there is none.
    pub(crate) fence: String,
    /// Whether the child holds capabilities it did not have before: those of the user
    /// namespace it entered (all of them, there). It must drop them before plugin code
    /// runs.
    pub(crate) gained_capabilities: bool,
}

/// Starts a child of the host cleanly and fences it in, as the module says: descriptors
/// from `keep` up are closed, core dumps are off, and the process is not dumpable (no
/// process of the same user may read its memory or attach to it). Call it first, before
/// any thread starts. With `tasks`, the namespace holds at most that many threads and
/// processes at once (`tasks.rs`; not capped outside a namespace). Returns, in the
/// process that goes on to run plugin code, which fence holds it.
pub(crate) fn contain(keep: i32, tasks: Option<u32>) -> Containment {
    clean_start(keep);
    super::process::end_group_when_host_dies();
    #[cfg(target_os = "linux")]
    let containment = match linux::enter_pid_namespace(tasks) {
        Ok((user, capped)) => {
            IN_NAMESPACE.store(true, Ordering::Release);
            let gained_capabilities = user.is_some();
            let user = match &user {
                None => String::new(),
                Some(Ok(())) => ", in a user namespace".to_owned(),
                Some(Err(unmapped)) => {
                    format!(", in a user namespace whose ids could not be mapped: {unmapped}")
                }
            };
            let capped = capped.map_or_else(String::new, |ceiling| format!(", {ceiling}"));
            Containment {
                fence: format!("PID namespace{capped}{user}"),
                gained_capabilities,
            }
        }
        Err(why) => fallback(&why.to_string()),
    };
    #[cfg(not(target_os = "linux"))]
    let containment = {
        let _ = tasks;
        fallback("no PID namespaces on this system")
    };
    set_not_dumpable();
    containment
}

/// Exits this child with `code`. Outside a namespace it first ends its process group,
/// so what its plugin started goes with it (and a host that died cannot be relied on to).
pub(crate) fn leave(code: i32) -> ! {
    if !IN_NAMESPACE.load(Ordering::Acquire) {
        // SAFETY: kill has no memory effects; group 0 is this process's own.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(0, libc::SIGKILL);
        }
    }
    std::process::exit(code)
}

/// A child forked to do one piece of work apart from this process (see [`fork_apart`]).
#[derive(Debug)]
pub(crate) struct Apart {
    pid: libc::pid_t,
    output: std::fs::File,
}

/// Where [`fork_apart`] returns: in the child, or in this process with the child.
#[derive(Debug)]
pub(crate) enum Forked {
    /// In the child, which must end with [`end_apart`].
    Child,
    /// In this process.
    Parent(Apart),
}

/// Forks a child to do a piece of work apart from this process: what the child writes on
/// its standard output and error comes back through [`Apart::output`], it holds no
/// descriptor above those but `keep` (and the dynamic loader's trace, when debugging),
/// and it dies with this process. Outside a PID namespace it leads a session of its own,
/// as this process does (so `setsid` cannot take it out of reach). A process with more
/// than one thread gets an error instead (its child could find a lock another thread
/// held for ever): the caller does the work itself.
pub(crate) fn fork_apart(keep: &std::fs::File) -> std::io::Result<Forked> {
    use std::os::fd::{AsRawFd, FromRawFd};
    #[cfg(target_os = "linux")]
    if linux::threads() != 1 {
        return Err(std::io::Error::other(
            "this process runs more than one thread",
        ));
    }
    let keep = keep.as_raw_fd();
    let trace = LOADER_TRACE.load(Ordering::Acquire);
    let mut pipe = [-1; 2];
    // SAFETY: pipe2 writes two new descriptors into `pipe`; this process owns them.
    #[allow(unsafe_code)]
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let [read, write] = pipe;
    // SAFETY: this process has one thread (checked above on Linux; the caller's word
    // elsewhere), so the child may run any code; getpid and fork have no memory effects on
    // this process.
    #[allow(unsafe_code)]
    let (parent, pid) = unsafe { (libc::getpid(), libc::fork()) };
    match pid {
        -1 => {
            let err = std::io::Error::last_os_error();
            // SAFETY: both ends are this function's.
            #[allow(unsafe_code)]
            unsafe {
                libc::close(read);
                libc::close(write);
            }
            Err(err)
        }
        0 => {
            // SAFETY: in the child, its copies: the write end becomes its standard output
            // and error (dup2 clears close-on-exec on them); the rest is closed.
            #[allow(unsafe_code)]
            unsafe {
                #[cfg(target_os = "linux")]
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                let lead = || IN_NAMESPACE.load(Ordering::Acquire) || libc::setsid() >= 0;
                if libc::getppid() != parent
                    || !lead()
                    || libc::dup2(write, libc::STDOUT_FILENO) < 0
                    || libc::dup2(write, libc::STDERR_FILENO) < 0
                {
                    libc::_exit(1);
                }
            }
            close_from(3, &[keep, trace]);
            Ok(Forked::Child)
        }
        pid => {
            // SAFETY: the write end is the child's now; the read end is this process's
            // alone, owned by the file from here on.
            #[allow(unsafe_code)]
            let output = unsafe {
                libc::close(write);
                std::fs::File::from_raw_fd(read)
            };
            Ok(Forked::Parent(Apart { pid, output }))
        }
    }
}

impl Apart {
    /// What the child writes, until it ends (or closes its standard output and error).
    pub(crate) fn output(&mut self) -> &mut std::fs::File {
        &mut self.output
    }

    /// Waits for the child to end and reaps it; how it ended.
    pub(crate) fn wait(self) -> std::io::Result<std::process::ExitStatus> {
        use std::os::unix::process::ExitStatusExt;
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes the status it is given and reads nothing else.
            #[allow(unsafe_code)]
            if unsafe { libc::waitpid(self.pid, &raw mut status, 0) } == self.pid {
                return Ok(std::process::ExitStatus::from_raw(status));
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// Ends a child of [`fork_apart`] with `code`, at once: what it wrote is flushed, and no
/// exit handler or destructor (of a library it loaded, say) runs after its last word.
pub(crate) fn end_apart(code: i32) -> ! {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    // SAFETY: _exit ends this process; it touches no memory of it.
    #[allow(unsafe_code)]
    unsafe {
        libc::_exit(code)
    }
}

/// The fence without namespaces: the process group the host kills, and this process as
/// the subreaper of what it starts.
fn fallback(why: &str) -> Containment {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with these arguments only sets a flag of this process.
    #[allow(unsafe_code)]
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    Containment {
        fence: format!("process group and subreaper (no PID namespace: {why})"),
        gained_capabilities: false,
    }
}

fn clean_start(keep: i32) {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let trace = loader_trace();
    LOADER_TRACE.store(trace.unwrap_or(-1), Ordering::Release);
    close_from(keep, trace.as_slice());
    // SAFETY: setrlimit reads the struct it is given.
    #[allow(unsafe_code)]
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &raw const no_core);
    }
}

/// The descriptor of this process's own dynamic-loader trace (`LD_DEBUG_OUTPUT`, which
/// the loader opened for it as `PREFIX.PID` before `main`), which debugging keeps.
fn loader_trace() -> Option<i32> {
    let prefix = std::env::var_os("LD_DEBUG_OUTPUT")?;
    let own = format!("{}.{}", prefix.to_string_lossy(), std::process::id());
    std::fs::read_dir("/proc/self/fd")
        .ok()?
        .filter_map(Result::ok)
        .find(|entry| {
            std::fs::read_link(entry.path()).is_ok_and(|target| target.as_os_str() == own.as_str())
        })
        .and_then(|entry| entry.file_name().to_str()?.parse().ok())
}

/// Closes every descriptor from `keep` up, but those of `except`.
fn close_from(keep: i32, except: &[i32]) {
    let mut kept: Vec<i32> = except.iter().copied().filter(|fd| *fd >= keep).collect();
    kept.sort_unstable();
    let mut ranges = Vec::with_capacity(kept.len() + 1);
    let mut first = keep;
    for fd in kept {
        ranges.push((first, fd - 1));
        first = fd + 1;
    }
    ranges.push((first, i32::MAX));
    for (first, last) in ranges.into_iter().filter(|(first, last)| first <= last) {
        let (first, last) = (
            libc::c_uint::try_from(first).unwrap_or(0),
            libc::c_uint::try_from(last).unwrap_or(libc::c_uint::MAX),
        );
        // SAFETY: close_range closes descriptors this process owns and nothing in it
        // uses (it has just started).
        #[allow(unsafe_code)]
        unsafe {
            #[cfg(target_os = "linux")]
            libc::syscall(libc::SYS_close_range, first, last, 0);
            #[cfg(not(target_os = "linux"))]
            for fd in first..last.min(1024) {
                libc::close(fd as libc::c_int);
            }
        }
    }
}

fn set_not_dumpable() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with these arguments only sets a flag of this process.
    #[allow(unsafe_code)]
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// This process's id as the host sees it (inside a PID namespace, `getpid` says 2; the
/// `/proc` the host mounted says the truth).
pub(crate) fn pid_for_host() -> u32 {
    std::fs::read_link("/proc/self")
        .ok()
        .and_then(|target| target.to_str()?.parse().ok())
        .unwrap_or_else(std::process::id)
}

#[cfg(target_os = "linux")]
mod linux {
    //! The PID namespace, its init and the warden.

    use std::io;

    use super::NO_NAMESPACES;
    use crate::platform::SetupError;

    /// What init did to the namespace's tasks, when asked to cap them.
    pub(super) type Capped = Option<super::super::tasks::Ceiling>;

    /// Enters a new PID namespace (and IPC namespace), forks its init, which caps its
    /// tasks (with `tasks`) and forks the worker, and returns in the worker (whether it is
    /// in a user namespace of its own, whether its ids are mapped there, and the cap);
    /// the calling process becomes the warden and never returns.
    pub(super) fn enter_pid_namespace(
        tasks: Option<u32>,
    ) -> Result<(Option<io::Result<()>>, Capped), SetupError> {
        if std::env::var_os(NO_NAMESPACES).is_some() {
            return Err(SetupError::Switched(NO_NAMESPACES));
        }
        if threads() != 1 {
            return Err(SetupError::Threaded);
        }
        let user = unshare()?;
        // From here this process's next child is the new namespace's init, whatever
        // fails: the fallback (one process, its children beside it) is no longer
        // possible, so a failure ends this process, saying why.
        let cannot = |what: &str, err: io::Error| -> ! {
            eprintln!("plugin-host: cannot set up the PID namespace ({what}): {err}");
            std::process::exit(125)
        };
        let alive = Pipe::new().unwrap_or_else(|err| cannot("pipe", err));
        let report = Pipe::new().unwrap_or_else(|err| cannot("pipe", err));
        // SAFETY: this process has one thread (checked above), so the child may run any
        // code; fork has no memory effects on this process.
        #[allow(unsafe_code)]
        let init = unsafe { libc::fork() };
        match init {
            -1 => cannot("fork", io::Error::last_os_error()),
            0 => {
                die_with_parent(&alive);
                // In the namespace, with its capabilities, before the worker exists.
                let capped = tasks.map(super::super::tasks::cap);
                run_init(&report);
                Ok((user, capped))
            }
            _ => supervise(init, &alive, &report),
        }
    }

    /// How many threads this process runs.
    pub(super) fn threads() -> usize {
        std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
    }

    /// Unshares the PID and IPC namespaces, in a user namespace of its own when this
    /// process may not do it alone; whether it took a user namespace, and whether its
    /// ids are mapped there.
    ///
    /// Once the PID namespace is unshared, this process's next child is that namespace's
    /// init whatever else fails, so a failure to map the ids is reported, not returned as
    /// an error: the caller must go on as in a namespace (a fallback would fork children
    /// that find themselves pid 1 with no parent).
    fn unshare() -> Result<Option<io::Result<()>>, SetupError> {
        let namespaces = libc::CLONE_NEWPID | libc::CLONE_NEWIPC;
        // SAFETY: getuid and getgid have no memory effects. Read before the user
        // namespace is entered: inside it, before the map, they say the overflow id.
        #[allow(unsafe_code)]
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        // SAFETY: unshare has no memory effects; it changes the namespaces of this
        // process's future children.
        #[allow(unsafe_code)]
        if unsafe { libc::unshare(namespaces) } == 0 {
            return Ok(None);
        }
        let alone = io::Error::last_os_error();
        // SAFETY: as above.
        #[allow(unsafe_code)]
        let unshared = unsafe { libc::unshare(namespaces | libc::CLONE_NEWUSER) } == 0;
        if !unshared {
            let with_user = io::Error::last_os_error();
            return Err(SetupError::Unshare { alone, with_user });
        }
        Ok(Some(map_ids(uid, gid)))
    }

    /// Maps user `uid` and group `gid` (this process's, outside) to themselves in its new
    /// user namespace, so files keep their owners as it sees them.
    fn map_ids(uid: libc::uid_t, gid: libc::gid_t) -> io::Result<()> {
        std::fs::write("/proc/self/setgroups", "deny")?;
        std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1"))?;
        std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"))
    }

    /// A pipe between the warden and init: `alive`, whose write end only the warden
    /// keeps (init sees it hang up when the warden is gone), and `report`, on which init
    /// writes how the worker ended.
    struct Pipe {
        read: libc::c_int,
        write: libc::c_int,
    }

    impl Pipe {
        fn new() -> io::Result<Self> {
            let mut fds = [0; 2];
            // SAFETY: pipe2 writes two descriptors into the array it is given.
            #[allow(unsafe_code)]
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Self {
                read: fds[0],
                write: fds[1],
            })
        }
    }

    /// In init: SIGKILL when the warden dies, and if it died already, go now (the
    /// parent-death signal cannot be set for a parent that is gone).
    fn die_with_parent(alive: &Pipe) {
        // SAFETY: prctl sets a flag of this process; close and poll work on this
        // process's own descriptors, poll writes only the struct it is given.
        #[allow(unsafe_code)]
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            libc::close(alive.write);
            let mut poll = libc::pollfd {
                fd: alive.read,
                events: libc::POLLIN,
                revents: 0,
            };
            if libc::poll(&raw mut poll, 1, 0) > 0 && poll.revents & libc::POLLHUP != 0 {
                libc::_exit(1);
            }
            libc::close(alive.read);
        }
    }

    /// The namespace's init: forks the worker (and returns in it); in init itself, holds
    /// nothing, reaps whatever is reparented to it, and when the worker ends writes its
    /// status on `report` and exits, which ends the namespace.
    fn run_init(report: &Pipe) {
        // SAFETY: init has one thread (a fork of the warden's only one); fork has no
        // memory effects on it.
        #[allow(unsafe_code)]
        let worker = unsafe { libc::fork() };
        if worker == 0 {
            // SAFETY: closes the worker's copies of the report pipe, which it never uses.
            #[allow(unsafe_code)]
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                libc::close(report.read);
                libc::close(report.write);
            }
            return;
        }
        // SAFETY: init closes every descriptor but the report's write end (it uses none
        // of them); waitpid writes only the status it is given, write reads the four
        // bytes of it.
        #[allow(unsafe_code)]
        unsafe {
            close_all_but(report.write);
            if worker < 0 {
                libc::_exit(126);
            }
            loop {
                let mut status = 0;
                let ended = libc::waitpid(-1, &raw mut status, 0);
                if ended == worker {
                    libc::write(report.write, (&raw const status).cast(), 4);
                    libc::_exit(0);
                }
                if ended < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    libc::_exit(126);
                }
            }
        }
    }

    /// Closes every descriptor of this process but `keep`.
    fn close_all_but(keep: libc::c_int) {
        let keep = libc::c_uint::try_from(keep).unwrap_or(0);
        // SAFETY: close_range closes descriptors this process owns; the caller uses none.
        #[allow(unsafe_code)]
        unsafe {
            if keep > 0 {
                libc::syscall(libc::SYS_close_range, 0, keep - 1, 0);
            }
            libc::syscall(libc::SYS_close_range, keep + 1, libc::c_uint::MAX, 0);
        }
    }

    /// The warden: waits for init's word on how the worker ended, and exits as it did
    /// (or as init did, should it die without a word).
    fn supervise(init: libc::pid_t, alive: &Pipe, report: &Pipe) -> ! {
        // SAFETY: the warden closes its copies of what init and the worker use (the
        // link, the library, the pipes' other ends); the alive pipe's write end stays
        // open until it exits. read writes at most the four bytes it is given; waitpid
        // only the status.
        #[allow(unsafe_code)]
        unsafe {
            libc::close(alive.read);
            libc::close(report.write);
            for fd in 3..alive.write.min(report.read) {
                libc::close(fd);
            }
            let mut word = 0;
            let read = loop {
                let read = libc::read(report.read, (&raw mut word).cast(), 4);
                if read >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    break read;
                }
            };
            let mut status = 0;
            while libc::waitpid(init, &raw mut status, 0) < 0
                && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
            mirror(if read == 4 { word } else { status })
        }
    }

    /// Ends this process the way the worker ended (`status` from waitpid).
    fn mirror(status: libc::c_int) -> ! {
        // SAFETY: signal, sigprocmask and kill change only this process's signal state
        // and deliver the signal to it; _exit ends it.
        #[allow(unsafe_code)]
        unsafe {
            if libc::WIFSIGNALED(status) {
                let signal = libc::WTERMSIG(status);
                libc::signal(signal, libc::SIG_DFL);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&raw mut set);
                libc::sigaddset(&raw mut set, signal);
                libc::sigprocmask(libc::SIG_UNBLOCK, &raw const set, std::ptr::null_mut());
                libc::kill(libc::getpid(), signal);
                libc::_exit(128 + signal);
            }
            libc::_exit(libc::WEXITSTATUS(status))
        }
    }
}
