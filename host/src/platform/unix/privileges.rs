//! Dropping every capability a child of the host holds: those of a host run as root, and
//! those a user namespace hands its first process. A process without capabilities, with
//! `no_new_privs` and `SECBIT_NOROOT` locked, cannot get any back, not even by running a
//! program (root's programs included). With them go the limits that lend a process what
//! `CAP_SYS_NICE` would: realtime scheduling and a raised priority (a host a trading desk
//! runs with `LimitRTPRIO=`, say, must not lend a plugin a realtime thread that starves it),
//! and a realtime policy inherited from the host.

use std::io;

use crate::platform::SetupError;

/// The capability sets of `/proc/self/status`, each of which must end up empty.
const SETS: [&str; 5] = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"];

/// Drops every capability from every set (bounding, ambient, inheritable, permitted,
/// effective) and locks the secure bits that would give them back to a root process;
/// what it did, in words.
///
/// An unprivileged process cannot empty its bounding set (that takes `CAP_SETPCAP`),
/// and needs not: the set only limits what running a program could grant, and
/// `no_new_privs` (which every sandbox sets) grants nothing.
///
/// # Errors
///
/// A set that is not empty afterwards, named.
pub(crate) fn drop_capabilities() -> Result<String, SetupError> {
    #[cfg(target_os = "linux")]
    let bounding_dropped = linux::drop_all();
    #[cfg(not(target_os = "linux"))]
    let bounding_dropped = true;
    let sets: &[&str] = if bounding_dropped {
        &SETS
    } else {
        &SETS_BUT_BOUNDING
    };
    let held = held(sets).map_err(SetupError::os("cannot read /proc/self/status"))?;
    if !held.is_empty() {
        return Err(SetupError::CapabilitiesHeld(held));
    }
    #[cfg(target_os = "linux")]
    linux::drop_priority()?;
    Ok(if bounding_dropped {
        "no capabilities".to_owned()
    } else {
        "no capabilities (an unprivileged bounding set, inert under no_new_privs)".to_owned()
    })
}

/// The sets but the bounding one.
const SETS_BUT_BOUNDING: [&str; 4] = ["CapInh", "CapPrm", "CapEff", "CapAmb"];

/// Which of `sets` are not empty, as `Set=mask`.
fn held(sets: &[&str]) -> io::Result<Vec<String>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    Ok(status
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, mask)| {
            sets.contains(name) && !mask.trim().trim_start_matches('0').is_empty()
        })
        .map(|(name, mask)| format!("{name}={}", mask.trim()))
        .collect())
}

#[cfg(target_os = "linux")]
mod linux {
    use crate::platform::SetupError;

    /// Lowers the realtime-priority and nice limits to nothing (they cannot be raised again
    /// without `CAP_SYS_RESOURCE`), and this thread's policy to the normal one if it
    /// inherited another. Call it while the process has one thread: threads started later
    /// inherit the normal policy.
    pub(super) fn drop_priority() -> Result<(), SetupError> {
        let nothing = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let normal = libc::sched_param { sched_priority: 0 };
        // SAFETY: setrlimit and sched_setscheduler read the structs they are given;
        // sched_getscheduler reads nothing.
        #[allow(unsafe_code)]
        unsafe {
            for (resource, name) in [
                (libc::RLIMIT_RTPRIO, "the realtime-priority limit"),
                (libc::RLIMIT_NICE, "the nice limit"),
            ] {
                if libc::setrlimit(resource, &raw const nothing) != 0 {
                    return Err(SetupError::last_os(name));
                }
            }
            let policy = libc::sched_getscheduler(0);
            let normal_policies = [libc::SCHED_OTHER, libc::SCHED_BATCH, libc::SCHED_IDLE];
            if policy >= 0
                && !normal_policies.contains(&(policy & !SCHED_RESET_ON_FORK))
                && libc::sched_setscheduler(0, libc::SCHED_OTHER, &raw const normal) != 0
            {
                return Err(SetupError::last_os("the normal scheduling policy"));
            }
        }
        Ok(())
    }

    /// The flag `sched_getscheduler` may add to a policy (`<linux/sched.h>`).
    const SCHED_RESET_ON_FORK: libc::c_int = 0x4000_0000;

    /// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets in two 32-bit halves.
    const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

    /// `SECBIT_NOROOT`, `SECBIT_NO_SETUID_FIXUP` and `SECBIT_NO_CAP_AMBIENT_RAISE` set,
    /// `SECBIT_KEEP_CAPS` clear, each locked: root gets no capabilities from running a
    /// program, and none of this can be undone.
    const SECURE_BITS: libc::c_ulong = 0b1110_1111;

    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }

    /// Drops everything; whether the bounding set could be emptied.
    pub(super) fn drop_all() -> bool {
        let mut bounding_dropped = true;
        // SAFETY: prctl with these arguments changes only this process's capabilities;
        // capset reads the header and the two data structs it is given.
        #[allow(unsafe_code)]
        unsafe {
            // The bounding set first (it needs CAP_SETPCAP, which goes last): every
            // capability the kernel knows, until it says there is no such capability.
            for capability in 0..64 {
                if libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 {
                    match std::io::Error::last_os_error().raw_os_error() {
                        Some(libc::EINVAL) => break,
                        _ => bounding_dropped = false,
                    }
                }
            }
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            );
            libc::prctl(libc::PR_SET_SECUREBITS, SECURE_BITS, 0, 0, 0);
            let header = Header {
                version: CAPABILITY_VERSION_3,
                pid: 0,
            };
            let none = [Data {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            }; 2];
            libc::syscall(libc::SYS_capset, &raw const header, none.as_ptr());
        }
        bounding_dropped
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// A thread that inherited a realtime policy (from a host run at one) runs at the
    /// normal one afterwards, and the limits that would give one back are nothing. (The
    /// limits are the test process's from here on; no other test needs them.)
    #[test]
    fn a_realtime_thread_is_put_back_to_the_normal_policy_and_keeps_no_limit_to_return() {
        std::thread::spawn(|| {
            let fifo = libc::sched_param { sched_priority: 1 };
            // SAFETY: sched_setscheduler reads the struct it is given and changes only
            // this thread's policy.
            #[allow(unsafe_code)]
            if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &raw const fifo) } != 0 {
                eprintln!("skipped: this test may not take a realtime policy (no CAP_SYS_NICE)");
                return;
            }
            super::linux::drop_priority().expect("dropped");
            let mut limit = libc::rlimit {
                rlim_cur: 1,
                rlim_max: 1,
            };
            // SAFETY: sched_getscheduler reads nothing; getrlimit writes the struct.
            #[allow(unsafe_code)]
            unsafe {
                assert_eq!(libc::sched_getscheduler(0), libc::SCHED_OTHER);
                for resource in [libc::RLIMIT_RTPRIO, libc::RLIMIT_NICE] {
                    assert_eq!(libc::getrlimit(resource, &raw mut limit), 0);
                    assert_eq!((limit.rlim_cur, limit.rlim_max), (0, 0));
                }
            }
        })
        .join()
        .expect("the thread");
    }
}
