//! Human units in the config file: durations (`"30s"`, `"1m 30s"`, `"250ms"`) and sizes
//! (`"100MiB"`, `"2GiB"`, `"512kB"`, or a plain number of bytes).

use std::time::Duration;

use serde::{de, Deserialize, Deserializer};

/// Why a size or duration in the config could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Not a number with a unit.
    #[error("`{text}` is not a size; write it like \"512MiB\" or \"2GiB\"")]
    NotASize {
        /// The text.
        text: String,
    },
    /// A number with a unit this host does not know.
    #[error(
        "unknown size unit `{unit}` in `{text}`; use B, KiB, MiB, GiB, TiB (or kB, MB, GB, TB)"
    )]
    UnknownSizeUnit {
        /// The unit.
        unit: String,
        /// The whole text.
        text: String,
    },
    /// A size too large (or negative).
    #[error("size `{text}` is out of range")]
    SizeOutOfRange {
        /// The text.
        text: String,
    },
    /// Not a duration.
    #[error(
        "`{text}` is not a duration ({reason}); write it like \"30s\", \"250ms\" or \"1m 30s\""
    )]
    NotADuration {
        /// The text.
        text: String,
        /// What the parser said.
        reason: String,
    },
    /// A duration longer than any the host can wait for.
    #[error(
        "`{text}` is longer than the host can wait for; give at most 100 years (for \"never\" in practice, \"100years\")"
    )]
    DurationTooLong {
        /// The text.
        text: String,
    },
    /// Not an address to listen on.
    #[error(
        "`{text}` is not an address to listen on; write IP:PORT, like \"127.0.0.1:9464\" or \"[::1]:9464\" (\"localhost:9464\" means 127.0.0.1)"
    )]
    NotAnAddress {
        /// The text.
        text: String,
    },
}

/// Parses a size such as `"100MiB"` or `"2 GB"` into bytes.
///
/// # Errors
///
/// [`UnitError`] naming the text and the accepted units.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| UnitError::NotASize {
        text: text.to_owned(),
    })?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => {
            return Err(UnitError::UnknownSizeUnit {
                unit: other.to_owned(),
                text: text.to_owned(),
            })
        }
    };
    let bytes = number * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(UnitError::SizeOutOfRange {
            text: text.to_owned(),
        });
    }
    Ok(bytes.round() as u64)
}

/// Parses a duration such as `"30s"` or `"1m 30s"`.
///
/// # Errors
///
/// [`UnitError::NotADuration`] naming the text and how to write a duration.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let not_a_duration = |err: humantime::DurationError| UnitError::NotADuration {
        text: text.to_owned(),
        reason: err.to_string(),
    };
    let too_long = || UnitError::DurationTooLong {
        text: text.to_owned(),
    };
    // humantime adds one component's nanoseconds to the sum of the others in a way that
    // panics (`Duration::new` overflows) once that sum reaches u64::MAX seconds: each
    // component is parsed alone, and they are added here, checked.
    let trimmed = text.trim();
    let mut parts = components(trimmed);
    if parts.len() == 1 {
        parts.clear();
    }
    let duration = if parts.is_empty() {
        humantime::parse_duration(trimmed).map_err(not_a_duration)?
    } else {
        let mut sum = Duration::ZERO;
        for part in parts {
            let one = humantime::parse_duration(part.trim()).map_err(not_a_duration)?;
            sum = sum
                .checked_add(one)
                .filter(|sum| *sum <= LONGEST_DURATION)
                .ok_or_else(too_long)?;
        }
        sum
    };
    if duration > LONGEST_DURATION {
        return Err(too_long());
    }
    Ok(duration)
}

/// The components of a duration's text, each ending with its unit: `1h`, ` 30m`.
fn components(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut in_unit) = (0, false);
    for (at, c) in text.char_indices() {
        let letter = c.is_alphabetic();
        if in_unit && !letter {
            parts.push(&text[start..at]);
            start = at;
        }
        in_unit = letter;
    }
    parts.push(&text[start..]);
    parts
}

