//! Who may talk to the dashboard. On a loopback address only this machine can, and the `Host`
//! header must name a loopback host (so a web page elsewhere cannot reach it by DNS rebinding);
//! on any other address every API request must carry the token printed at start (header
//! `Authorization: Bearer TOKEN`, or `?token=TOKEN` for the event stream, which cannot set
//! headers). The page's own files (the built app, the same in every copy of aptc, holding no
//! data) load without it, so the browser can fetch its script and styles; the page takes the
//! token from its address and sends it with every API request.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The access rule of one server.
#[derive(Clone, Debug)]
pub struct Access {
    /// `Some`: every request must carry it (a non-loopback address).
    pub token: Option<String>,
}

impl Access {
    /// The rule for `addr`: loopback needs no token; any other address gets a fresh one.
    pub fn for_address(addr: &SocketAddr) -> Result<Access, getrandom::Error> {
        if addr.ip().is_loopback() {
            return Ok(Access { token: None });
        }
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes)?;
        Ok(Access { token: Some(hex::encode(bytes)) })
    }

    /// Whether `request` may be answered.
    fn allows(&self, request: &Request) -> bool {
        match &self.token {
            None => request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).is_some_and(is_loopback_host),
            Some(_) if !request.uri().path().starts_with("/api/") => true,
            Some(token) => {
                let bearer = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| h.strip_prefix("Bearer "));
                let query =
                    request.uri().query().into_iter().flat_map(|q| q.split('&')).find_map(|p| p.strip_prefix("token="));
                bearer.or(query).is_some_and(|given| same(given.as_bytes(), token.as_bytes()))
            }
        }
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware: 401 without the token, 403 for a foreign `Host` on loopback.
pub async fn guard(State(access): State<Access>, request: Request, next: Next) -> Response {
    if access.allows(&request) {
        return next.run(request).await;
    }
    let (status, why) = match access.token {
        Some(_) => (StatusCode::UNAUTHORIZED, "this dashboard needs the token printed when `aptc ui` started"),
        None => (StatusCode::FORBIDDEN, "this dashboard answers only requests for a loopback host"),
    };
    (status, why).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in ["localhost", "localhost:8080", "127.0.0.1:1", "[::1]:80", "[::1]"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["evil.example", "evil.example:8080", "10.0.0.1:80", "localhost.evil.example"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn a_token_for_other_addresses_only() {
        assert!(Access::for_address(&"127.0.0.1:0".parse().unwrap()).unwrap().token.is_none());
        let token = Access::for_address(&"0.0.0.0:0".parse().unwrap()).unwrap().token.unwrap();
        assert_eq!(token.len(), 48);
        assert!(same(token.as_bytes(), token.as_bytes()));
        assert!(!same(b"abc", b"abd"));
    }
}
