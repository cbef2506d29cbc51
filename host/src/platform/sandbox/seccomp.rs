//! The seccomp layer: an allowlist. What a plugin written against plugin-api needs runs
//! (memory, threads, futexes, time, files as Landlock allows, its link to the host, its
//! own signals); every other system call fails with `EPERM`, and a few with `ENOSYS` so
//! that the C library falls back to one the filter can read (`clone3`, whose flags hide
//! behind a pointer) or does without (io_uring).
//!
//! Arguments are checked where the call itself can reach outside: signals go to this
//! process only (to its children too, when it may start programs), threads are the only
//! clones (no namespaces ever), no descriptor names another process as the owner its
//! signals go to, sockets are created only as granted (TCP and UDP by protocol too: a
//! stream socket of another protocol, MPTCP or SCTP, is beyond Landlock's TCP rules),
//! scheduling and limits change this process only, and `prctl` does only what cannot
//! loosen the fence.

use std::collections::BTreeMap;

use crate::platform::SetupError;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::platform::{Connect, SandboxPlan};

/// Rules by system call: an empty list allows every call, else any rule that matches.
type Rules = BTreeMap<i64, Vec<SeccompRule>>;

/// The flags of `clone` that make new namespaces.
const NAMESPACES: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// `memfd_create`'s flag for an executable file.
const MFD_EXEC: u64 = 0x10;

/// `prctl` options that read, or change only what cannot loosen the fence.
const PRCTL_ALLOWED: [libc::c_int; 19] = [
    libc::PR_SET_NAME,
    libc::PR_GET_NAME,
    libc::PR_GET_DUMPABLE,
    libc::PR_GET_NO_NEW_PRIVS,
    libc::PR_SET_NO_NEW_PRIVS,
    libc::PR_GET_SECCOMP,
    libc::PR_CAPBSET_READ,
    libc::PR_GET_PDEATHSIG,
    libc::PR_GET_TIMERSLACK,
    libc::PR_SET_TIMERSLACK,
    libc::PR_GET_THP_DISABLE,
    libc::PR_SET_THP_DISABLE,
    libc::PR_GET_TID_ADDRESS,
    libc::PR_GET_CHILD_SUBREAPER,
    libc::PR_GET_KEEPCAPS,
    libc::PR_GET_SECUREBITS,
    libc::PR_GET_SPECULATION_CTRL,
    libc::PR_SET_SPECULATION_CTRL,
    0x5356_4d41, // PR_SET_VMA: names anonymous mappings
];

/// Installs the filters for `plan`; what is enforced, or why it is not.
pub(super) fn restrict(plan: &SandboxPlan) -> Result<String, SetupError> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => TargetArch::x86_64,
        "aarch64" => TargetArch::aarch64,
        other => return Err(SetupError::NoSeccompFilter(other)),
    };
    let allowed = allowlist(plan).map_err(seccompiler::Error::from)?;
    let not_implemented = BTreeMap::from(ENOSYS.map(|call| (call, Vec::new())));
    install(
        allowed,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )?;
    // Installed last, so its ENOSYS wins over the allowlist's EPERM for these calls.
    install(
        not_implemented,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    Ok("seccomp allowlist".into())
}

fn install(
    rules: Rules,
    mismatch: SeccompAction,
    matched: SeccompAction,
    arch: TargetArch,
) -> Result<(), SetupError> {
    let filter =
        SeccompFilter::new(rules, mismatch, matched, arch).map_err(seccompiler::Error::from)?;
    let program: BpfProgram = filter.try_into().map_err(seccompiler::Error::from)?;
    Ok(seccompiler::apply_filter_all_threads(&program)?)
}

/// Calls answered "not implemented": the C library falls back (`clone3` to `clone`) or
/// does without.
const ENOSYS: [i64; 4] = [
    libc::SYS_clone3,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
];

