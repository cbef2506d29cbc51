//! The one naming rule for plugins, components and locks, and the check behind it. A leaf
//! module: config, locks and manifests all import it, and it imports nothing of theirs.
//! Beside it, how text a plugin wrote is made safe to print.

use std::borrow::Cow;

/// How plugin, component and lock names are written; every message about a bad name
/// quotes it.
pub const NAME_RULE: &str = "use 1-64 characters of a-z, 0-9, `-`, `_` or `.`";

/// Whether `name` is a usable plugin, component or lock name.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

/// `text` as one line of a log or a terminal: control characters (a line break that would
/// start a forged record or line, a terminal escape that would rewrite the screen) are
/// written as escapes. Text a plugin supplies goes through it before anyone reads it.
pub fn printable(text: &str) -> Cow<'_, str> {
    escaped(text, |_| false)
}

/// `text`, many lines, for a terminal: as [`printable`], but line breaks and tabs stay.
/// What the command line prints goes through it, for errors and descriptions may quote
/// what a plugin wrote (its stderr, its manifest's error).
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    escaped(text, |c| matches!(c, '\n' | '\t'))
}

fn escaped(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    let escape = |c: char| c.is_control() && !keep(c);
    if !text.chars().any(escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_break_in_a_record_is_written_as_an_escape() {
        assert_eq!(printable("plain text"), "plain text");
        assert_eq!(printable("a\nforged"), "a\\nforged");
        assert_eq!(printable("bell\u{7}"), "bell\\u{7}");
    }

    #[test]
    fn a_terminal_keeps_its_lines_but_no_escape_or_carriage_return() {
        let forged = "two\nlines\tand \u{1b}[2K\rsandbox needs: nothing";
        assert_eq!(
            terminal_safe(forged),
            "two\nlines\tand \\u{1b}[2K\\rsandbox needs: nothing"
        );
        assert!(matches!(terminal_safe("clean\n"), Cow::Borrowed(_)));
    }
}
