//! A platform in OCI's words (`os/architecture`, as Go names them), and which one a library
//! file was built for, read from its header.

use std::{fmt, str::FromStr};

/// An OCI platform: `linux/amd64`, `windows/amd64`, `darwin/arm64`, ...
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    /// `linux`, `windows`, `darwin`, ...
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
}

impl Platform {
    /// The platform this program runs on.
    pub fn host() -> Self {
        Self {
            os: oci_spec::image::Os::default().to_string(),
            architecture: oci_spec::image::Arch::default().to_string(),
        }
    }

    /// The platform a library was built for, from its ELF, PE or Mach-O header; `None` for
    /// anything else.
    pub fn of_library(bytes: &[u8]) -> Option<Self> {
        let (os, architecture) = match bytes {
            [0x7f, b'E', b'L', b'F', ..] => ("linux", elf_machine(bytes)?),
            [b'M', b'Z', ..] => ("windows", pe_machine(bytes)?),
            [0xcf, 0xfa, 0xed, 0xfe, ..] => ("darwin", macho_cpu(bytes)?),
            _ => return None,
        };
        Some(Self {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
        })
    }
}

fn u16_at(bytes: &[u8], at: usize, little: bool) -> Option<u16> {
    let pair: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
    Some(if little {
        u16::from_le_bytes(pair)
    } else {
        u16::from_be_bytes(pair)
    })
}

fn u32_le_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// ELF's `e_machine` (offset 18, in the byte order `EI_DATA` says).
fn elf_machine(bytes: &[u8]) -> Option<&'static str> {
    let little = *bytes.get(5)? == 1;
    Some(match u16_at(bytes, 18, little)? {
        0x3e => "amd64",
        0xb7 => "arm64",
        0x03 => "386",
        0x28 => "arm",
        0xf3 => "riscv64",
        0x15 => "ppc64le",
        0x16 => "s390x",
        _ => return None,
    })
}

/// PE's machine field, after the `PE\0\0` that `e_lfanew` (offset 0x3c) points at.
fn pe_machine(bytes: &[u8]) -> Option<&'static str> {
    let header = usize::try_from(u32_le_at(bytes, 0x3c)?).ok()?;
    if bytes.get(header..header + 4)? != b"PE\0\0" {
        return None;
    }
    Some(match u16_at(bytes, header + 4, true)? {
        0x8664 => "amd64",
        0xaa64 => "arm64",
        0x014c => "386",
        _ => return None,
    })
}

/// Mach-O's CPU type (64-bit, little-endian).
fn macho_cpu(bytes: &[u8]) -> Option<&'static str> {
    Some(match u32_le_at(bytes, 4)? {
        0x0100_0007 => "amd64",
        0x0100_000c => "arm64",
        _ => return None,
    })
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)
    }
}

/// Why a platform could not be read.
#[derive(Debug, thiserror::Error)]
#[error("platform {0:?} is not OS/ARCHITECTURE (e.g. linux/amd64)")]
pub struct BadPlatform(String);

impl FromStr for Platform {
    type Err = BadPlatform;

    fn from_str(text: &str) -> Result<Self, BadPlatform> {
        match text.split_once('/') {
            Some((os, architecture))
                if !os.is_empty() && !architecture.is_empty() && !architecture.contains('/') =>
            {
                Ok(Self {
                    os: os.to_owned(),
                    architecture: architecture.to_owned(),
                })
            }
            _ => Err(BadPlatform(text.to_owned())),
        }
    }
}

/// What differs by operating system: files only their owner may read.
#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::owner_only;

/// Files only their owner may read: on Windows there is no mode to set; a new file gets
/// its folder's access list.
#[cfg(not(unix))]
pub(crate) fn owner_only(options: &mut std::fs::OpenOptions) {
    let _ = options;
}

#[cfg(test)]
mod tests {
    use super::Platform;

    #[test]
    fn this_programs_own_executable_is_of_the_host_platform() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(Platform::of_library(&exe), Some(Platform::host()));
    }

    #[test]
    fn a_platform_reads_as_os_slash_architecture_and_nothing_else() {
        let platform: Platform = "linux/arm64".parse().unwrap();
        assert_eq!(platform.to_string(), "linux/arm64");
        for bad in ["linux", "/amd64", "linux/", "linux/amd64/v8", ""] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
        assert_eq!(Platform::of_library(b"#!/bin/sh\n"), None);
    }
}