/// Calls allowed whatever their arguments.
const ALWAYS: &[i64] = &[
    // Memory.
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_mincore,
    libc::SYS_msync,
    libc::SYS_mlock,
    libc::SYS_mlock2,
    libc::SYS_munlock,
    libc::SYS_mlockall,
    libc::SYS_munlockall,
    libc::SYS_membarrier,
    libc::SYS_get_mempolicy,
    libc::SYS_set_mempolicy,
    libc::SYS_mbind,
    libc::SYS_pkey_alloc,
    libc::SYS_pkey_free,
    libc::SYS_pkey_mprotect,
    libc::SYS_mseal,
    // Threads, futexes, scheduling of this process.
    libc::SYS_futex,
    libc::SYS_futex_waitv,
    libc::SYS_set_robust_list,
    libc::SYS_set_tid_address,
    libc::SYS_rseq,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_getparam,
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_getattr,
    libc::SYS_sched_get_priority_max,
    libc::SYS_sched_get_priority_min,
    libc::SYS_sched_rr_get_interval,
    libc::SYS_getpriority,
    libc::SYS_getcpu,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_wait4,
    libc::SYS_waitid,
    // Identity (reading only).
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_gettid,
    libc::SYS_getpgid,
    libc::SYS_getsid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getresuid,
    libc::SYS_getresgid,
    libc::SYS_getgroups,
    libc::SYS_capget,
    libc::SYS_uname,
    libc::SYS_sysinfo,
    libc::SYS_getrusage,
    libc::SYS_times,
    libc::SYS_getrlimit,
    libc::SYS_setrlimit,
    libc::SYS_getrandom,
    libc::SYS_ioprio_get,
    // More filters only ever refuse more (and this one installs its second filter).
    libc::SYS_seccomp,
    // Signals of this process.
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigpending,
    libc::SYS_rt_sigsuspend,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    libc::SYS_signalfd4,
    // Time and timers.
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettimeofday,
    libc::SYS_getitimer,
    libc::SYS_setitimer,
    libc::SYS_timer_create,
    libc::SYS_timer_settime,
    libc::SYS_timer_gettime,
    libc::SYS_timer_getoverrun,
    libc::SYS_timer_delete,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_settime,
    libc::SYS_timerfd_gettime,
    // Descriptors and files (which files: Landlock's).
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_close,
    libc::SYS_close_range,
    libc::SYS_lseek,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_statfs,
    libc::SYS_fstatfs,
    libc::SYS_getdents64,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_pipe2,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_readlinkat,
    libc::SYS_getcwd,
    libc::SYS_chdir,
    libc::SYS_fchdir,
    libc::SYS_umask,
    libc::SYS_mkdirat,
    libc::SYS_unlinkat,
    libc::SYS_renameat2,
    libc::SYS_linkat,
    libc::SYS_symlinkat,
    libc::SYS_ftruncate,
    libc::SYS_truncate,
    libc::SYS_fallocate,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_sync_file_range,
    libc::SYS_flock,
    libc::SYS_fadvise64,
    libc::SYS_readahead,
    libc::SYS_sendfile,
    libc::SYS_copy_file_range,
    libc::SYS_splice,
    libc::SYS_tee,
    libc::SYS_vmsplice,
    libc::SYS_getxattr,
    libc::SYS_lgetxattr,
    libc::SYS_fgetxattr,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_flistxattr,
    libc::SYS_io_setup,
    libc::SYS_io_destroy,
    libc::SYS_io_submit,
    libc::SYS_io_cancel,
    libc::SYS_io_getevents,
    // Waiting on descriptors.
    libc::SYS_ppoll,
    libc::SYS_pselect6,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_eventfd2,
    // Sockets it already holds (its link to the host, socket pairs, granted ones).
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_sendmmsg,
    libc::SYS_recvmmsg,
    libc::SYS_shutdown,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
];

/// The x86_64 calls that newer architectures only have as `*at` or `p*` variants.
#[cfg(target_arch = "x86_64")]
const LEGACY: &[i64] = &[
    libc::SYS_open,
    libc::SYS_creat,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_access,
    libc::SYS_pipe,
    libc::SYS_dup2,
    libc::SYS_readlink,
    libc::SYS_mkdir,
    libc::SYS_rmdir,
    libc::SYS_unlink,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_link,
    libc::SYS_symlink,
    libc::SYS_getdents,
    libc::SYS_poll,
    libc::SYS_select,
    libc::SYS_epoll_create,
    libc::SYS_epoll_wait,
    libc::SYS_eventfd,
    libc::SYS_signalfd,
    libc::SYS_pause,
    libc::SYS_alarm,
    libc::SYS_time,
    libc::SYS_getpgrp,
    libc::SYS_arch_prctl,
];

