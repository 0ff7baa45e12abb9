//! What the controller serves: `/healthz`, `/readyz` and `/metrics` (Prometheus text format) over
//! HTTP, and the admission webhook over HTTPS ([`crate::admission`]), with a certificate the
//! controller generates at start (`rcgen`) or files it is given (cert-manager's Secret, mounted).
//! The routing is one function of the request ([`answer`]), tested without sockets.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use thiserror::Error;
use tokio::net::TcpListener;

use crate::manifests::WEBHOOK_PATH;
use crate::policy::Archives;

/// The largest admission review read (a bundle is at most 1 MiB of Base64; reviews carry the old
/// object too).
const MAX_REVIEW: usize = 4 * 1024 * 1024;

/// Why serving failed to start.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the webhook's certificate: {0}")]
    Certificate(String),
}

/// The controller's counters, as `/metrics` shows them.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub reconcile_seconds: Histogram,
    pub apply_failures: Counter,
    pub claims: Family<StateLabel, Gauge>,
    pub leader: Gauge,
}

/// The `state` label of `aptc_claims`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("aptc");
        let reconciles = Counter::default();
        let reconcile_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        let apply_failures = Counter::default();
        let claims = Family::<StateLabel, Gauge>::default();
        let leader = Gauge::default();
        registry.register("reconciles", "Reconcile steps run", reconciles.clone());
        registry.register("reconcile_seconds", "How long reconcile steps took", reconcile_seconds.clone());
        registry.register("apply_failures", "Actions that failed to apply", apply_failures.clone());
        registry.register("claims", "Claims by state", claims.clone());
        registry.register("leader", "1 while this replica leads", leader.clone());
        Metrics { registry, reconciles, reconcile_seconds, apply_failures, claims, leader }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn text(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// What the servers share with the controller's loops.
pub struct Shared {
    /// The watches have listed everything once.
    pub ready: AtomicBool,
    /// The bundles' versions in use, which the webhook checks changes against.
    pub used: RwLock<Archives>,
    pub metrics: Metrics,
    /// Where the webhook unpacks bundles to check them.
    pub work: PathBuf,
    /// Seconds since the epoch of the last reconcile step (0: none yet).
    pub last_step: AtomicI64,
    /// The archives of Git-sourced bundles (repositories under `work/git`), for the webhook and
    /// a standby's assembling.
    pub sources: crate::git::Sources,
}

impl Shared {
    pub fn new(work: PathBuf) -> Shared {
        Shared {
            ready: AtomicBool::new(false),
            used: RwLock::new(Archives::new()),
            metrics: Metrics::default(),
            last_step: AtomicI64::new(0),
            sources: crate::git::Sources::new(&work.join("git")),
            work,
        }
    }

    /// The same, reading Git sources' credentials (`spec.git.secretRef`) from `home`'s Secrets.
    pub fn with_home(mut self, home: aptc_runtime::credentials::Home) -> Shared {
        self.sources = crate::git::Sources::new(&self.work.join("git")).with_home(home);
        self
    }
}

/// The answer to one request (either server: both route the same paths).
pub fn answer(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Response<Full<Bytes>> {
    let text = |code: StatusCode, body: String| {
        Response::builder()
            .status(code)
            .header("content-type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    match (method, path) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into()),
        (&Method::GET, "/readyz") if shared.ready.load(Ordering::Relaxed) => text(StatusCode::OK, "ready\n".into()),
        (&Method::GET, "/readyz") => text(StatusCode::SERVICE_UNAVAILABLE, "the watches have not listed yet\n".into()),
        (&Method::GET, "/metrics") => Response::builder()
            .header("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(Full::new(Bytes::from(shared.metrics.text())))
            .expect("a valid response"),
        (&Method::POST, WEBHOOK_PATH) => {
            let used = shared.used.read().unwrap_or_else(|e| e.into_inner()).clone();
            match crate::admission::review(body, &used, &shared.work, &shared.sources) {
                Ok(review) => Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(review.to_string())))
                    .expect("a valid response"),
                Err(error) => text(StatusCode::BAD_REQUEST, format!("{error}\n")),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// Reads a request's body (at most [`MAX_REVIEW`] bytes) and answers it off the async threads
/// (a review checks a policy).
async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_REVIEW);
    let body = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let response = Response::builder()
                .status(StatusCode::PAYLOAD_TOO_LARGE)
                .body(Full::new(Bytes::from_static(b"request too large\n")))
                .expect("a valid response");
            return Ok(response);
        }
    };
    let path = parts.uri.path().to_string();
    let answered = tokio::task::spawn_blocking(move || answer(&shared, &parts.method, &path, &body)).await;
    Ok(answered.unwrap_or_else(|_| {
        Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Full::new(Bytes::from_static(b"the answer failed\n")))
            .expect("a valid response")
    }))
}

/// Serves plain HTTP on `addr` until the process ends.
pub async fn serve_http(addr: SocketAddr, shared: Arc<Shared>) -> Result<(), ServeError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Listen { addr, source })?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| handle(shared.clone(), request));
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(())
}

