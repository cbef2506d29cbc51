//! The worker sandbox on Linux: no_new_privs, a Landlock ruleset and a seccomp filter,
//! entered by the worker before it opens the plugin's library (so before the library's
//! first instruction, its constructors included) and before it starts any thread (so
//! every thread it starts inherits them).
//!
//! - Files: read and execute the library and the system's shared libraries; read
//!   `/proc/self` and a few devices; read, or read and write, what is granted; nothing
//!   else (Landlock).
//! - Network: TCP connect and bind are refused unless granted (Landlock), and so are
//!   IPv4 and IPv6 sockets of any kind (seccomp).
//! - Programs: executing one is refused unless granted (Landlock: nothing else is
//!   executable; seccomp: `execve`, `fork`, `vfork`, and `clone` without `CLONE_THREAD`).
//!
//! Refused operations fail inside the plugin with a permission error (`EACCES`, or
//! `EPERM`); the kernel does not tell the host about them, so they are not counted.

use std::collections::BTreeMap;

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, LandlockStatus, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, ABI,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::SandboxPlan;

/// What the system's dynamic loader and shared libraries live in.
const SYSTEM_LIBRARIES: [&str; 6] = [
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/etc/ld.so.cache",
];

/// Read-only everywhere a process reads without asking: its own `/proc` entry and a few
/// devices.
const ALWAYS_READ: [&str; 4] = ["/proc/self", "/dev/null", "/dev/zero", "/dev/urandom"];

/// Where programs live, executable when starting programs is granted.
const PROGRAMS: [&str; 5] = ["/bin", "/usr/bin", "/usr/local/bin", "/sbin", "/usr/sbin"];

/// The Landlock ABI this sandbox is written against (6: TCP and scoping restrictions).
const LANDLOCK_ABI: ABI = ABI::V6;

/// Enters the sandbox `plan` describes for `library`; what was applied, or why the worker
/// must not go on (`plan.best_effort` false and something could not be enforced).
pub(crate) fn enter(plan: &SandboxPlan, library: &std::fs::File) -> Result<String, String> {
    // SAFETY: prctl with these arguments only sets a flag of this process.
    #[allow(unsafe_code)]
    let no_new_privs = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } == 0;
    if !no_new_privs && !plan.best_effort {
        return Err("no_new_privs could not be set".into());
    }
    let landlock = landlock(plan, library)?;
    let seccomp = seccomp(plan);
    match (&seccomp, plan.best_effort) {
        (Err(why), false) => return Err(format!("the seccomp filter could not be set: {why}")),
        (Err(why), true) => tracing::warn!("sandbox without its seccomp filter: {why}"),
        _ => {}
    }
    Ok(format!(
        "{landlock}; seccomp {}; no_new_privs {}",
        if seccomp.is_ok() { "on" } else { "off" },
        if no_new_privs { "on" } else { "off" },
    ))
}

