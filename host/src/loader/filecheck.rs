//! Cheap checks on a plugin file's bytes before anything maps it.
//!
//! The dynamic loader's own messages for a text file or a library of another
//! architecture are cryptic, and some malformed files can crash it. Looking at the header
//! first gives every common mistake a plain message.

use std::path::Path;

use super::{file::OpenedFile, LoadError};

/// Checks that the open file looks like a shared library for this platform, reading its
/// header through the descriptor.
pub(crate) fn check(opened: &OpenedFile) -> Result<(), LoadError> {
    let path = opened.path();
    let metadata = opened.metadata();
    if !metadata.is_file() {
        return Err(LoadError::NotALibrary {
            path: path.to_owned(),
            detail: "not a regular file".into(),
        });
    }
    if metadata.len() == 0 {
        return Err(LoadError::Empty {
            path: path.to_owned(),
        });
    }
    let mut header = [0u8; 64];
    let filled = read_header(opened, &mut header).map_err(|err| LoadError::Io {
        path: path.to_owned(),
        reason: err.to_string(),
    })?;
    check_header(path, &header[..filled], metadata.len())
}

/// Reads the first bytes of the file (without moving its offset).
fn read_header(opened: &OpenedFile, header: &mut [u8]) -> std::io::Result<usize> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        let mut filled = 0;
        while filled < header.len() {
            match opened
                .file()
                .read_at(&mut header[filled..], filled as u64)?
            {
                0 => break,
                n => filled += n,
            }
        }
        Ok(filled)
    }
    #[cfg(not(unix))]
    {
        use std::io::Read;
        let mut file = opened.file();
        file.read(header)
    }
}

/// Checks a header read from a file of `file_len` bytes. Public to the crate for the
/// fuzz targets.
pub(crate) fn check_header(path: &Path, header: &[u8], file_len: u64) -> Result<(), LoadError> {
    let not_a_library = |detail: String| LoadError::NotALibrary {
        path: path.to_owned(),
        detail,
    };
    if header.starts_with(b"\x7fELF") {
        return check_elf(path, header, file_len);
    }
    let kind = if header.starts_with(b"MZ") {
        "a Windows PE file"
    } else if matches!(
        header.get(..4),
        Some(
            [0xfe, 0xed, 0xfa, 0xce | 0xcf]
                | [0xce | 0xcf, 0xfa, 0xed, 0xfe]
                | [0xca, 0xfe, 0xba, 0xbe]
        )
    ) {
        "a Mach-O file"
    } else if header
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        return Err(not_a_library("it is a text file".into()));
    } else {
        return Err(not_a_library("unknown file format".into()));
    };
    if cfg!(target_os = "linux") {
        Err(LoadError::WrongPlatform {
            path: path.to_owned(),
            found: kind.into(),
            expected: expected_platform(),
        })
    } else {
        Ok(())
    }
}

/// The fields of an ELF header this check reads.
struct ElfHeader {
    class_bits: usize,
    little_endian: bool,
    elf_type: u16,
    machine: u16,
    /// Where the section header table ends: a linked library's last bytes.
    section_table_end: u64,
}

impl ElfHeader {
    /// Reads the fields from a whole (64-byte) header.
    fn parse(header: &[u8]) -> Self {
        let class_bits = match header[4] {
            1 => 32,
            2 => 64,
            _ => 0,
        };
        let little_endian = header[5] == 1;
        let number = |at: usize, len: usize| {
            let bytes = &header[at..at + len];
            let fold = |acc: u64, b: &u8| (acc << 8) | u64::from(*b);
            if little_endian {
                bytes.iter().rev().fold(0, fold)
            } else {
                bytes.iter().fold(0, fold)
            }
        };
        let (table, entry_size, entries) = if class_bits == 64 {
            (number(0x28, 8), number(0x3a, 2), number(0x3c, 2))
        } else {
            (number(0x20, 4), number(0x2e, 2), number(0x30, 2))
        };
        Self {
            class_bits,
            little_endian,
            elf_type: number(16, 2) as u16,
            machine: number(18, 2) as u16,
            section_table_end: table.saturating_add(entry_size * entries),
        }
    }
}

