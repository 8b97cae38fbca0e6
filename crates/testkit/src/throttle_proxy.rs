//! A throttling S3 proxy for integration tests: a real HTTP server on loopback in front of moto or SeaweedFS that answers `503 SlowDown` per prefix as S3 does.
//!
//! S3 gives each partitioned prefix a request rate, refuses the excess with `503 SlowDown`, and
//! splits a prefix that stays busy so that its rate grows. The proxy models that with one token
//! bucket per top-level prefix of one source bucket (the first path component of the key, as
//! `tidemark_core::scheduler::fleet::top_prefix` reads it): a request takes a token or is refused with
//! S3's own XML error body; a prefix whose demand stays near its rate for `split_after` gets its
//! rate multiplied by `split_factor`, up to `max_rps`.
//!
//! The bucket's own application shares the capacity: a task inside the proxy draws tokens at a
//! configured rate per prefix, as the application's requests would, and counts how many of them
//! were refused. [`ThrottleProxy::stats`] reports, per prefix, the application's requests and
//! 503s and the backup's, which is how tests check that the backup did not starve the application.
//!
//! Only requests about objects of the throttled bucket take tokens: object reads and writes
//! (path-style `/{bucket}/{key}`), listings (the prefix of `start-after`, or else of `prefix`) and
//! copies whose `x-amz-copy-source` names the bucket (S3 counts a copy as a read of its source).
//! Everything else (the vault bucket, bucket-level calls) passes straight through. The client's
//! requests are signed for the proxy's address; moto and SeaweedFS do not verify signatures by
//! default, so the proxy rewrites `Host` to the upstream's address and forwards method, path,
//! query, headers and body unchanged, streaming bodies both ways.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use percent_encoding::percent_decode_str;

/// How the proxy throttles.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The upstream S3 endpoint, e.g. `http://127.0.0.1:5000`.
    pub upstream: String,
    /// The bucket whose prefixes are throttled; other buckets pass through.
    pub bucket: String,
    /// The rate each prefix starts with, in requests per second.
    pub base_rps: f64,
    /// How many seconds of the rate a bucket holds when idle (the burst it absorbs).
    pub burst_s: f64,
    /// How long a prefix's demand must stay near its rate before the prefix splits.
    pub split_after: Duration,
    /// The factor by which a split multiplies a prefix's rate.
    pub split_factor: f64,
    /// The most a prefix can reach by splitting.
    pub max_rps: f64,
    /// The application's own load, in requests per second, by top-level prefix.
    pub app_rps: BTreeMap<String, f64>,
}

impl ProxyConfig {
    /// A proxy for `bucket` in front of `upstream` with S3-like defaults scaled down for tests:
    /// `base_rps` per prefix, one second of burst, a split after 10 busy seconds doubling the rate
    /// up to eight times the base, and no application load.
    pub fn new(upstream: impl Into<String>, bucket: impl Into<String>, base_rps: f64) -> Self {
        ProxyConfig {
            upstream: upstream.into(),
            bucket: bucket.into(),
            base_rps,
            burst_s: 1.0,
            split_after: Duration::from_secs(10),
            split_factor: 2.0,
            max_rps: base_rps * 8.0,
            app_rps: BTreeMap::new(),
        }
    }
}

/// What one prefix saw, from the proxy's start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrefixStats {
    /// Requests of the simulated application.
    pub app_requests: u64,
    /// Application requests refused with `503 SlowDown`.
    pub app_503: u64,
    /// Requests that came through the proxy (the backup's).
    pub backup_requests: u64,
    /// Proxied requests refused with `503 SlowDown`.
    pub backup_503: u64,
    /// The prefix's current rate in requests per second.
    pub rate_rps: f64,
    /// How many times the prefix split.
    pub splits: u32,
}

impl PrefixStats {
    /// The share of the application's requests that were refused (zero when it sent none).
    pub fn app_503_share(&self) -> f64 {
        if self.app_requests == 0 {
            0.0
        } else {
            self.app_503 as f64 / self.app_requests as f64
        }
    }
}

/// One prefix's token bucket, split tracking and counters.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
    /// Requests (granted or refused) in the current one-second window, and its start.
    window_demand: u64,
    window_start: Instant,
    /// Since when the demand has stayed near the rate, if it has.
    busy_since: Option<Instant>,
    stats: PrefixStats,
}

impl Bucket {
    fn new(config: &ProxyConfig, now: Instant) -> Self {
        Bucket {
            rate: config.base_rps,
            tokens: config.base_rps * config.burst_s,
            last: now,
            window_demand: 0,
            window_start: now,
            busy_since: None,
            stats: PrefixStats { rate_rps: config.base_rps, ..Default::default() },
        }
    }

