//! What of a library file the dynamic loader maps: its ELF headers and the file ranges of
//! its segments. The private copy the host loads holds these alone (the rest, symbol
//! tables and debug information, is never mapped), which keeps a debug build's copy to a
//! fraction of its file.

use std::fs::File;

/// Ranges are widened to this alignment, the largest page size of the platforms served
/// (64 KiB on some arm64 kernels): every page the loader maps is then the file's own.
const ALIGN: u64 = 64 << 10;

/// At most this many program headers are read (a library has about ten).
const MOST_HEADERS: u64 = 1024;

/// The size of one 64-bit program header (the only size the dynamic loader takes).
const HEADER_SIZE: u64 = 56;

/// The byte ranges (start, end) of the open `file` that the dynamic loader reads or maps,
/// sorted and merged, widened to [`ALIGN`]; `None` when the file is not a 64-bit
/// little-endian ELF file whose program headers can be read (then the whole file is
/// copied).
pub(crate) fn mapped_ranges(file: &File) -> Option<Vec<(u64, u64)>> {
    let read = |at: u64, len: usize| {
        let mut bytes = vec![0; len];
        let mut filled = 0;
        while filled < len {
            match crate::platform::read_at(file, &mut bytes[filled..], at + filled as u64) {
                Ok(0) | Err(_) => return None,
                Ok(n) => filled += n,
            }
        }
        Some(bytes)
    };
    ranges_of(&read(0, 64)?, read)
}

/// [`mapped_ranges`] of a file whose bytes are `bytes` (for the fuzz targets).
pub(crate) fn mapped_ranges_in(bytes: &[u8]) -> Option<Vec<(u64, u64)>> {
    let read = |at: u64, len: usize| {
        let start = usize::try_from(at).ok()?;
        bytes
            .get(start..start.checked_add(len)?)
            .map(<[u8]>::to_vec)
    };
    ranges_of(&read(0, 64)?, read)
}

/// [`mapped_ranges`] from the ELF header `header` (64 bytes), reading the program headers
/// with `read(offset, len)`.
fn ranges_of(
    header: &[u8],
    read: impl FnOnce(u64, usize) -> Option<Vec<u8>>,
) -> Option<Vec<(u64, u64)>> {
    // ELFCLASS64, ELFDATA2LSB.
    if !header.starts_with(b"\x7fELF\x02\x01") {
        return None;
    }
    let (phoff, entry, count) = (
        u64_at(header, 0x20)?,
        u16_at(header, 0x36)?,
        u16_at(header, 0x38)?,
    );
    if entry != HEADER_SIZE || count == 0 || count > MOST_HEADERS {
        return None;
    }
    let table_len = entry * count;
    let table = read(phoff, usize::try_from(table_len).ok()?)?;
    let mut ranges = vec![(0, phoff.checked_add(table_len)?)];
    for index in 0..count {
        let at = usize::try_from(index * entry).ok()?;
        let (offset, size) = (u64_at(&table, at + 8)?, u64_at(&table, at + 0x20)?);
        ranges.push((offset, offset.checked_add(size)?));
    }
    Some(merged(ranges))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(u16::from_le_bytes(
        bytes.get(at..at + 2)?.try_into().ok()?,
    )))
}

/// `ranges` widened to [`ALIGN`], sorted, with overlapping and touching ones joined.
fn merged(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    for (start, end) in &mut ranges {
        *start -= *start % ALIGN;
        *end = end.saturating_add(ALIGN - 1) / ALIGN * ALIGN;
    }
    // Empty: a segment with nothing in the file, or one at the very end of the range of
    // offsets (beyond any file).
    ranges.retain(|(start, end)| start < end);
    ranges.sort_unstable();
    let mut joined: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match joined.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => joined.push((start, end)),
        }
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::{merged, ranges_of, ALIGN};

    /// An ELF header with `count` program headers of 56 bytes at offset 64.
    fn header(count: u16) -> Vec<u8> {
        let mut header = vec![0; 64];
        header[..6].copy_from_slice(b"\x7fELF\x02\x01");
        header[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        header[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        header[0x38..0x3a].copy_from_slice(&count.to_le_bytes());
        header
    }

    fn program_headers(segments: &[(u64, u64)]) -> Vec<u8> {
        let mut table = vec![0; 56 * segments.len()];
        for (index, (offset, size)) in segments.iter().enumerate() {
            let at = index * 56;
            table[at + 8..at + 16].copy_from_slice(&offset.to_le_bytes());
            table[at + 0x20..at + 0x28].copy_from_slice(&size.to_le_bytes());
        }
        table
    }

    #[test]
    fn segments_are_widened_and_joined_and_the_rest_left_out() {
        let segments = [(0, 0x4_2c84), (0x4_2c84, 0x6_0cac), (0x80_0000, 0x10)];
        let table = program_headers(&segments);
        let ranges = ranges_of(&header(3), |at, len| {
            assert_eq!((at, len), (64, table.len()));
            Some(table.clone())
        });
        assert_eq!(
            ranges,
            Some(vec![(0, 0xb_0000), (0x80_0000, 0x80_0000 + ALIGN)])
        );
    }

    #[test]
    fn what_is_not_a_readable_64_bit_elf_file_is_copied_whole() {
        let unread = |_: u64, _: usize| None;
        assert_eq!(ranges_of(b"\x7fELF\x01\x01", unread), None, "32-bit");
        assert_eq!(ranges_of(&header(2), unread), None, "headers cut short");
        assert_eq!(ranges_of(&header(0), unread), None, "no program headers");
        let mut wide = header(1);
        wide[0x36..0x38].copy_from_slice(&64u16.to_le_bytes());
        assert_eq!(
            ranges_of(&wide, unread),
            None,
            "program headers of another size"
        );
        let mut huge = header(1);
        huge[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        let table = program_headers(&[(0, 1)]);
        assert_eq!(
            ranges_of(&huge, |_, _| Some(table.clone())),
            None,
            "overflow"
        );
        assert_eq!(merged(vec![(5, 6), (0, 1)]), vec![(0, ALIGN)]);
        assert_eq!(
            merged(vec![(ALIGN, ALIGN), (u64::MAX - 5, u64::MAX)]),
            vec![]
        );
    }
}
