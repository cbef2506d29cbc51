//! The one naming rule for plugins, components and locks, and the check behind it. A leaf
//! module: config, locks and manifests all import it, and it imports nothing of theirs.

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