#[cfg(not(target_arch = "x86_64"))]
const LEGACY: &[i64] = &[];

/// Calls that start programs, allowed when starting programs is granted.
#[cfg(target_arch = "x86_64")]
const SPAWN: &[i64] = &[libc::SYS_execve, libc::SYS_fork, libc::SYS_vfork];

#[cfg(not(target_arch = "x86_64"))]
const SPAWN: &[i64] = &[libc::SYS_execve];

/// The allowlist for `plan`, with this process's id for the calls that may only name
/// it.
fn allowlist(plan: &SandboxPlan) -> Result<Rules, seccompiler::BackendError> {
    let mut rules: Rules = ALWAYS
        .iter()
        .chain(LEGACY)
        .map(|call| (*call, Vec::new()))
        .collect();
    if plan.spawn {
        rules.extend(SPAWN.iter().map(|call| (*call, Vec::new())));
    }
    // SAFETY: getpid has no memory effects.
    #[allow(unsafe_code)]
    let me = u64::try_from(unsafe { libc::getpid() }).unwrap_or(u64::MAX);
    rules.insert(libc::SYS_kill, kill(me, plan.spawn)?);
    rules.insert(libc::SYS_tgkill, kill(me, plan.spawn)?);
    rules.insert(libc::SYS_rt_sigqueueinfo, vec![rule(&[arg_eq(0, me)?])?]);
    rules.insert(libc::SYS_rt_tgsigqueueinfo, vec![rule(&[arg_eq(0, me)?])?]);
    rules.insert(libc::SYS_clone, clone(plan.spawn)?);
    rules.insert(libc::SYS_prctl, one_of(0, PRCTL_ALLOWED.map(|o| o as u64))?);
    rules.insert(libc::SYS_ioctl, vec![ioctl()?]);
    rules.insert(libc::SYS_fcntl, fcntl(me)?);
    rules.insert(
        libc::SYS_memfd_create,
        vec![rule(&[masked(1, MFD_EXEC, 0)?])?],
    );
    rules.insert(libc::SYS_socketpair, socket_pair()?);
    for own in [
        libc::SYS_sched_setaffinity,
        libc::SYS_sched_setparam,
        libc::SYS_sched_setscheduler,
        libc::SYS_sched_setattr,
        libc::SYS_prlimit64,
        libc::SYS_get_robust_list,
    ] {
        rules.insert(own, vec![rule(&[arg_eq(0, 0)?])?]);
    }
    rules.insert(
        libc::SYS_setpriority,
        vec![rule(&[
            arg_eq(0, libc::PRIO_PROCESS as u64)?,
            arg_eq(1, 0)?,
        ])?],
    );
    if plan.connect != Connect::Nothing {
        rules.insert(libc::SYS_socket, sockets(&plan.connect)?);
        rules.insert(libc::SYS_connect, Vec::new());
    }
    Ok(rules)
}

fn rule(conditions: &[SeccompCondition]) -> Result<SeccompRule, seccompiler::BackendError> {
    SeccompRule::new(conditions.to_vec())
}

fn arg_eq(arg: u8, value: u64) -> Result<SeccompCondition, seccompiler::BackendError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
}

fn masked(arg: u8, mask: u64, value: u64) -> Result<SeccompCondition, seccompiler::BackendError> {
    SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(mask),
        value,
    )
}

/// Rules allowing argument `arg` to be any of `values`.
fn one_of(
    arg: u8,
    values: impl IntoIterator<Item = u64>,
) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    values
        .into_iter()
        .map(|value| rule(&[arg_eq(arg, value)?]))
        .collect()
}

/// Signals (`kill`, and `tgkill` to a thread) to this process, SIGKILL to its own
/// process group (a worker outside a namespace ends with its group), and, when it may
/// start programs, to any process it can see (its children; Landlock's signal scope and
/// its PID namespace keep the rest out of reach). Never `kill(-1)`, never another group.
fn kill(me: u64, spawn: bool) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    let mut rules = vec![
        rule(&[arg_eq(0, me)?])?,
        rule(&[arg_eq(0, 0)?, arg_eq(1, libc::SIGKILL as u64)?])?,
    ];
    if spawn {
        rules.push(rule(&[
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Gt, 0)?,
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Lt, 1 << 31)?,
        ])?);
    }
    Ok(rules)
}

