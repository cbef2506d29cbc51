//! Small helpers shared across modules.

/// Serde helpers for `Option<Duration>` as whole milliseconds.
pub(crate) mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// Serde helpers for `Duration` as whole milliseconds.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(value.as_millis() as u64)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Formats a byte count for people: `100 MiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A measured duration for people to read: to the millisecond (`3s 919ms`, not
/// `3s 919ms 908us 986ns`).
pub(crate) fn for_people(measured: std::time::Duration) -> humantime::FormattedDuration {
    let millis = u64::try_from(measured.as_millis()).unwrap_or(u64::MAX);
    humantime::format_duration(std::time::Duration::from_millis(millis))
}

/// Milliseconds on a coarse monotonic clock, for marking uses on hot paths: one relaxed
/// load of a counter that a ticker thread (started by the first call, one per process)
/// advances every [`COARSE_TICK`]. Reading even a coarse system clock costs several times
/// that on a call path measured in tens of nanoseconds. Where no thread can be started,
/// the standard monotonic clock is read instead.
#[inline]
pub(crate) fn coarse_millis() -> u64 {
    use std::{
        sync::{
            atomic::{AtomicU64, Ordering},
            OnceLock,
        },
        time::Instant,
    };
    static START: OnceLock<Instant> = OnceLock::new();
    static NOW: AtomicU64 = AtomicU64::new(0);
    static TICKING: OnceLock<bool> = OnceLock::new();
    let since_start = || {
        let start = START.get_or_init(Instant::now);
        u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
    };
    let ticking = *TICKING.get_or_init(|| {
        NOW.store(since_start(), Ordering::Relaxed);
        std::thread::Builder::new()
            .name("plugin-host-clock".into())
            .spawn(move || loop {
                std::thread::sleep(COARSE_TICK);
                NOW.store(since_start(), Ordering::Relaxed);
            })
            .is_ok()
    });
    if ticking {
        NOW.load(Ordering::Relaxed)
    } else {
        since_start()
    }
}

/// How often the coarse clock advances.
pub(crate) const COARSE_TICK: std::time::Duration = std::time::Duration::from_millis(20);

/// `value` written out to its first `at_most` characters, with `...` where it was cut:
/// for quoting what a plugin or worker said in an error message. The writing stops there,
/// so a value of any size costs no more (`format_args!("{x:?}")` quotes a `Debug` form).
pub fn shortened(value: impl std::fmt::Display, at_most: usize) -> String {
    use std::fmt::Write as _;
    struct Cut {
        text: String,
        left: usize,
        cut: bool,
    }
    impl std::fmt::Write for Cut {
        fn write_str(&mut self, part: &str) -> std::fmt::Result {
            for c in part.chars() {
                if self.left == 0 {
                    self.cut = true;
                    return Err(std::fmt::Error);
                }
                self.text.push(c);
                self.left -= 1;
            }
            Ok(())
        }
    }
    let mut out = Cut {
        text: String::new(),
        left: at_most,
        cut: false,
    };
    let _ = write!(out, "{value}");
    if out.cut {
        out.text.push_str("...");
    }
    out.text
}

/// `text` cut as [`shortened`] does, borrowed when it is short enough already (its bytes
/// bound its characters, so a text that short needs no counting).
pub(crate) fn cut_to(text: &str, at_most: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= at_most {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(shortened(text, at_most))
    }
}

/// The most of a text file the host reads whole (its config, its trust file): far beyond
/// any real one, and a bound on what a mistaken path (`/dev/zero`, a log) costs.
pub(crate) const TEXT_FILE_AT_MOST: u64 = 16 << 20;

/// Reads the text file at `path` whole, refusing one larger than `at_most` bytes (or a
/// device that never ends) after reading one byte more, not all of it.
pub(crate) fn read_text_at_most(path: &std::path::Path, at_most: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(at_most + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > at_most {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "it is larger than {}, more than a text file of the host's can be; is it the right file?",
                format_bytes(at_most)
            ),
        ));
    }
    Ok(text)
}

/// Serialises a path as text, any bytes that are not UTF-8 replaced (U+FFFD): a file
/// named in other bytes is shown, never fails a JSON view (`serialize_with`).
///
/// # Errors
///
/// As the serializer's.
pub fn serialize_path_lossy<P: AsRef<std::path::Path>, S: serde::Serializer>(
    path: &P,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.as_ref().to_string_lossy())
}

#[cfg(test)]
mod tests {
    #[test]
    fn shortened_stops_writing_where_it_cuts() {
        assert_eq!(super::shortened("short", 10), "short");
        assert_eq!(super::shortened("ééééé", 3), "ééé...");
        let huge = vec![7u8; 1 << 20];
        assert_eq!(super::shortened(format_args!("{huge:?}"), 6), "[7, 7,...");
    }

    #[test]
    fn measured_durations_are_shown_to_the_millisecond() {
        let measured = std::time::Duration::new(3, 919_908_986);
        assert_eq!(super::for_people(measured).to_string(), "3s 919ms");
        assert_eq!(
            super::for_people(std::time::Duration::from_nanos(5)).to_string(),
            "0s"
        );
    }
}
