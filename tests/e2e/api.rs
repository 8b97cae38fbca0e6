//! The REST API end to end: `tidemark serve` on a loopback port over the local stack (moto,
//! started by each test), a restore started with `POST /v1/restores` and polled with `GET` until
//! done, the target compared object by object with the source; the API's errors; and
//! schemathesis run against the server with the repository's OpenAPI document.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tidemark_e2e::{s3, snapshot, tidemark, tidemark_bin, tidemark_json, LOCAL_STACK_ENV};
use tidemark_testkit::harness::{self, Server};
use tidemark_testkit::http::request;

/// Starts `tidemark serve` for `vault` on a free loopback port of the stack at `endpoint`.
fn serve(endpoint: &str, vault: &str) -> Result<Server> {
    let port = harness::free_port();
    let args: Vec<String> = ["serve", "--listen", &format!("127.0.0.1:{port}"), "--vault", &format!("s3://{vault}"), "--workers", "2"]
        .map(String::from)
        .to_vec();
    let mut env: Vec<(String, String)> = LOCAL_STACK_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    env.push(("AWS_ENDPOINT_URL".into(), endpoint.into()));
    env.push(("TIDEMARK_LOG".into(), "info".into()));
    harness::start_program(&tidemark_bin(), &args, &env, port, "/v1/restores?source_bucket=ready-check")
}

/// A protected, sealed bucket of `n` objects; returns its recovery point.
async fn protected(ep: &str, src: &str, vault: &str, n: usize) -> Result<String> {
    tidemark_json(ep, &[], &["init", "--local", "--vault", &format!("s3://{vault}"), "--json"])?;
    let c = s3(ep).await;
    c.create_bucket().bucket(src).send().await?;
    for o in tidemark_testkit::data::objects(5, n, 4, 0, 0) {
        let mut put = c.put_object().bucket(src).key(&o.key).body(o.body.clone().into()).content_type(&o.content_type);
        for (k, v) in &o.metadata {
            put = put.metadata(k, v);
        }
        put.send().await?;
    }
    let p =
        tidemark_json(ep, &[], &["protect", "--source", &format!("s3://{src}"), "--vault", &format!("s3://{vault}"), "--wait", "--json"])?;
    Ok(p["recovery_point"].as_str().context("protect sealed a recovery point")?.to_string())
}

async fn post(api: &Server, body: &Value) -> Result<(u16, Value)> {
    let r = request("POST", &format!("{}/v1/restores", api.endpoint), Some(&body.to_string())).await?;
    Ok((r.status, r.json()?))
}