    /// Takes a token if there is one; refills first and closes finished demand windows.
    fn take(&mut self, config: &ProxyConfig, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate * config.burst_s);
        let window = now.saturating_duration_since(self.window_start);
        if window >= Duration::from_secs(1) {
            // A prefix is busy while its demand stays at 80 % of its rate or more; S3 splits a
            // partition that stays hot, not one that saw a single burst.
            let demand_rps = self.window_demand as f64 / window.as_secs_f64();
            if demand_rps >= 0.8 * self.rate {
                let since = *self.busy_since.get_or_insert(self.window_start);
                if now.saturating_duration_since(since) >= config.split_after && self.rate < config.max_rps {
                    self.rate = (self.rate * config.split_factor).min(config.max_rps);
                    self.stats.rate_rps = self.rate;
                    self.stats.splits += 1;
                    self.busy_since = None;
                }
            } else {
                self.busy_since = None;
            }
            self.window_demand = 0;
            self.window_start = now;
        }
        self.window_demand += 1;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Shared {
    config: ProxyConfig,
    buckets: Mutex<BTreeMap<String, Bucket>>,
}

impl Shared {
    /// Takes a token from `prefix`'s bucket and counts the request as the application's or the
    /// backup's. Returns true when the request may go on.
    fn admit(&self, prefix: &str, app: bool) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("proxy lock");
        let bucket = buckets.entry(prefix.to_string()).or_insert_with(|| Bucket::new(&self.config, now));
        let ok = bucket.take(&self.config, now);
        let s = &mut bucket.stats;
        match (app, ok) {
            (true, ok) => {
                s.app_requests += 1;
                s.app_503 += u64::from(!ok);
            }
            (false, ok) => {
                s.backup_requests += 1;
                s.backup_503 += u64::from(!ok);
            }
        }
        ok
    }
}

/// A running proxy; it stops when dropped.
pub struct ThrottleProxy {
    /// The proxy's address, e.g. `http://127.0.0.1:40123`; point the S3 client here.
    pub endpoint: String,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for ThrottleProxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// S3's error body for a throttled request.
fn slow_down_body(resource: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><Resource>{}</Resource><RequestId>TMTHROTTLE</RequestId><HostId>tidemark-throttle-proxy</HostId></Error>",
        resource.replace('&', "&amp;").replace('<', "&lt;")
    )
}

/// The top-level prefix of a key: the part before the first `/`, or empty at the bucket's root.
fn top(key: &str) -> &str {
    key.split_once('/').map_or("", |(t, _)| t)
}

fn decode(s: &str) -> String {
    percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
}

/// The throttled prefix a request is about, if it concerns objects of the throttled bucket.
fn prefix_of(bucket: &str, path: &str, query: Option<&str>, copy_source: Option<&str>) -> Option<String> {
    if let Some(src) = copy_source {
        let src = decode(src.split('?').next().unwrap_or(""));
        let src = src.trim_start_matches('/');
        if let Some(key) = src.strip_prefix(bucket).and_then(|r| r.strip_prefix('/')) {
            return Some(top(key).to_string());
        }
    }
    let path = path.trim_start_matches('/');
    let (b, key) = path.split_once('/').unwrap_or((path, ""));
    if decode(b) != bucket {
        return None;
    }
    if !key.is_empty() {
        return Some(top(&decode(key)).to_string());
    }
    let params: BTreeMap<String, String> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    // Only listings of the bucket take tokens; other bucket-level calls pass through.
    if !(params.contains_key("list-type") || params.contains_key("prefix") || params.contains_key("start-after")) {
        return None;
    }
    let at = params.get("start-after").filter(|s| !s.is_empty()).or_else(|| params.get("prefix")).cloned().unwrap_or_default();
    Some(top(&at).to_string())
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into()).map_err(|never| match never {}).boxed()
}

/// Headers that describe one connection, not the request, and are not forwarded.
const HOP_BY_HOP: [&str; 7] = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "host"];

async fn handle(
    shared: Arc<Shared>,
    client: Client<HttpConnector, Incoming>,
    upstream: hyper::Uri,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, std::convert::Infallible> {
    let copy_source = req.headers().get("x-amz-copy-source").and_then(|v| v.to_str().ok()).map(String::from);
    let prefix = prefix_of(&shared.config.bucket, req.uri().path(), req.uri().query(), copy_source.as_deref());
    if let Some(prefix) = &prefix {
        if !shared.admit(prefix, false) {
            let is_head = req.method() == hyper::Method::HEAD;
            let body = if is_head { full(Bytes::new()) } else { full(slow_down_body(req.uri().path())) };
            let mut resp = Response::new(body);
            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            resp.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/xml"));
            return Ok(resp);
        }
    }
    let (parts, body) = req.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri =
        format!("{}://{}{}", upstream.scheme_str().unwrap_or("http"), upstream.authority().map_or("", |a| a.as_str()), path_and_query);
    let mut out = Request::builder().method(parts.method.clone()).uri(uri).version(hyper::Version::HTTP_11);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            out = out.header(name, value);
        }
    }
    if let Some(a) = upstream.authority() {
        out = out.header("host", a.as_str());
    }
    let out = match out.body(body) {
        Ok(r) => r,
        Err(e) => return Ok(error_response(StatusCode::BAD_REQUEST, &format!("proxy could not rebuild the request: {e}"))),
    };
    match client.request(out).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            Ok(Response::from_parts(parts, body.boxed()))
        }
        Err(e) => Ok(error_response(StatusCode::BAD_GATEWAY, &format!("proxy could not reach the upstream: {e}"))),
    }
}

