//! `[admin]`: where the admin HTTP API listens, who may use it, and how much of the host
//! its clients may hold (connections, and the time and size of a request).

use std::{net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};

use super::units;

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin HTTP API, `IP:PORT` (`localhost:PORT` is `127.0.0.1:PORT`).
    /// Defaults to `127.0.0.1:9464`.
    #[serde(with = "units::listen_address")]
    pub listen: SocketAddr,
    /// Bearer token required when listening beyond loopback. Defaults to empty.
    pub token: String,
    /// Whether `/healthz` and `/readyz` answer without the token (for load balancers and
    /// Kubernetes probes, which come from off-loopback). Defaults to false.
    pub probes_without_token: bool,
    /// Connections served at once; one more is answered `503` (kind `too_many_connections`)
    /// and closed. Each takes a file descriptor: the binary raises its soft descriptor
    /// limit to the hard one at start. Defaults to 16384.
    pub max_connections: usize,
    /// How long a request's head (request line and headers) may take to arrive, and how
    /// long a keep-alive connection may sit idle between requests. A head still
    /// incomplete then is answered `408` (kind `header_timeout`); an idle connection is
    /// closed. Defaults to 30 s.
    #[serde(with = "units::duration")]
    pub header_timeout: Duration,
    /// How long a request's body may take to arrive once its head has; past it the request
    /// is answered `408` (kind `body_timeout`). Defaults to 30 s.
    #[serde(with = "units::duration")]
    pub body_timeout: Duration,
    /// The largest request head; a larger one is answered `431`. At least 8 KiB. Defaults
    /// to 64 KiB.
    #[serde(with = "units::size")]
    pub max_header_size: u64,
    /// The largest request body (a call's input); a larger one is answered `413` (kind
    /// `payload_too_large`). Defaults to 2 MiB.
    #[serde(with = "units::size")]
    pub max_body: u64,
}

/// The smallest `max_header_size` the HTTP server accepts.
pub(crate) const MIN_HEADER_SIZE: u64 = 8192;

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            token: String::new(),
            probes_without_token: false,
            max_connections: 16384,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            max_header_size: 64 << 10,
            max_body: 2 << 20,
        }
    }
}
