//! A small HTTP/1.1 client for tests that talk to a server the test started on 127.0.0.1 (the
//! REST API of `tidemark serve`): one request, the status, headers and the whole body.

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// What a server answered.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON, or an error showing the body.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("status {}: body is not JSON: {}", self.status, String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `method url` with an optional JSON body; only loopback URLs are accepted, so that no
/// test reaches anything it did not start.
pub async fn request(method: &str, url: &str, body: Option<&str>) -> Result<Reply> {
    if !url.starts_with("http://127.0.0.1:") {
        bail!("{url}: tests only talk to servers on 127.0.0.1");
    }
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::builder().method(method).uri(url);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default().to_string())))?;
    let resp = client.request(req).await.with_context(|| format!("{method} {url}"))?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.with_context(|| format!("reading the body of {method} {url}"))?.to_bytes().to_vec();
    Ok(Reply { status: parts.status.as_u16(), headers: parts.headers, body })
}