fn error_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(full(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code><Message>{}</Message></Error>",
        message.replace('&', "&amp;").replace('<', "&lt;")
    )));
    *resp.status_mut() = status;
    resp
}

/// How far the application's load task catches up after a stall of this process.
const APP_CATCH_UP: Duration = Duration::from_millis(100);

impl ThrottleProxy {
    /// Starts the proxy on a free loopback port, with its application-load task.
    pub async fn start(config: ProxyConfig) -> Result<Self> {
        let upstream: hyper::Uri = config.upstream.parse().with_context(|| format!("upstream {:?} is not a URL", config.upstream))?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.context("binding the proxy")?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let app_rps = config.app_rps.clone();
        let shared = Arc::new(Shared { config, buckets: Mutex::new(BTreeMap::new()) });
        let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build_http();
        let accept = {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let (shared, client, upstream) = (shared.clone(), client.clone(), upstream.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| handle(shared.clone(), client.clone(), upstream.clone(), req));
                        // A client that hangs up mid-request only ends its own connection.
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                    });
                }
            })
        };
        let app = {
            let shared = shared.clone();
            tokio::spawn(async move {
                // The application's requests arrive evenly: every tick, each prefix sends what its
                // rate owes since the start, so the long-run rate is exact whatever the tick jitter.
                // When this process is starved of CPU for longer than `APP_CATCH_UP` (a loaded CI
                // machine), the proxy served nobody in that time either, so what the application
                // would have sent then is dropped rather than sent as one burst that the bucket's
                // burst allowance refuses whatever the backup did.
                let start = Instant::now();
                let mut sent: BTreeMap<String, u64> = BTreeMap::new();
                let mut tick = tokio::time::interval(Duration::from_millis(5));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tick.tick().await;
                    let elapsed = start.elapsed().as_secs_f64();
                    for (prefix, rps) in &app_rps {
                        let due = (elapsed * rps) as u64;
                        let done = sent.entry(prefix.clone()).or_insert(0);
                        *done = (*done).max(due.saturating_sub((APP_CATCH_UP.as_secs_f64() * rps).ceil() as u64));
                        while *done < due {
                            shared.admit(prefix, true);
                            *done += 1;
                        }
                    }
                }
            })
        };
        Ok(ThrottleProxy { endpoint, shared, tasks: vec![accept, app] })
    }

    /// What each prefix saw so far, by prefix.
    pub fn stats(&self) -> BTreeMap<String, PrefixStats> {
        self.shared.buckets.lock().expect("proxy lock").iter().map(|(p, b)| (p.clone(), b.stats.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_the_prefix_s3_would_throttle() {
        let cases: [(&str, Option<&str>, Option<&str>, Option<&str>); 9] = [
            ("/src/hot/a.txt", None, None, Some("hot")),
            ("/src/hot%2Fb/c", None, None, Some("hot")),
            ("/src/root.txt", None, None, Some("")),
            ("/src", Some("list-type=2&prefix=cold%2F&start-after=cold%2Fx"), None, Some("cold")),
            ("/src", Some("list-type=2&prefix="), None, Some("")),
            ("/src", Some("versioning"), None, None),
            ("/vault/v1/x", None, None, None),
            ("/vault/v1/x", None, Some("src/hot/k?versionId=1"), Some("hot")),
            ("/vault/v1/x", None, Some("other/hot/k"), None),
        ];
        for (path, query, copy, want) in cases {
            assert_eq!(prefix_of("src", path, query, copy).as_deref(), want, "{path} {query:?} {copy:?}");
        }
    }

    #[test]
    fn an_empty_bucket_refuses_and_a_busy_prefix_splits() {
        let mut config = ProxyConfig::new("http://127.0.0.1:1", "src", 10.0);
        config.split_after = Duration::from_secs(2);
        let t0 = Instant::now();
        let mut b = Bucket::new(&config, t0);
        // The burst holds one second of the rate: ten requests pass, the eleventh is refused.
        let passed = (0..11).filter(|_| b.take(&config, t0)).count();
        assert_eq!(passed, 10);
        // Demand at the rate for more than the split delay doubles the rate.
        let mut now = t0;
        for _ in 0..40 {
            now += Duration::from_millis(100);
            b.take(&config, now);
        }
        assert_eq!(b.stats.splits, 1, "{:?}", b.stats);
        assert_eq!(b.rate, 20.0);
    }

    #[test]
    fn the_error_body_is_s3s() {
        let body = slow_down_body("/src/a&b");
        assert!(body.contains("<Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"));
        assert!(body.contains("/src/a&amp;b"));
    }
}
