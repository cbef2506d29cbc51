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
            detail: crate::platform::odd_file_kind(metadata),
        });
    }
    if metadata.len() == 0 {
        return Err(LoadError::Empty {
            path: path.to_owned(),
        });
    }
    let mut header = [0u8; HEADER_BYTES];
    let filled = read_header(opened, &mut header).map_err(|err| LoadError::Io {
        path: path.to_owned(),
        reason: err.to_string(),
    })?;
    check_header(path, &header[..filled], metadata.len())
}

/// How much of a file the checks read: the ELF header, or a PE file's headers and
/// section table (a DLL's section table ends well within its first page).
const HEADER_BYTES: usize = 4096;

/// Reads the first bytes of the file.
fn read_header(opened: &OpenedFile, header: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < header.len() {
        match crate::platform::read_at(opened.file(), &mut header[filled..], filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
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
    if header.starts_with(b"MZ") {
        return check_pe(path, header, file_len);
    }
    if matches!(
        header.get(..4),
        Some(
            [0xfe, 0xed, 0xfa, 0xce | 0xcf]
                | [0xce | 0xcf, 0xfa, 0xed, 0xfe]
                | [0xca, 0xfe, 0xba, 0xbe]
        )
    ) {
        // Mach-O: the host checks no further on macOS, and it is foreign anywhere else.
        return if cfg!(target_os = "macos") {
            Ok(())
        } else {
            Err(wrong_platform(path, "a Mach-O file".into()))
        };
    }
    if header
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        return Err(not_a_library("it is a text file".into()));
    }
    Err(not_a_library("unknown file format".into()))
}

fn wrong_platform(path: &Path, found: String) -> LoadError {
    LoadError::WrongPlatform {
        path: path.to_owned(),
        found,
        expected: expected_platform(),
    }
}

/// A header cut off before the fields the check needs.
fn header_cut_short(path: &Path, what: &str) -> LoadError {
    LoadError::Open {
        path: path.to_owned(),
        reason: format!("the {what} header is cut short"),
    }
}

/// A little-endian number of `len` bytes at `at`, if the header holds it.
fn le(header: &[u8], at: usize, len: usize) -> Option<u64> {
    let bytes = header.get(at..at.checked_add(len)?)?;
    Some(
        bytes
            .iter()
            .rev()
            .fold(0, |acc, b| (acc << 8) | u64::from(*b)),
    )
}

/// The fields of a PE file's headers this check reads.
struct PeHeader {
    machine: u16,
    is_dll: bool,
    /// 32 (PE32) or 64 (PE32+).
    bits: usize,
    /// Where the last section's raw data ends, if the section table was within the bytes
    /// read.
    data_end: Option<u64>,
}

impl PeHeader {
    /// Reads the headers, or None when they are cut short.
    fn parse(header: &[u8]) -> Option<Self> {
        let pe = usize::try_from(le(header, 0x3c, 4)?).ok()?;
        if header.get(pe..pe.checked_add(4)?)? != b"PE\0\0" {
            return None;
        }
        let coff = pe + 4;
        let machine = le(header, coff, 2)? as u16;
        let sections = le(header, coff + 2, 2)? as usize;
        let optional_len = le(header, coff + 16, 2)? as usize;
        let characteristics = le(header, coff + 18, 2)? as u16;
        let optional = coff + 20;
        let bits = match le(header, optional, 2)? {
            0x10b => 32,
            0x20b => 64,
            _ => 0,
        };
        let table = optional + optional_len;
        let data_end = (0..sections)
            .map(|i| {
                let entry = table + i * 40;
                Some(le(header, entry + 16, 4)? + le(header, entry + 20, 4)?)
            })
            .try_fold(0u64, |end, section| Some(end.max(section?)));
        Some(Self {
            machine,
            is_dll: characteristics & 0x2000 != 0,
            bits,
            data_end,
        })
    }
}

/// The architecture a PE machine number names.
fn pe_machine_name(machine: u16) -> String {
    match machine {
        0x14c => "x86".into(),
        0x8664 => "x86_64".into(),
        0xaa64 => "aarch64".into(),
        0x1c4 => "arm".into(),
        other => format!("#{other:#x}"),
    }
}

fn check_pe(path: &Path, header: &[u8], file_len: u64) -> Result<(), LoadError> {
    let Some(pe) = PeHeader::parse(header) else {
        return if cfg!(windows) {
            Err(header_cut_short(path, "PE"))
        } else {
            Err(wrong_platform(path, "a Windows PE file".into()))
        };
    };
    let found = format!(
        "{}-bit PE {}, machine {}",
        pe.bits,
        if pe.is_dll { "DLL" } else { "executable" },
        pe_machine_name(pe.machine)
    );
    if !cfg!(windows)
        || pe.bits != usize::BITS as usize
        || pe_machine_name(pe.machine) != std::env::consts::ARCH
    {
        return Err(wrong_platform(path, found));
    }
    if let Some(end) = pe.data_end.filter(|&end| end > file_len) {
        return Err(LoadError::Truncated {
            path: path.to_owned(),
            expected: end,
            actual: file_len,
        });
    }
    if !pe.is_dll {
        return Err(LoadError::NotALibrary {
            path: path.to_owned(),
            detail: "a Windows executable, not a DLL".into(),
        });
    }
    Ok(())
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
    if cfg!(windows) || cfg!(target_os = "macos") {
        return Err(wrong_platform(
            path,
            "Linux or another Unix (an ELF file)".into(),
        ));
    }
    if header.len() < 64 {
        return Err(header_cut_short(path, "ELF"));
    }
    let elf = ElfHeader::parse(header);
    let expected_machine = elf_machine(std::env::consts::ARCH);
    if elf.class_bits != usize::BITS as usize
        || expected_machine.is_some_and(|m| m != elf.machine)
        || elf.little_endian != cfg!(target_endian = "little")
    {
        return Err(wrong_platform(
            path,
            format!(
                "{}-bit ELF, machine {}",
                elf.class_bits,
                machine_name(elf.machine)
            ),
        ));
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

#[cfg(test)]
mod pe_tests {
    use super::*;

    /// A PE file's headers: `bits` 32 or 64, one section whose raw data ends at `data_end`.
    fn pe(bits: usize, machine: u16, dll: bool, data_end: u32) -> Vec<u8> {
        let mut header = vec![0u8; 1024];
        header[..2].copy_from_slice(b"MZ");
        header[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        header[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        header[coff..coff + 2].copy_from_slice(&machine.to_le_bytes());
        header[coff + 2..coff + 4].copy_from_slice(&1u16.to_le_bytes());
        let optional_len: u16 = if bits == 64 { 240 } else { 224 };
        header[coff + 16..coff + 18].copy_from_slice(&optional_len.to_le_bytes());
        let characteristics: u16 = if dll { 0x2022 } else { 0x0022 };
        header[coff + 18..coff + 20].copy_from_slice(&characteristics.to_le_bytes());
        let magic: u16 = if bits == 64 { 0x20b } else { 0x10b };
        header[coff + 20..coff + 22].copy_from_slice(&magic.to_le_bytes());
        let section = coff + 20 + usize::from(optional_len);
        header[section + 16..section + 20].copy_from_slice(&(data_end - 0x400).to_le_bytes());
        header[section + 20..section + 24].copy_from_slice(&0x400u32.to_le_bytes());
        header
    }

    const X86_64: u16 = 0x8664;

    #[test]
    fn a_pe_header_names_its_bits_kind_and_machine() {
        let parsed = PeHeader::parse(&pe(32, 0x14c, true, 0x2000)).unwrap();
        assert_eq!((parsed.bits, parsed.is_dll), (32, true));
        assert_eq!(pe_machine_name(parsed.machine), "x86");
        assert_eq!(parsed.data_end, Some(0x2000));
        assert!(PeHeader::parse(&pe(64, X86_64, true, 0x2000)[..0x90]).is_none());
    }

    #[cfg(not(windows))]
    #[test]
    fn a_windows_dll_is_for_another_platform() {
        let err =
            check_header(Path::new("x.so"), &pe(64, X86_64, true, 0x2000), 0x2000).unwrap_err();
        assert!(matches!(err, LoadError::WrongPlatform { .. }), "{err}");
        assert!(
            err.to_string().contains("64-bit PE DLL, machine x86_64"),
            "{err}"
        );
    }

    #[cfg(all(windows, target_arch = "x86_64"))]
    #[test]
    fn on_windows_a_64_bit_dll_passes_and_every_other_file_is_named() {
        let path = Path::new("x.dll");
        check_header(path, &pe(64, X86_64, true, 0x2000), 0x2000).unwrap();
        let bits32 = check_header(path, &pe(32, 0x14c, true, 0x2000), 0x2000).unwrap_err();
        assert!(bits32.to_string().contains("32-bit PE DLL"), "{bits32}");
        let exe = check_header(path, &pe(64, X86_64, false, 0x2000), 0x2000).unwrap_err();
        assert!(matches!(exe, LoadError::NotALibrary { .. }), "{exe}");
        let cut = check_header(path, &pe(64, X86_64, true, 0x2000), 0x1000).unwrap_err();
        assert_eq!(cut.kind(), "truncated", "{cut}");
        let short = check_header(path, &pe(64, X86_64, true, 0x2000)[..0x90], 0x90).unwrap_err();
        assert!(
            short.to_string().contains("PE header is cut short"),
            "{short}"
        );
        let elf = check_header(path, b"\x7fELF\x02\x01\x01", 4096).unwrap_err();
        assert!(matches!(elf, LoadError::WrongPlatform { .. }), "{elf}");
        assert!(elf.to_string().contains("ELF"), "{elf}");
        let text = check_header(path, b"not a library\n", 14).unwrap_err();
        assert!(text.to_string().contains("text file"), "{text}");
    }
}
