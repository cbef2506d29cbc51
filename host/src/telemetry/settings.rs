//! Where and how spans are exported: `[telemetry]` with the standard `OTEL_*` variables
//! over it, each checked (an endpoint that is not HTTP, a CA file that holds no
//! certificate) and named where it came from.

use std::path::PathBuf;

use super::OtlpProtocol;
use crate::config::{check_endpoint, check_protocol, read_certificate, TelemetryConfig};

/// Where and how spans are exported, from `[telemetry]` and the standard variables.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// Where spans are sent: over HTTP the traces URL (the endpoint with `/v1/traces`, or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is), over gRPC the collector's address.
    pub traces_url: String,
    /// `service.name`.
    pub service_name: String,
    /// Share of new traces recorded.
    pub sample_ratio: f64,
    /// How spans travel.
    pub protocol: OtlpProtocol,
    /// CA certificates (PEM) an `https://` collector may chain to, beside the system's.
    pub certificate: Option<Vec<u8>>,
}

/// Why spans cannot be exported as configured.
#[derive(Debug, thiserror::Error)]
#[error("telemetry: {0}")]
pub struct TelemetryError(pub(super) String);

impl TelemetrySettings {
    /// The settings of `config` with the standard variables read through `env` over it
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT`; the
    /// same for `..._PROTOCOL` and `..._CERTIFICATE`; `OTEL_SERVICE_NAME`); `None` when
    /// no endpoint is set anywhere (nothing is exported).
    ///
    /// # Errors
    ///
    /// A protocol that is not OTLP's, an endpoint that is not an HTTP URL, or a
    /// certificate file that cannot be read, holds no PEM certificate or is given for a
    /// plain `http://` endpoint, naming where it came from.
    pub fn resolve(
        config: &TelemetryConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, TelemetryError> {
        let set = |name: &'static str| env(name).filter(|v| !v.is_empty()).map(|v| (v, name));
        let protocol = match set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"))
        {
            Some((protocol, from)) => {
                check_protocol(&protocol).map_err(|why| TelemetryError(format!("{from}: {why}")))?
            }
            None => check_protocol(&config.otlp_protocol)
                .map_err(|why| TelemetryError(format!("[telemetry] otlp_protocol: {why}")))?,
        };
        // The signal's own variable names the whole URL; the others a base.
        let (endpoint, from, whole) = match set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some((endpoint, from)) => (endpoint, from, true),
            None => match set("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some((endpoint, from)) => (endpoint, from, false),
                None => match &config.otlp_endpoint {
                    Some(endpoint) => (endpoint.clone(), "[telemetry] otlp_endpoint", false),
                    None => return Ok(None),
                },
            },
        };
        check_endpoint(&endpoint).map_err(|why| TelemetryError(format!("{from}: {why}")))?;
        let base = endpoint.trim_end_matches('/');
        let traces_url = if whole || protocol == OtlpProtocol::Grpc || base.ends_with("/v1/traces")
        {
            base.to_owned()
        } else {
            format!("{base}/v1/traces")
        };
        let certificate = match set("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE")
            .or_else(|| set("OTEL_EXPORTER_OTLP_CERTIFICATE"))
        {
            Some((path, from)) => Some((PathBuf::from(path), from)),
            None => config
                .otlp_certificate
                .clone()
                .map(|path| (path, "[telemetry] otlp_certificate")),
        };
        let certificate = certificate
            .map(|(path, from)| {
                read_certificate(&path, &traces_url)
                    .map_err(|why| TelemetryError(format!("{from}: {}: {why}", path.display())))
            })
            .transpose()?;
        Ok(Some(Self {
            traces_url,
            service_name: env("OTEL_SERVICE_NAME").unwrap_or_else(|| config.service_name.clone()),
            sample_ratio: config.sample_ratio,
            protocol,
            certificate,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::{OtlpProtocol, TelemetrySettings};
    use crate::config::TelemetryConfig;

    fn resolved(vars: &[(&str, &str)], config: &TelemetryConfig) -> Option<TelemetrySettings> {
        let env = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        };
        TelemetrySettings::resolve(config, env).expect("valid settings")
    }

    #[test]
    fn the_traces_variables_win_over_the_general_ones_and_the_file() {
        let config = TelemetryConfig {
            otlp_endpoint: Some("http://file:4318".into()),
            ..TelemetryConfig::default()
        };
        let url = |vars: &[(&str, &str)]| resolved(vars, &config).expect("on").traces_url;
        assert_eq!(url(&[]), "http://file:4318/v1/traces");
        let general = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318/");
        assert_eq!(url(&[general]), "http://env:4318/v1/traces");
        // The signal's own variable is the whole URL, as the specification says.
        let traces = (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://traces:9/custom",
        );
        assert_eq!(url(&[general, traces]), "http://traces:9/custom");
        // gRPC takes the collector's address as it is.
        let grpc = resolved(
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ],
            &config,
        )
        .expect("on");
        assert_eq!(grpc.protocol, OtlpProtocol::Grpc);
        assert_eq!(grpc.traces_url, "http://file:4318");
        // Set but empty is unset.
        let off = [("OTEL_EXPORTER_OTLP_ENDPOINT", "")];
        assert_eq!(resolved(&off, &TelemetryConfig::default()), None);
    }

    #[test]
    fn a_ca_certificate_is_read_from_the_variables_over_the_file_and_checked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path.display().to_string()
        };
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let other = pem.replace("MIIB", "MIIC");
        let (file, env) = (write("file.pem", pem), write("env.pem", &other));
        let config = TelemetryConfig {
            otlp_endpoint: Some("https://collector:4318".into()),
            otlp_certificate: Some(file.clone().into()),
            ..TelemetryConfig::default()
        };
        let resolve = |vars: &[(&str, &str)], config: &TelemetryConfig| {
            let env = |name: &str| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            };
            TelemetrySettings::resolve(config, env).map(|s| s.expect("on").certificate)
        };
        assert_eq!(
            resolve(&[], &config).expect("read"),
            Some(pem.as_bytes().to_vec())
        );
        let from_env = resolve(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", &env)], &config);
        assert_eq!(from_env.expect("read"), Some(other.into_bytes()));
        // Each refusal names where the file came from, the file and what to do.
        let refused = |vars: &[(&str, &str)], config: &TelemetryConfig| {
            resolve(vars, config).expect_err("refused").to_string()
        };
        let key = write("key.pem", "-----BEGIN PRIVATE KEY-----\n");
        let message = refused(&[("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", &key)], &config);
        assert!(
            message.contains("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE")
                && message.contains("key.pem")
                && message.contains("no PEM certificate"),
            "{message}"
        );
        let missing = dir.path().join("missing.pem").display().to_string();
        let message = refused(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", &missing)], &config);
        assert!(
            message.contains("missing.pem") && message.contains("cannot be read"),
            "{message}"
        );
        let plain = TelemetryConfig {
            otlp_endpoint: Some("http://collector:4318".into()),
            ..config.clone()
        };
        let message = refused(&[], &plain);
        assert!(
            message.contains("[telemetry] otlp_certificate") && message.contains("plain HTTP"),
            "{message}"
        );
    }
}
