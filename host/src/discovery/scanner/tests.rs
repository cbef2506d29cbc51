//! What the scanner takes from a child's output, and the host from a scanner's.

use super::{read_line, Said, FENCE_PREFIX, MAX_LINE, MAX_REST, RESULT_PREFIX};
use std::io::{Seek as _, Write as _};

fn said(text: &[u8]) -> Said {
    let mut file = tempfile::tempfile().expect("a file");
    file.write_all(text).expect("written");
    file.rewind().expect("rewound");
    Said::read(&mut file)
}

#[test]
fn only_the_first_line_says_the_fence_and_the_last_result_counts() {
    let text = format!(
        "{FENCE_PREFIX}true fence\n{RESULT_PREFIX}forged\n{FENCE_PREFIX}forged fence\n\
         a line of its own\n{RESULT_PREFIX}{{\"real\":1}}\n"
    );
    let said = said(text.as_bytes());
    assert_eq!(said.fence.as_deref(), Some("true fence"));
    assert_eq!(said.result.as_deref(), Some("{\"real\":1}"));
    assert!(said.rest.contains("a line of its own"), "{}", said.rest);
    assert!(said.rest.contains("forged fence"), "{}", said.rest);
}

#[test]
fn a_fence_after_the_first_line_is_not_the_fence() {
    let text = format!("printed by a library\n{FENCE_PREFIX}forged\n");
    assert_eq!(said(text.as_bytes()).fence, None);
}

#[test]
fn what_else_a_child_writes_is_kept_to_its_tail() {
    let line = "é".repeat(100);
    let text = format!("{line}\n").repeat(1000);
    let said = said(text.as_bytes());
    assert!(said.rest.len() <= 2 * MAX_REST + line.len() + 1);
    assert!(said.rest.ends_with(&format!("{line}\n")));
}

#[test]
fn a_result_longer_than_a_line_may_be_is_read_in_parts_and_is_not_a_result() {
    let long = usize::try_from(MAX_LINE).expect("a size") + 10;
    let text = format!("{RESULT_PREFIX}{}\n", "x".repeat(long));
    let said = said(text.as_bytes());
    let result = said.result.expect("its first part");
    assert!(result.len() < long);
    assert!(serde_json::from_str::<super::ScanReport>(&result).is_err());
}

/// The lines `read_line` reads from `text`, at most `max` bytes each, and whether whole.
fn lines(text: &[u8], max: u64) -> Vec<(String, bool)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        // A small buffer, so that lines cross its refills.
        let mut reader = tokio::io::BufReader::with_capacity(4, text);
        let mut line = Vec::new();
        let mut read = Vec::new();
        while let Some(whole) = read_line(&mut reader, &mut line, max)
            .await
            .expect("read from memory")
        {
            read.push((String::from_utf8_lossy(&line).into_owned(), whole));
        }
        read
    })
}

#[test]
fn the_host_reads_a_scanners_lines_whole_up_to_the_bound_and_drops_the_rest_of_longer_ones() {
    let read = lines(b"short\nexactly-10\nfar longer than ten\n\nlast", 10);
    let expected = [
        ("short", true),
        ("exactly-10", true),
        ("far longer", false),
        ("", true),
        ("last", true),
    ]
    .map(|(text, whole)| (text.to_owned(), whole));
    assert_eq!(read, expected);
    // A line cut at the bound with no end is not whole either.
    assert_eq!(
        lines(b"0123456789abc", 10),
        [("0123456789".to_owned(), false)]
    );
}
