//! The fake over real HTTP/1.1 on loopback, and a kubeconfig pointing at it: what a test needs to
//! run the `aptc` binary against [`FakeApi`] exactly as against a cluster (kubeconfig, context,
//! `kube`'s own connector and its HTTP client).

use std::convert::Infallible;
use std::io;
use std::path::Path;

use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::{FakeApi, ReplyBody, recorded};

impl FakeApi {
    /// Serves this fake (its state shared with `self`) over plain HTTP/1.1 on a free port of
    /// 127.0.0.1 from a background thread, and returns its URL (`http://127.0.0.1:PORT`). The
    /// server lives as long as the process: tests that serve a fake are short-lived.
    pub fn serve(&self) -> io::Result<String> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let fake = self.clone();
        std::thread::Builder::new().name("kube-fake".into()).spawn(move || runtime.block_on(fake.accept(listener)))?;
        Ok(url)
    }

    /// Serves this fake ([`FakeApi::serve`]) and writes a kubeconfig at `kubeconfig` whose current
    /// context `context` reaches it ([`write_kubeconfig`]): what a test hands to `aptc`.
    pub fn serve_to(&self, kubeconfig: &Path, context: &str) -> io::Result<()> {
        write_kubeconfig(kubeconfig, &self.serve()?, context)
    }

    /// Accepts connections for ever, each served on a task of its own (kube keeps connections
    /// alive and opens several at once).
    async fn accept(self, listener: std::net::TcpListener) {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => panic!("the fake API server cannot listen: {error}"),
        };
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let fake = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| fake.clone().serve_http(request));
                // A client hanging up mid-request is the client's business.
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    }

    async fn serve_http(self, request: Request<Incoming>) -> Result<http::Response<ReplyBody>, Infallible> {
        let (parts, body) = request.into_parts();
        // Content-Length or chunked: hyper has decoded the body either way.
        let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
        let answer = self.answer(recorded(&parts, &body)).await;
        Ok(answer.into_response())
    }
}

/// Writes a kubeconfig at `path` whose context `context` (also the current context) reaches
/// `server` (a URL from [`FakeApi::serve`]) without TLS, as a user with a bearer token: what
/// `aptc` reads through `$KUBECONFIG` or a cluster's `kubeconfig`.
pub fn write_kubeconfig(path: &Path, server: &str, context: &str) -> io::Result<()> {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {context}-cluster
  cluster:
    server: {server}
users:
- name: {context}-user
  user:
    token: fake-token
contexts:
- name: {context}
  context:
    cluster: {context}-cluster
    user: {context}-user
current-context: {context}
"
    );
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams};
    use kube::config::{Config, KubeConfigOptions, Kubeconfig};
    use serde_json::json;

    use super::*;

    /// kube, configured from the written kubeconfig as aptc configures it, applies an object
    /// over real HTTP and reads it back.
    #[tokio::test]
    async fn kube_reaches_the_served_fake_through_a_kubeconfig() {
        let fake = FakeApi::new();
        let url = fake.serve().unwrap();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        write_kubeconfig(&path, &url, "fake").unwrap();
        let options = KubeConfigOptions { context: Some("fake".into()), ..KubeConfigOptions::default() };
        let config = Config::from_custom_kubeconfig(Kubeconfig::read_from(&path).unwrap(), &options).await.unwrap();
        let client = kube::Client::try_from(config).unwrap();
        assert_eq!(client.apiserver_version().await.unwrap().git_version, "v1.33.0");

        let maps: Api<ConfigMap> = Api::namespaced(client, "default");
        let map = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "m" }, "data": { "k": "v" } });
        maps.patch("m", &PatchParams::apply("tester"), &Patch::Apply(map)).await.unwrap();
        let read = maps.get("m").await.unwrap();
        assert_eq!(read.data.unwrap()["k"], "v");
        let stored = fake.object("/api/v1/namespaces/default/configmaps/m").unwrap();
        assert_eq!(stored["metadata"]["managedFields"][0]["manager"], "tester");
        let patch = fake.requests().into_iter().find(|r| r.method == "PATCH").unwrap();
        assert_eq!(patch.content_type, "application/apply-patch+yaml");
        assert_eq!(patch.json()["data"]["k"], "v");
        assert!(maps.get("missing").await.is_err());
    }
}
