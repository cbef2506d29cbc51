//! Reading the Prometheus text the admin API serves.

/// Parses Prometheus text exposition; panics when it is not valid.
pub fn scrape(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid Prometheus exposition")
}

/// The value of plain metric `name` for `component`, if the scrape has it.
pub fn sample_of(scrape: &prometheus_parse::Scrape, name: &str, component: &str) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && s.labels.get("component") == Some(component))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{name} is not a plain value"),
        })
}

/// As [`sample_of`], panicking when there is no such sample.
pub fn value_of(scrape: &prometheus_parse::Scrape, name: &str, component: &str) -> f64 {
    sample_of(scrape, name, component)
        .unwrap_or_else(|| panic!("no sample {name}{{component={component}}}"))
}