/// Threads only (no namespaces), or, when it may start programs, processes too.
fn clone(spawn: bool) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    let thread = libc::CLONE_THREAD as u64;
    if spawn {
        Ok(vec![rule(&[masked(0, NAMESPACES, 0)?])?])
    } else {
        Ok(vec![rule(&[masked(0, NAMESPACES | thread, thread)?])?])
    }
}

/// `ioctl`s that set the process (or group) a socket's signals go to
/// (`<asm-generic/sockios.h>`), as `fcntl`'s `F_SETOWN` does.
const FIOSETOWN: u64 = 0x8901;
const SIOCSPGRP: u64 = 0x8902;

/// `fcntl`'s command that sets a descriptor's owner thread or group (`<fcntl.h>`).
const F_SETOWN_EX: u64 = 15;

/// Argument `arg` is none of `values`.
fn none_of(arg: u8, values: &[u64]) -> Result<SeccompRule, seccompiler::BackendError> {
    let conditions = values
        .iter()
        .map(|value| SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, *value))
        .collect::<Result<Vec<_>, _>>()?;
    rule(&conditions)
}

/// Every `ioctl` but those that push input into a terminal, act on its console, or name
/// another process as the one a descriptor's signals go to (a `kill` by another door:
/// with `O_ASYNC`, the kernel sends the owner `SIGIO`, or any signal `F_SETSIG` chose).
fn ioctl() -> Result<SeccompRule, seccompiler::BackendError> {
    // The request's type is the C library's (`c_ulong` with glibc, `c_int` with musl).
    #[allow(clippy::unnecessary_cast)]
    let (push_input, console) = (libc::TIOCSTI as u64, libc::TIOCLINUX as u64);
    none_of(1, &[push_input, console, FIOSETOWN, SIOCSPGRP])
}

/// Every `fcntl` but those that set a descriptor's owner (as the `ioctl`s above) to
/// anything but this process (`me`): its own `SIGIO` a plugin may still ask for. Left to
/// itself a descriptor's signals go to nobody, and those of `F_NOTIFY` and leases to the
/// process that asked for them.
fn fcntl(me: u64) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    let set_owner = libc::F_SETOWN as u64;
    Ok(vec![
        none_of(1, &[set_owner, F_SETOWN_EX])?,
        rule(&[arg_eq(1, set_owner)?, arg_eq(2, me)?])?,
    ])
}

/// Connected pairs of Unix sockets (stream or sequential packets: they cannot be pointed
/// at another address later, as a datagram one could).
fn socket_pair() -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    [libc::SOCK_STREAM, libc::SOCK_SEQPACKET]
        .iter()
        .map(|kind| {
            rule(&[
                arg_eq(0, libc::AF_UNIX as u64)?,
                masked(1, 0xf, *kind as u64)?,
            ])
        })
        .collect()
}

/// IPv4 and IPv6 sockets as granted: TCP to the granted ports (which Landlock checks),
/// and UDP too when any connection is (name resolution). The protocol is the family's
/// default or named as TCP (UDP): Landlock checks TCP alone, and a stream socket of
/// MPTCP (which falls back to TCP with any peer) or SCTP would connect to any port.
/// Never Unix, netlink, packet or raw sockets.
fn sockets(connect: &Connect) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    let tcp = (libc::SOCK_STREAM, libc::IPPROTO_TCP);
    let udp = (libc::SOCK_DGRAM, libc::IPPROTO_UDP);
    let kinds: &[(libc::c_int, libc::c_int)] = match connect {
        Connect::Anywhere => &[tcp, udp],
        Connect::Ports(_) | Connect::Nothing => &[tcp],
    };
    let mut rules = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        for (kind, named) in kinds {
            for protocol in [0, *named] {
                rules.push(rule(&[
                    arg_eq(0, family as u64)?,
                    masked(1, 0xf, *kind as u64)?,
                    arg_eq(2, protocol as u64)?,
                ])?);
            }
        }
    }
    Ok(rules)
}