async fn get(api: &Server, path: &str) -> Result<(u16, Value)> {
    let r = request("GET", &format!("{}{path}", api.endpoint), None).await?;
    Ok((r.status, r.json()?))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_through_the_api_matches_the_source_and_bad_requests_say_why() -> Result<()> {
    let moto = harness::start_moto()?;
    let ep = moto.endpoint.as_str();
    let (src, vault) = ("api-src", "api-vault");
    let point = protected(ep, src, vault, 120).await?;
    let api = serve(ep, vault)?;

    let req = json!({"source_bucket": src, "as_of": point, "target_bucket": "api-restored"});
    let started = Instant::now();
    let (status, body) = post(&api, &req).await?;
    assert_eq!(status, 202, "{body}\n{}", api.log_tail());
    let id = body["restore_id"].as_str().context("a restore id")?.to_string();
    let shown = loop {
        let (status, s) = get(&api, &format!("/v1/restores/{id}")).await?;
        assert_eq!(status, 200, "{s}");
        if matches!(s["state"].as_str(), Some("done" | "failed")) {
            break s;
        }
        if started.elapsed() > Duration::from_secs(180) {
            bail!("the restore did not finish in 180 s: {s}\n{}", api.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!("API restore of 120 objects: {:.1} s from POST to done", started.elapsed().as_secs_f64());
    assert_eq!(
        (shown["state"].as_str(), shown["objects"].as_u64(), shown["failed"].as_u64()),
        (Some("done"), Some(120), Some(0)),
        "{shown}"
    );
    assert_eq!(shown["verified"], 120, "{shown}");

    // The target holds exactly what the source held: every key, byte, content type and metadata.
    let c = s3(ep).await;
    let want = snapshot(&c, src, "").await?;
    let got = snapshot(&c, "api-restored", "").await?;
    assert_eq!(tidemark_e2e::diff(&want, &got), Vec::<String>::new());

    // The API's status is the CLI's `restore status --json`, key for key.
    let cli = tidemark_json(ep, &[], &["restore", "status", &id, "--vault", &format!("s3://{vault}"), "--json"])?;
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    assert_eq!(keys(&shown), keys(&cli));
    for k in ["restore_id", "state", "objects", "bytes", "verified", "failed", "recovery_point", "source", "target"] {
        assert_eq!(shown[k], cli[k], "{k}");
    }
    let (status, listed) = get(&api, &format!("/v1/restores?source_bucket={src}")).await?;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["restores"][0]["restore_id"], id.as_str(), "{listed}");

    // Bad requests: each a 4xx with a JSON body that names what was wrong.
    let r = request("POST", &format!("{}/v1/restores", api.endpoint), Some("{\"source_bucket\": \"api-src\",")).await?;
    assert_eq!(r.status, 400);
    assert!(r.json()?["error"].as_str().unwrap().contains("not JSON"));
    let (status, e) = post(&api, &json!({"source_bucket": src, "as_of": "09:40 yesterday", "target_bucket": "api-x"})).await?;
    assert_eq!((status, e["field"].as_str()), (400, Some("as_of")), "{e}");
    let (status, e) = post(&api, &json!({"source_bucket": "api-unknown", "as_of": point, "target_bucket": "api-x"})).await?;
    assert_eq!((status, e["field"].as_str()), (422, Some("source_bucket")), "{e}");
    assert!(e["error"].as_str().unwrap().contains("s3://api-unknown is not protected"), "{e}");
    let (status, e) = post(&api, &json!({"source_bucket": src, "as_of": "2099-01-01T00:00:00Z", "target_bucket": "api-x"})).await?;
    assert_eq!(status, 422, "{e}");
    assert!(e["error"].as_str().unwrap().contains("latest recoverable time is"), "{e}");
    let latest = chrono::DateTime::parse_from_rfc3339(e["latest_recovery_point"].as_str().context("the latest point is named")?)?;
    assert_eq!(latest, chrono::DateTime::parse_from_rfc3339(&point)?, "{e}");
    let (status, e) = get(&api, "/v1/restores/20260101T000000000Z-0000000000000000").await?;
    assert_eq!(status, 404, "{e}");
    assert!(e["error"].as_str().unwrap().contains("does not exist"), "{e}");
    assert!(!c.head_bucket().bucket("api-x").send().await.is_ok(), "no refused request created its target");

    // The server listens on loopback addresses only.
    let out = tidemark(ep, &[], &["serve", "--listen", "0.0.0.0:0", "--vault", &format!("s3://{vault}")])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is not a loopback address"), "{err}");
    Ok(())
}

/// Schemathesis (pinned in infra/api-requirements.txt) generates requests from `api/openapi.yaml`
/// and checks every answer: no 5xx, only documented statuses, headers and content types,
/// bodies that match the document's schemas, and every request the document calls invalid
/// refused. The document's example request names a protected bucket of this test with its
/// recovery point, so that the examples start a real restore whose status the stateful phase
/// then reads through the document's link.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_failure_against_tidemark_serve() -> Result<()> {
    let moto = harness::start_moto()?;
    let ep = moto.endpoint.as_str();
    let point = protected(ep, "acme-prod-data", "st-vault", 12).await?;
    let api = serve(ep, "st-vault")?;

    let document = std::fs::read_to_string(harness::repo_root().join("api/openapi.yaml"))?;
    let example_time = "\"2026-11-20T09:40:00Z\"";
    assert!(document.contains(example_time), "the document's example request changed; update this test");
    let dir = tempfile::tempdir()?;
    let schema = dir.path().join("openapi.yaml");
    std::fs::write(&schema, document.replace(example_time, &format!("\"{point}\"")))?;

    let checks = [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "unsupported_method",
    ]
    .join(",");
    let started = Instant::now();
    let out = std::process::Command::new(harness::api_venv_bin("schemathesis")?)
        .current_dir(dir.path())
        .args(["run", schema.to_str().unwrap(), "--url", &api.endpoint, "--checks", &checks, "--max-examples", "40", "--workers", "1"])
        .args(["--generation-database", "none", "--no-color", "--report", "ndjson", "--report-ndjson-path", "events.ndjson"])
        .output()
        .context("running schemathesis")?;
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("schemathesis ({:.0} s):\n{report}", started.elapsed().as_secs_f64());
    assert!(out.status.success(), "schemathesis found failures:\n{report}\nserver log:\n{}", api.log_tail());
    let events = std::fs::read_to_string(dir.path().join("events.ndjson"))?;
    // It tested all three operations, and the example request started a real restore.
    for op in ["POST /v1/restores", "GET /v1/restores/{restore_id}", "GET /v1/restores"] {
        assert!(events.contains(op), "schemathesis did not test {op}:\n{report}");
    }
    assert!(events.contains("\"status_code\":202"), "no generated request started a restore:\n{report}");
    let (_, listed) = get(&api, "/v1/restores?source_bucket=acme-prod-data").await?;
    assert!(!listed["restores"].as_array().context("a list")?.is_empty(), "the example request started no restore: {listed}");
    Ok(())
}