fn check_elf(path: &Path, header: &[u8], file_len: u64) -> Result<(), LoadError> {
    if !cfg!(target_os = "linux") {
        return Err(LoadError::WrongPlatform {
            path: path.to_owned(),
            found: "an ELF file".into(),
            expected: expected_platform(),
        });
    }
    if header.len() < 64 {
        return Err(LoadError::Open {
            path: path.to_owned(),
            reason: "the ELF header is cut short".into(),
        });
    }
    let elf = ElfHeader::parse(header);
    let expected_machine = elf_machine(std::env::consts::ARCH);
    if elf.class_bits != usize::BITS as usize
        || expected_machine.is_some_and(|m| m != elf.machine)
        || elf.little_endian != cfg!(target_endian = "little")
    {
        return Err(LoadError::WrongPlatform {
            path: path.to_owned(),
            found: format!(
                "{}-bit ELF, machine {}",
                elf.class_bits,
                machine_name(elf.machine)
            ),
            expected: expected_platform(),
        });
    }
    // The section header table sits at the end of a linked library, so a file cut short
    // anywhere loses it; the dynamic loader itself would only notice if a loaded segment
    // were cut.
    if elf.section_table_end > file_len {
        return Err(LoadError::Truncated {
            path: path.to_owned(),
            expected: elf.section_table_end,
            actual: file_len,
        });
    }
    if elf.elf_type != 3 {
        return Err(LoadError::NotALibrary {
            path: path.to_owned(),
            detail: "an ELF executable or object file, not a shared library".into(),
        });
    }
    Ok(())
}

fn expected_platform() -> String {
    format!(
        "{}-bit {} {}",
        usize::BITS,
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

fn elf_machine(arch: &str) -> Option<u16> {
    Some(match arch {
        "x86" => 3,
        "arm" => 40,
        "x86_64" => 62,
        "aarch64" => 183,
        "riscv64" => 243,
        "powerpc64" => 21,
        "s390x" => 22,
        _ => return None,
    })
}

fn machine_name(machine: u16) -> String {
    [
        "x86",
        "arm",
        "x86_64",
        "aarch64",
        "riscv64",
        "powerpc64",
        "s390x",
    ]
    .into_iter()
    .find(|arch| elf_machine(arch) == Some(machine))
    .map_or_else(|| format!("#{machine}"), str::to_owned)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    const LEN: u64 = 64;

    fn elf(class: u8, machine: u16, elf_type: u16) -> Vec<u8> {
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = class;
        header[5] = 1;
        header[16..18].copy_from_slice(&elf_type.to_le_bytes());
        header[18..20].copy_from_slice(&machine.to_le_bytes());
        header
    }

    #[test]
    fn a_library_for_another_architecture_names_both_platforms() {
        let other = if cfg!(target_arch = "aarch64") {
            62
        } else {
            183
        };
        let err = check_header(Path::new("x.so"), &elf(2, other, 3), LEN).unwrap_err();
        assert!(matches!(err, LoadError::WrongPlatform { .. }), "{err}");
        assert!(err.to_string().contains(std::env::consts::ARCH), "{err}");
    }

    #[test]
    fn an_executable_is_not_a_library() {
        let machine = elf_machine(std::env::consts::ARCH).unwrap();
        let err = check_header(Path::new("x.so"), &elf(2, machine, 2), LEN).unwrap_err();
        assert!(matches!(err, LoadError::NotALibrary { .. }), "{err}");
    }

    #[test]
    fn a_shared_library_for_this_machine_passes() {
        let machine = elf_machine(std::env::consts::ARCH).unwrap();
        check_header(Path::new("x.so"), &elf(2, machine, 3), LEN).unwrap();
    }

    #[test]
    fn a_library_shorter_than_its_section_table_is_truncated() {
        let machine = elf_machine(std::env::consts::ARCH).unwrap();
        let mut header = elf(2, machine, 3);
        header[0x28..0x30].copy_from_slice(&10_000u64.to_le_bytes());
        header[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        header[0x3c..0x3e].copy_from_slice(&30u16.to_le_bytes());
        let err = check_header(Path::new("x.so"), &header, 5_000).unwrap_err();
        assert_eq!(err.kind(), "truncated");
        assert!(err.to_string().contains("11920"), "{err}");
    }

    #[test]
    fn text_and_windows_files_are_told_apart() {
        let text =
            check_header(Path::new("x.so"), b"hello, I am not a library\n", LEN).unwrap_err();
        assert!(text.to_string().contains("text file"), "{text}");
        let pe = check_header(Path::new("x.so"), b"MZ\x90\x00\x03", LEN).unwrap_err();
        assert!(matches!(pe, LoadError::WrongPlatform { .. }), "{pe}");
    }
}
