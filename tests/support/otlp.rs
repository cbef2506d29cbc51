//! A real OTLP receiver on loopback: over HTTP it takes `POST /v1/traces` with protobuf or
//! JSON bodies (`ExportTraceServiceRequest`, decoded with the `opentelemetry-proto` types,
//! as `Content-Type` says); over gRPC it serves `TraceService/Export` with tonic and the
//! same crate's generated server. It answers as a collector does and keeps every span it
//! got, with the encoding it came in. Either serves over TLS too, with a certificate for
//! 127.0.0.1 signed by a certificate authority of its own ([`OtlpReceiver::ca_pem`]).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{
        header::{AUTHORIZATION, CONTENT_TYPE},
        HeaderMap, StatusCode,
    },
    routing::post,
    Router,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_server::{TraceService, TraceServiceServer},
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;

/// One span as received: ids in hex, its name, the `service.name` of its resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    pub service: String,
    /// Its attributes, `key=value` (string values only).
    pub attributes: Vec<String>,
    /// The request's `Content-Type`: `application/x-protobuf` or `application/json`; or
    /// `grpc`.
    pub encoding: String,
    /// The request's `Authorization` header (gRPC: its metadata), if any.
    pub authorization: String,
}

type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;

/// The receiver; it stops with the test process.
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    spans: Spans,
    /// Over TLS: the PEM certificate of the authority that signed its certificate.
    ca: Option<String>,
}

/// A certificate authority made for one receiver, and the certificate (with its key) it
/// signed for 127.0.0.1.
struct Authority {
    ca_pem: String,
    certificate: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Authority {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "plugin-host test CA");
        let ca_key = rcgen::KeyPair::generate().expect("a CA key");
        let ca = rcgen::CertifiedIssuer::self_signed(params, ca_key).expect("a CA");
        let key = rcgen::KeyPair::generate().expect("a key");
        let certificate = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("a certificate");
        Self {
            ca_pem: ca.pem(),
            certificate,
            key,
        }
    }

    /// A TLS acceptor that presents the certificate.
    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        use tokio_rustls::rustls;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(self.key.serialize_der());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.certificate.der().clone()], key.into())
            .expect("a server config");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Keeps every span of `request`, which came as `encoding` with `authorization`.
fn keep(spans: &Spans, request: ExportTraceServiceRequest, encoding: &str, authorization: &str) {
    let mut received = Vec::new();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .map(|v| format!("{:?}", v.value))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                let attributes = span
                    .attributes
                    .iter()
                    .filter_map(|kv| {
                        use opentelemetry_proto::tonic::common::v1::any_value::Value;
                        match kv.value.as_ref()?.value.as_ref()? {
                            Value::StringValue(text) => Some(format!("{}={text}", kv.key)),
                            _ => None,
                        }
                    })
                    .collect();
                received.push(ReceivedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    service: service.clone(),
                    attributes,
                    encoding: encoding.to_owned(),
                    authorization: authorization.to_owned(),
                });
            }
        }
    }
    spans.lock().expect("spans").extend(received);
}

/// The gRPC service: the same spans kept.
struct Grpc(Spans);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        keep(&self.0, request.into_inner(), "grpc", &authorization);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn traces(
    State(spans): State<Spans>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Vec<u8>) {
    let encoding = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let decoded = if encoding == "application/json" {
        serde_json::from_slice::<ExportTraceServiceRequest>(&body).ok()
    } else {
        ExportTraceServiceRequest::decode(body).ok()
    };
    let Some(request) = decoded else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let authorization = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    keep(&spans, request, &encoding, authorization);
    let answer = if encoding == "application/json" {
        b"{}".to_vec()
    } else {
        ExportTraceServiceResponse::default().encode_to_vec()
    };
    (StatusCode::OK, answer)
}

impl OtlpReceiver {
    /// Starts listening for OTLP/HTTP on a free loopback port.
    pub fn start() -> Self {
        Self::serve(|listener, spans| async move {
            let app = Router::new()
                .route("/v1/traces", post(traces))
                .with_state(spans);
            axum::serve(listener, app).await.expect("serve");
        })
    }

    /// Starts listening for OTLP/gRPC on a free loopback port.
    pub fn start_grpc() -> Self {
        Self::serve(|listener, spans| async move {
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Grpc(spans)))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await
                .expect("serve");
        })
    }

    /// Starts listening for OTLP over HTTPS (`grpc` false) or gRPC over TLS on a free
    /// loopback port, with a certificate for 127.0.0.1 that only [`Self::ca_pem`] vouches
    /// for.
    pub fn start_tls(grpc: bool) -> Self {
        let authority = Authority::new();
        let acceptor = authority.acceptor();
        let mut receiver = Self::serve(move |listener, spans| async move {
            let service = if grpc {
                tonic::service::Routes::new(TraceServiceServer::new(Grpc(spans))).into_axum_router()
            } else {
                Router::new()
                    .route("/v1/traces", post(traces))
                    .with_state(spans)
            };
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, service) = (acceptor.clone(), service.clone());
                tokio::spawn(async move {
                    // A client that does not trust the certificate ends its handshake.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(service);
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
                });
            }
        });
        receiver.ca = Some(authority.ca_pem);
        receiver
    }

    /// Over TLS, the PEM certificate of the authority that signed the receiver's.
    pub fn ca_pem(&self) -> &str {
        self.ca.as_deref().expect("a receiver over TLS")
    }

    /// Runs `server` on a thread of its own with a listener on a free loopback port.
    fn serve<F, Fut>(server: F) -> Self
    where
        F: FnOnce(tokio::net::TcpListener, Spans) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let spans = Spans::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        listener.set_nonblocking(true).expect("non-blocking");
        let kept = Arc::clone(&spans);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                server(listener, kept).await;
            });
        });
        Self {
            addr,
            spans,
            ca: None,
        }
    }

    /// Its base URL, as a host's `otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("spans").clone()
    }
}
