//! The Landlock layer: which files may be read, written and executed, which TCP ports
//! connected to, and the scopes that keep signals and abstract Unix sockets inside.
//!
//! A strict sandbox needs ABI 6 (scopes); on an older kernel it is refused naming what
//! the kernel lacks, and a best-effort one gets what the kernel has.

use std::{fs::File, path::Path};

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetError, RulesetStatus, Scope, ABI,
};

use crate::platform::{Connect, SandboxPlan};

/// The test switch that pretends the kernel's Landlock ABI is this one (lower only).
const PRETEND_ABI: &str = "PLUGIN_HOST_TEST_LANDLOCK_ABI";

/// What the system's dynamic loader and shared libraries live in.
const SYSTEM_LIBRARIES: [&str; 6] = [
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/etc/ld.so.cache",
];

/// Read-only everywhere a process reads without asking: its own `/proc` entry, a few
/// devices, the time zone.
const ALWAYS_READ: [&str; 5] = [
    "/proc/self",
    "/dev/zero",
    "/dev/urandom",
    "/etc/localtime",
    "/usr/share/zoneinfo",
];

/// What name resolution reads, granted with connections to anywhere.
const RESOLVER: [&str; 6] = [
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/host.conf",
    "/etc/services",
];

/// Where programs live, executable when starting programs is granted.
const PROGRAMS: [&str; 5] = ["/bin", "/usr/bin", "/usr/local/bin", "/sbin", "/usr/sbin"];

/// What each ABI adds that a strict sandbox needs, in words.
const NEEDED: [(ABI, &str); 6] = [
    (ABI::V1, "files"),
    (ABI::V2, "renaming and linking across directories"),
    (ABI::V3, "truncating files"),
    (ABI::V4, "TCP bind and connect"),
    (ABI::V5, "ioctl on devices"),
    (ABI::V6, "signal and abstract Unix socket scoping"),
];

/// Restricts this process as `plan` says: what is enforced, and what the kernel lacks
/// (for a best-effort plan, the rest is enforced).
pub(super) fn restrict(plan: &SandboxPlan, libraries: &[&File]) -> super::Outcome {
    use super::Outcome;
    let (abi, pretended) = effective_abi();
    let lacking: Vec<&str> = NEEDED
        .iter()
        .filter(|(since, _)| *since > abi)
        .map(|(_, what)| *what)
        .collect();
    let kernel = match (abi, pretended) {
        (abi, true) => format!("Landlock pretends to be {abi:?} ({PRETEND_ABI})"),
        (ABI::Unsupported, false) => "this kernel has no Landlock".to_owned(),
        (abi, false) => format!("this kernel's Landlock is {abi:?}"),
    };
    if abi == ABI::Unsupported {
        return Outcome::Off(format!("{kernel}: files and network are not fenced in"));
    }
    let missing = format!("{kernel}, which lacks {}", lacking.join(", "));
    if !lacking.is_empty() && !plan.best_effort {
        return Outcome::Off(missing);
    }
    match ruleset(plan, libraries, abi) {
        Err(err) => Outcome::Off(format!("the Landlock ruleset could not be set: {err}")),
        Ok(status) if status != RulesetStatus::FullyEnforced => {
            Outcome::Off(format!("{kernel}; the ruleset is {status:?}"))
        }
        Ok(_) if lacking.is_empty() => {
            Outcome::Full(format!("Landlock {abi:?} (files, TCP, scopes)"))
        }
        Ok(_) => Outcome::Partial(format!("Landlock {abi:?} (in part)"), missing),
    }
}

/// The kernel's ABI, or the lower one a test pretends; whether it is pretended.
fn effective_abi() -> (ABI, bool) {
    let real = ABI::from(kernel_abi());
    let pretend = std::env::var(PRETEND_ABI)
        .ok()
        .and_then(|value| value.trim().parse::<i32>().ok())
        .map(ABI::from);
    match pretend {
        Some(pretend) if pretend < real => (pretend, true),
        _ => (real, false),
    }
}

/// The Landlock ABI this kernel implements, as it says (`LANDLOCK_CREATE_RULESET_VERSION`);
/// 0 or less without Landlock.
fn kernel_abi() -> i32 {
    const VERSION: libc::c_ulong = 1;
    // SAFETY: with a null attribute and size 0, the call only answers the version.
    #[allow(unsafe_code)]
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            VERSION,
        )
    };
    i32::try_from(version).unwrap_or(0)
}

/// Builds the ruleset for `abi`'s features and restricts this process with it.
fn ruleset(
    plan: &SandboxPlan,
    libraries: &[&File],
    abi: ABI,
) -> Result<RulesetStatus, RulesetError> {
    let read = AccessFs::from_read(abi);
    let read_exec = read | AccessFs::Execute;
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))?;
    if abi >= ABI::V4 {
        let net = match plan.connect {
            Connect::Anywhere => BitFlags::from(AccessNet::BindTcp),
            Connect::Nothing | Connect::Ports(_) => AccessNet::BindTcp | AccessNet::ConnectTcp,
        };
        ruleset = ruleset.handle_access(net)?;
    }
    if abi >= ABI::V6 {
        ruleset = ruleset.scope(Scope::AbstractUnixSocket | Scope::Signal)?;
    }
    let mut created = ruleset.create()?;
    for library in libraries {
        created = created.add_rule(PathBeneath::new(
            *library,
            read_exec & AccessFs::from_file(abi),
        ))?;
    }
    for (path, access) in path_rules(plan, abi) {
        created = add_path(created, &path, access, abi)?;
    }
    if let (Connect::Ports(ports), true) = (&plan.connect, abi >= ABI::V4) {
        for port in ports {
            created = created.add_rule(NetPort::new(*port, AccessNet::ConnectTcp))?;
        }
    }
    Ok(created.restrict_self()?.ruleset)
}

/// Every path rule of `plan`: the system's, then what is granted.
fn path_rules(plan: &SandboxPlan, abi: ABI) -> Vec<(String, BitFlags<AccessFs>)> {
    let read = AccessFs::from_read(abi);
    let read_exec = read | AccessFs::Execute;
    let read_write = read | AccessFs::from_write(abi);
    let mut rules: Vec<(String, BitFlags<AccessFs>)> = Vec::new();
    let mut add = |paths: &[&str], access| {
        rules.extend(paths.iter().map(|p| ((*p).to_owned(), access)));
    };
    add(&SYSTEM_LIBRARIES, read_exec);
    add(&ALWAYS_READ, read);
    add(&["/dev/null"], read_write);
    if plan.connect == Connect::Anywhere {
        add(&RESOLVER, read);
    }
    if plan.spawn {
        add(&PROGRAMS, read_exec);
    }
    rules.extend(plan.read.iter().map(|p| (p.display().to_string(), read)));
    rules.extend(
        plan.write
            .iter()
            .map(|p| (p.display().to_string(), read_write)),
    );
    rules
}

/// Adds the rule for `path`: nothing if it does not exist here (no `/lib64`, say), and
/// on a file only what makes sense for a file (not listing it or making files in it).
fn add_path(
    created: landlock::RulesetCreated,
    path: &str,
    access: BitFlags<AccessFs>,
    abi: ABI,
) -> Result<landlock::RulesetCreated, RulesetError> {
    let Ok(metadata) = std::fs::metadata(Path::new(path)) else {
        return Ok(created);
    };
    let access = if metadata.is_dir() {
        access
    } else {
        access & AccessFs::from_file(abi)
    };
    match PathFd::new(path) {
        Ok(fd) => created.add_rule(PathBeneath::new(fd, access)),
        Err(_) => Ok(created),
    }
}
