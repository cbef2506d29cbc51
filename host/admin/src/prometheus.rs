//! Prometheus text exposition (format 0.0.4): HELP and TYPE once per family, base units,
//! `_total` counters, histograms as `_bucket{le}` / `_sum` / `_count`.

use std::fmt::Write as _;

use plugin_host::metrics::HistogramSnapshot;

/// Builds one exposition document.
#[derive(Default)]
pub(crate) struct Exposition {
    out: String,
}

/// One metric family whose samples are read from items of type `T`.
pub(crate) struct Family<T> {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) help: &'static str,
    pub(crate) value: fn(&T) -> f64,
}

/// Metric type of a family.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl Exposition {
    /// Starts a family: HELP and TYPE lines.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample of the current family.
    pub(crate) fn sample(&mut self, name: &str, label_pairs: &[(&str, &str)], value: f64) {
        let _ = writeln!(
            self.out,
            "{name}{} {}",
            labels(label_pairs),
            format_value(value)
        );
    }

    /// A whole histogram of the current family.
    pub(crate) fn histogram(
        &mut self,
        name: &str,
        label_pairs: &[(&str, &str)],
        snapshot: &HistogramSnapshot,
    ) {
        for (bound, count) in &snapshot.buckets {
            let le = format_value(*bound);
            let mut with_le: Vec<(&str, &str)> = label_pairs.to_vec();
            with_le.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &with_le, *count);
        }
        self.sample(&format!("{name}_sum"), label_pairs, snapshot.sum);
        self.sample(&format!("{name}_count"), label_pairs, snapshot.count);
    }

    /// Every family of `families`, one sample per item, labelled by `labels`.
    pub(crate) fn table<T>(
        &mut self,
        families: &[Family<T>],
        items: &[T],
        labels: impl Fn(&T) -> Vec<(&'static str, String)>,
    ) {
        for family in families {
            self.family(family.name, family.kind, family.help);
            for item in items {
                let pairs = labels(item);
                let borrowed: Vec<(&str, &str)> =
                    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
                self.sample(family.name, &borrowed, (family.value)(item));
            }
        }
    }

    /// A family with one unlabelled sample.
    pub(crate) fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}