/// The longest duration a config key takes: 100 years of 365.25 days (`"100years"`).
/// Deadlines are instants and nanosecond counts (a `u64` holds 584 years), so a longer one
/// would overflow them.
pub const LONGEST_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// Parses an address to listen on: `IP:PORT` (`127.0.0.1:9464`, `[::1]:9464`), or
/// `localhost:PORT` for `127.0.0.1:PORT`. No other name is looked up: an address that
/// depends on the resolver could mean another interface tomorrow.
///
/// # Errors
///
/// [`UnitError::NotAnAddress`] naming the text and how to write an address.
pub fn parse_listen_address(text: &str) -> Result<std::net::SocketAddr, UnitError> {
    let text = text.trim();
    if let Some(port) = text.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        }
    }
    text.parse().map_err(|_| UnitError::NotAnAddress {
        text: text.to_owned(),
    })
}

/// An address to listen on as the file writes it: `"127.0.0.1:9464"`.
pub(crate) mod listen_address {
    use std::net::SocketAddr;

    use serde::{de, Deserialize, Deserializer, Serializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_listen_address(&text).map_err(de::Error::custom)
    }

    pub(crate) fn serialize<S: Serializer>(value: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }
}

/// A duration as the file writes it: `"30s"`.
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{de, Deserialize, Deserializer, Serializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(de::Error::custom)
    }

    pub(crate) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*value).to_string())
    }
}

pub(crate) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration::deserialize(d).map(Some)
}

/// A map of name to duration, as the file writes it: `{ bars = "5s" }`.
pub(crate) mod duration_map {
    use std::{collections::BTreeMap, time::Duration};

    use serde::{de, ser::SerializeMap, Deserialize, Deserializer, Serializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Duration>, D::Error> {
        let raw = BTreeMap::<String, String>::deserialize(d)?;
        raw.into_iter()
            .map(|(key, text)| {
                super::parse_duration(&text)
                    .map(|value| (key.clone(), value))
                    .map_err(|err| de::Error::custom(format!("`{key}`: {err}")))
            })
            .collect()
    }

    pub(crate) fn serialize<S: Serializer>(
        value: &BTreeMap<String, Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(value.len()))?;
        for (key, duration) in value {
            map.serialize_entry(key, &humantime::format_duration(*duration).to_string())?;
        }
        map.end()
    }
}

/// What a key written as `true`, `false` or one word said.
pub(crate) enum FlagOrWord {
    True,
    False,
    Word,
}

/// Reads a key that is `true`, `false` or `word`; anything else is refused naming all three.
pub(crate) fn flag_or_word<'de, D: Deserializer<'de>>(
    d: D,
    word: &str,
) -> Result<FlagOrWord, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Flag(bool),
        Text(String),
    }
    let invalid = || de::Error::custom(format!("expected true, false or \"{word}\""));
    match Repr::deserialize(d).map_err(|_| invalid())? {
        Repr::Flag(true) => Ok(FlagOrWord::True),
        Repr::Flag(false) => Ok(FlagOrWord::False),
        Repr::Text(text) if text == word => Ok(FlagOrWord::Word),
        Repr::Text(_) => Err(invalid()),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum SizeRepr {
    Number(u64),
    Text(String),
}

pub(crate) fn opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match SizeRepr::deserialize(d)? {
        SizeRepr::Number(bytes) => Ok(Some(bytes)),
        SizeRepr::Text(text) => parse_size(&text).map(Some).map_err(de::Error::custom),
    }
}

/// Serde helpers for a size written with units (`"64MiB"`) or as bytes.
pub(crate) mod size {
    use serde::{de, Deserialize, Deserializer, Serializer};

    use super::{parse_size, SizeRepr};

    pub(crate) fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::util::format_bytes(*value).replace(' ', ""))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match SizeRepr::deserialize(d)? {
            SizeRepr::Number(bytes) => Ok(bytes),
            SizeRepr::Text(text) => parse_size(&text).map_err(de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_binary_and_decimal_units() {
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("2 GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1.5kB"), Ok(1500));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12 parsecs")
            .unwrap_err()
            .to_string()
            .contains("parsecs"));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn durations_in_human_form() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(
            parse_duration("100years").map(|d| d > Duration::from_secs(3_000_000_000)),
            Ok(true)
        );
        let too_long = parse_duration("18446744073709551615s").unwrap_err();
        assert!(
            too_long.to_string().contains("at most 100 years"),
            "{too_long}"
        );
        // Found by fuzzing: humantime's own sum panicked at u64::MAX seconds.
        for text in [
            "0000018446744073709551615s10 00ms11s1",
            "18446744073709551615s 1000ms",
            "18446744073709551614s 2000ms",
        ] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        assert_eq!(
            parse_duration("1h30m 15s 500ms"),
            Ok(Duration::from_millis(5_415_500))
        );
    }
}