fn landlock(plan: &SandboxPlan, library: &std::fs::File) -> Result<String, String> {
    let abi = LANDLOCK_ABI;
    let read = AccessFs::from_read(abi);
    let read_exec = read | AccessFs::Execute;
    let read_write = read | AccessFs::from_write(abi);
    let mut rules: Vec<(String, landlock::BitFlags<AccessFs>)> = Vec::new();
    rules.extend(
        SYSTEM_LIBRARIES
            .iter()
            .map(|p| ((*p).to_owned(), read_exec)),
    );
    rules.extend(ALWAYS_READ.iter().map(|p| ((*p).to_owned(), read)));
    rules.push(("/dev/null".to_owned(), read_write));
    if plan.spawn {
        rules.extend(PROGRAMS.iter().map(|p| ((*p).to_owned(), read_exec)));
    }
    rules.extend(plan.read.iter().map(|p| (p.display().to_string(), read)));
    rules.extend(
        plan.write
            .iter()
            .map(|p| (p.display().to_string(), read_write)),
    );

    let level = if plan.best_effort {
        CompatLevel::BestEffort
    } else {
        CompatLevel::HardRequirement
    };
    let error =
        |err: landlock::RulesetError| format!("the Landlock ruleset could not be set: {err}");
    let mut ruleset = Ruleset::default()
        .set_compatibility(level)
        .handle_access(AccessFs::from_all(abi))
        .map_err(error)?;
    if !plan.connect {
        ruleset = ruleset
            .handle_access(AccessNet::ConnectTcp | AccessNet::BindTcp)
            .map_err(error)?;
    }
    // The library by the descriptor the host vetted and handed over, not by a path.
    let mut created = ruleset
        .create()
        .map_err(error)?
        .add_rule(PathBeneath::new(
            library,
            read_exec & AccessFs::from_file(abi),
        ))
        .map_err(error)?;
    for (path, access) in rules {
        // A path that does not exist here (no /lib64, say) grants nothing to miss.
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        // What only makes sense for a directory (listing it, making files in it) is not
        // granted on a file.
        let access = if metadata.is_dir() {
            access
        } else {
            access & AccessFs::from_file(abi)
        };
        if let Ok(fd) = PathFd::new(&path) {
            created = created
                .add_rule(PathBeneath::new(fd, access))
                .map_err(error)?;
        }
    }
    let status = created.restrict_self().map_err(error)?;
    let effective = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => format!("{effective_abi:?}"),
        LandlockStatus::NotImplemented => "not in this kernel".to_owned(),
        LandlockStatus::NotEnabled => "not enabled in this kernel".to_owned(),
    };
    let enforced = match status.ruleset {
        RulesetStatus::FullyEnforced => "fully enforced",
        RulesetStatus::PartiallyEnforced => "partially enforced",
        RulesetStatus::NotEnforced => "not enforced",
    };
    if status.ruleset == RulesetStatus::NotEnforced {
        if !plan.best_effort {
            return Err(format!(
                "Landlock is {effective}; sandbox = true refuses to run without it (sandbox = \"best-effort\" runs with a warning)"
            ));
        }
        tracing::warn!(
            "sandbox without Landlock ({effective}): files and network are not fenced in"
        );
    }
    Ok(format!("Landlock {enforced} (ABI {effective})"))
}

fn seccomp(plan: &SandboxPlan) -> Result<(), String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => TargetArch::x86_64,
        "aarch64" => TargetArch::aarch64,
        other => return Err(format!("no seccomp filter for {other}")),
    };
    let mut refused: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let rule =
        |conditions: Vec<SeccompCondition>| SeccompRule::new(conditions).map_err(|e| e.to_string());
    let condition = |arg: u8, op: SeccompCmpOp, value: u64| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(|e| e.to_string())
    };
    if !plan.connect {
        let families = [libc::AF_INET, libc::AF_INET6]
            .iter()
            .map(|family| rule(vec![condition(0, SeccompCmpOp::Eq, *family as u64)?]))
            .collect::<Result<Vec<_>, String>>()?;
        refused.insert(libc::SYS_socket, families);
    }
    let mut no_clone3 = BTreeMap::new();
    if !plan.spawn {
        // An empty list matches every call of the syscall.
        refused.insert(libc::SYS_execve, Vec::new());
        refused.insert(libc::SYS_execveat, Vec::new());
        #[cfg(target_arch = "x86_64")]
        {
            refused.insert(libc::SYS_fork, Vec::new());
            refused.insert(libc::SYS_vfork, Vec::new());
        }
        let thread = libc::CLONE_THREAD as u64;
        refused.insert(
            libc::SYS_clone,
            vec![rule(vec![SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(thread),
                0,
            )
            .map_err(|e| e.to_string())?])?],
        );
        // clone3 hides its flags behind a pointer: answer "not implemented", and the C
        // library falls back to clone, whose flags the rule above reads.
        no_clone3.insert(libc::SYS_clone3, Vec::new());
    }
    for (rules, errno) in [(refused, libc::EACCES), (no_clone3, libc::ENOSYS)] {
        if rules.is_empty() {
            continue;
        }
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(u32::try_from(errno).unwrap_or(1)),
            arch,
        )
        .map_err(|e| e.to_string())?;
        let program: BpfProgram = filter
            .try_into()
            .map_err(|e: seccompiler::BackendError| e.to_string())?;
        seccompiler::apply_filter(&program).map_err(|e| e.to_string())?;
    }
    Ok(())
}
