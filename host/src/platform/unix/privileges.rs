//! Dropping every capability a child of the host holds: those of a host run as root, and
//! those a user namespace hands its first process. A process without capabilities, with
//! `no_new_privs` and `SECBIT_NOROOT` locked, cannot get any back, not even by running a
//! program (root's programs included).

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
