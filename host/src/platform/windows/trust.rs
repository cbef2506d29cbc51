//! Who may change a plugin file on Windows: the file's discretionary access control list.
//! Write, delete, or a change of permissions or owner, granted to anyone but the file's
//! owner, Administrators, SYSTEM and TrustedInstaller, is refused.

use std::{ffi::OsStr, os::windows::ffi::OsStrExt, path::Path};

use crate::platform::NotOwnersAlone;

use windows_sys::Win32::{
    Foundation::{LocalFree, ERROR_SUCCESS},
    Security::{
        Authorization::{ConvertSidToStringSidW, GetNamedSecurityInfoW, SE_FILE_OBJECT},
        EqualSid, GetAce, IsWellKnownSid, WinBuiltinAdministratorsSid, WinCreatorOwnerSid,
        WinLocalSystemSid, ACCESS_ALLOWED_ACE, ACL, DACL_SECURITY_INFORMATION, INHERIT_ONLY_ACE,
        OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID,
    },
};

/// Access rights that let their holder change what the file runs: write or append data
/// (add files or folders, for a directory), delete a directory's children, delete, change
/// the permissions or the owner, and the generic write and all.
const WRITE_RIGHTS: u32 =
    0x0002 | 0x0004 | 0x0040 | 0x0001_0000 | 0x0004_0000 | 0x0008_0000 | 0x4000_0000 | 0x1000_0000;

/// `ACCESS_ALLOWED_ACE_TYPE` and `ACCESS_ALLOWED_CALLBACK_ACE_TYPE`: the two that grant
/// with the same layout. Denying entries only take rights away.
const ALLOWING: [u8; 2] = [0, 9];

/// The service that owns the system's files.
const TRUSTED_INSTALLER: &str = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464";

/// Refuses `path` if its DACL grants a right that changes it to anyone but its owner,
/// Administrators, SYSTEM or TrustedInstaller (or has no DACL at all: everyone may).
pub(crate) fn check_owner_only(
    path: &Path,
    what: &'static str,
    _metadata: &std::fs::Metadata,
) -> Result<(), NotOwnersAlone> {
    let descriptor = Descriptor::of(path).map_err(|error| NotOwnersAlone::Unreadable {
        what,
        path: path.to_owned(),
        error,
    })?;
    let Some((writer, sid)) = descriptor.foreign_writer() else {
        return Ok(());
    };
    let remove = match sid {
        Some(sid) => format!(
            "`icacls \"{0}\" /inheritance:d` then `icacls \"{0}\" /remove:g *{sid}`",
            path.display()
        ),
        None => "the file's Properties, Security".to_owned(),
    };
    Err(NotOwnersAlone::Writer {
        what,
        path: path.to_owned(),
        writer,
        remove,
    })
}

/// A file the host writes (the trust file) keeps the access control list it inherits from
/// its folder, which `check_owner_only` judges for the plugins as well.
pub(crate) fn owner_writes_only(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// A file's security descriptor: its owner and DACL, freed on drop.
struct Descriptor {
    owner: PSID,
    dacl: *mut ACL,
    memory: PSECURITY_DESCRIPTOR,
}

impl Descriptor {
    fn of(path: &Path) -> std::io::Result<Self> {
        let wide: Vec<u16> = OsStr::new(path).encode_wide().chain([0]).collect();
        let mut descriptor = Self {
            owner: std::ptr::null_mut(),
            dacl: std::ptr::null_mut(),
            memory: std::ptr::null_mut(),
        };
        // SAFETY: `wide` is NUL-terminated; the out pointers are written by the call and
        // point into `memory`, which `Drop` frees.
        #[allow(unsafe_code)]
        let status = unsafe {
            GetNamedSecurityInfoW(
                wide.as_ptr(),
                SE_FILE_OBJECT,
                OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
                &raw mut descriptor.owner,
                std::ptr::null_mut(),
                &raw mut descriptor.dacl,
                std::ptr::null_mut(),
                &raw mut descriptor.memory,
            )
        };
        if status != ERROR_SUCCESS {
            return Err(std::io::Error::from_raw_os_error(status as i32));
        }
        Ok(descriptor)
    }

    /// Someone other than the trusted ones who may change the file, in words, and their
    /// SID.
    fn foreign_writer(&self) -> Option<(String, Option<String>)> {
        if self.dacl.is_null() {
            return Some(("everyone (it has no access control list)".into(), None));
        }
        // SAFETY: `dacl` points into the descriptor this value owns; GetAce hands out
        // pointers into it, read while it lives.
        #[allow(unsafe_code)]
        unsafe {
            for index in 0..u32::from((*self.dacl).AceCount) {
                let mut ace: *mut std::ffi::c_void = std::ptr::null_mut();
                if GetAce(self.dacl, index, &raw mut ace) == 0 {
                    continue;
                }
                let ace = ace.cast::<ACCESS_ALLOWED_ACE>();
                let header = (*ace).Header;
                if !ALLOWING.contains(&header.AceType)
                    || u32::from(header.AceFlags) & INHERIT_ONLY_ACE != 0
                    || (*ace).Mask & WRITE_RIGHTS == 0
                {
                    continue;
                }
                let sid: PSID = (&raw mut (*ace).SidStart).cast();
                if !self.trusted(sid) {
                    let string = sid_string(sid);
                    return Some((describe(string.as_deref()), string));
                }
            }
        }
        None
    }

    /// Whether `sid` is the owner, Administrators, SYSTEM or TrustedInstaller.
    fn trusted(&self, sid: PSID) -> bool {
        // SAFETY: both SIDs point into live descriptors.
        #[allow(unsafe_code)]
        let well_known = unsafe {
            (!self.owner.is_null() && EqualSid(sid, self.owner) != 0)
                || IsWellKnownSid(sid, WinBuiltinAdministratorsSid) != 0
                || IsWellKnownSid(sid, WinLocalSystemSid) != 0
                || IsWellKnownSid(sid, WinCreatorOwnerSid) != 0
        };
        well_known || sid_string(sid).as_deref() == Some(TRUSTED_INSTALLER)
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        // SAFETY: `memory` was allocated by GetNamedSecurityInfoW for the caller to free.
        #[allow(unsafe_code)]
        unsafe {
            LocalFree(self.memory);
        }
    }
}

/// A SID in its string form, `S-1-...`.
fn sid_string(sid: PSID) -> Option<String> {
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: `sid` is valid; on success `text` is a NUL-terminated string allocated
    // for us, freed here.
    #[allow(unsafe_code)]
    unsafe {
        if ConvertSidToStringSidW(sid, &raw mut text) == 0 {
            return None;
        }
        let len = (0..).take_while(|&i| *text.add(i) != 0).count();
        let string = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
        LocalFree(text.cast());
        Some(string)
    }
}

/// A SID as an operator knows it: the common groups by name, others by string.
fn describe(sid: Option<&str>) -> String {
    let Some(string) = sid else {
        return "an unreadable SID".into();
    };
    let name = match string {
        "S-1-1-0" => "Everyone",
        "S-1-5-11" => "Authenticated Users",
        "S-1-5-32-545" => "Users",
        "S-1-5-4" => "Interactive",
        _ => return format!("SID {string}"),
    };
    format!("{name} ({string})")
}