/// A serving certificate and key (PEM).
pub struct Certificate {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A self-signed certificate for the webhook's Service names (`NAME.NAMESPACE.svc` and
/// `NAME.NAMESPACE.svc.cluster.local`); it is its own CA, so its PEM is the webhook's `caBundle`.
pub fn generate_certificate(service: &str, namespace: &str) -> Result<Certificate, ServeError> {
    let names = vec![format!("{service}.{namespace}.svc"), format!("{service}.{namespace}.svc.cluster.local")];
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| ServeError::Certificate(e.to_string()))?;
    Ok(Certificate { cert_pem: certified.cert.pem(), key_pem: certified.signing_key.serialize_pem() })
}

/// Serves HTTPS with `certificate` on `addr` until the process ends.
pub async fn serve_https(addr: SocketAddr, certificate: &Certificate, shared: Arc<Shared>) -> Result<(), ServeError> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let bad = |e: &dyn std::fmt::Display| ServeError::Certificate(e.to_string());
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(certificate.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(certificate.key_pem.as_bytes()).map_err(|e| bad(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(&e))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Listen { addr, source })?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (acceptor, shared) = (acceptor.clone(), shared.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let service = hyper::service::service_fn(move |request| handle(shared.clone(), request));
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(response: Response<Full<Bytes>>) -> (StatusCode, String) {
        let status = response.status();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let bytes = runtime.block_on(response.into_body().collect()).unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[test]
    fn probes_metrics_and_the_webhook() {
        let work = tempfile::tempdir().unwrap();
        let shared = Shared::new(work.path().to_path_buf());
        assert_eq!(body(answer(&shared, &Method::GET, "/healthz", b"")).0, StatusCode::OK);
        assert_eq!(body(answer(&shared, &Method::GET, "/readyz", b"")).0, StatusCode::SERVICE_UNAVAILABLE);
        shared.ready.store(true, Ordering::Relaxed);
        assert_eq!(body(answer(&shared, &Method::GET, "/readyz", b"")).0, StatusCode::OK);
        shared.metrics.reconciles.inc();
        shared.metrics.claims.get_or_create(&StateLabel { state: "Ready".into() }).set(3);
        let (code, text) = body(answer(&shared, &Method::GET, "/metrics", b""));
        assert_eq!(code, StatusCode::OK);
        assert!(text.contains("aptc_reconciles_total 1"), "{text}");
        assert!(text.contains("aptc_claims{state=\"Ready\"} 3"), "{text}");
        assert!(text.contains("aptc_reconcile_seconds_bucket"), "{text}");
        assert_eq!(body(answer(&shared, &Method::POST, WEBHOOK_PATH, b"{}")).0, StatusCode::BAD_REQUEST);
        assert_eq!(body(answer(&shared, &Method::GET, "/nothing", b"")).0, StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_generated_certificate_names_the_service() {
        let certificate = generate_certificate("aptc-controller", "aptc-system").unwrap();
        assert!(certificate.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(certificate.key_pem.contains("PRIVATE KEY"));
    }

    /// The HTTPS server answers a review over TLS with the generated certificate.
    #[test]
    fn the_webhook_is_served_over_https() {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let work = tempfile::tempdir().unwrap();
        let shared = Arc::new(Shared::new(work.path().to_path_buf()));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let certificate = generate_certificate("aptc-controller", "aptc-system").unwrap();
        runtime.block_on(serve_https(addr, &certificate, shared)).unwrap();
        let answered = runtime.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            use tokio_rustls::rustls;
            use tokio_rustls::rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(certificate.cert_pem.as_bytes()) {
                roots.add(cert.unwrap()).unwrap();
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("aptc-controller.aptc-system.svc").unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            let request = format!(
                "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
            );
            tls.write_all(request.as_bytes()).await.unwrap();
            let mut out = String::new();
            tls.read_to_string(&mut out).await.unwrap_or_default();
            out
        });
        assert!(answered.starts_with("HTTP/1.1 400"), "{answered}");
        assert!(answered.contains("not an AdmissionReview"), "{answered}");
    }
}
