//! The router on the test kit's fakes: a restore started with `POST /v1/restores`, driven through
//! the restore queue, shows as done with `GET /v1/restores/{id}` and in the bucket's list, and
//! restores the source exactly; every bad request gets its 4xx with a JSON body naming what was
//! wrong, and changes nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tidemark_api::{router, ApiState};
use tidemark_core::changes::checkpoint::{self, Sealed};
use tidemark_core::config::EngineConfig;
use tidemark_core::engine::Engine;
use tidemark_core::plan::partition::PlanTargets;
use tidemark_core::ports::{list_all, Fetch, ObjectStore, PutOptions, SameStore};
use tidemark_core::protect::seed::{seed, PlanSource};
use tidemark_core::protocol::dispatch::{dispatch, Disposition};
use tidemark_core::protocol::local::drive_restore;
use tower::ServiceExt;

use tidemark_testkit::fakes::{mem_engine, MemObjectStore};

struct World {
    engine: Engine,
    s3: Arc<MemObjectStore>,
    point: DateTime<Utc>,
}

/// A protected bucket of 30 keys with one sealed recovery point.
async fn world() -> World {
    let s3 = Arc::new(MemObjectStore::new());
    s3.create("src", false);
    s3.create("vault", true);
    let mut config = EngineConfig::new("vault");
    config.restore_task_objects = 7;
    let engine = mem_engine(s3.clone(), config);
    for i in 0..30 {
        let body = Bytes::from(format!("object {i} ").repeat(i + 1));
        s3.put("src", &format!("{}/k{i:02}", ["a", "b", "c"][i % 3]), body, &PutOptions::default()).await.unwrap();
    }
    seed(&engine, "src", "", PlanSource::Listing(PlanTargets { objects: 10, ..Default::default() })).await.unwrap();
    loop {
        let msgs = engine.queue.receive("work", 10, 0, 30).await.unwrap();
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            assert!(matches!(dispatch(&engine, &m.id, &m.body, "worker").await, Disposition::Done));
            engine.queue.delete("work", &m.receipt).await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let now = Utc::now();
    let point = match checkpoint::seal(&engine, "src", now, now).await.unwrap() {
        Sealed::New(p) => p.time,
        other => panic!("expected a new point, got {other:?}"),
    };
    World { engine, s3, point }
}

fn api(w: &World) -> axum::Router {
    router(ApiState::new(w.engine.clone(), Arc::new(SameStore(w.s3.clone()))))
}

async fn call(app: &axum::Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value, axum::http::HeaderMap) {
    let req =
        Request::builder().method(method).uri(uri).header("content-type", "application/json").body(Body::from(body.to_string())).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{method} {uri}: body is not JSON ({e}): {bytes:?}"));
    (status, value, headers)
}

fn request(w: &World, target: &str) -> Value {
    json!({"source_bucket": "src", "as_of": w.point, "target_bucket": target})
}

#[tokio::test]
async fn a_restore_started_through_the_api_completes_and_shows_in_status_and_list() {
    let w = world().await;
    let app = api(&w);
    let (status, started, headers) = call(&app, "POST", "/v1/restores", &request(&w, "restored").to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let id = started["restore_id"].as_str().unwrap().to_string();
    assert_eq!(started["state"], "planning");
    assert_eq!(started["resumed"], false);
    assert_eq!(headers["location"], format!("/v1/restores/{id}").as_str());

    // Posting the same request again continues the same run instead of starting another.
    let (status, again, _) = call(&app, "POST", "/v1/restores", &request(&w, "restored").to_string()).await;
    assert_eq!((status, again["restore_id"].as_str(), again["resumed"].as_bool()), (StatusCode::ACCEPTED, Some(id.as_str()), Some(true)));

    let (status, planning, _) = call(&app, "GET", &format!("/v1/restores/{id}"), "").await;
    assert_eq!((status, planning["state"].as_str()), (StatusCode::OK, Some("planning")));

    let targets = Arc::new(SameStore(w.s3.clone()));
    let done = drive_restore(&w.engine, targets, &id, 2, "test", |_| {}).await.unwrap();
    let (status, shown, _) = call(&app, "GET", &format!("/v1/restores/{id}"), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, tidemark_api::status_json(&done), "the API shows what the CLI's status --json prints");
    assert_eq!((shown["state"].as_str(), shown["objects"].as_u64(), shown["failed"].as_u64()), (Some("done"), Some(30), Some(0)));
    assert_eq!(shown["verified"], 30);

    let want = list_all(w.s3.as_ref(), "src", "", None).await.unwrap().objects;
    let got = list_all(w.s3.as_ref(), "restored", "", None).await.unwrap().objects;
    assert_eq!(want.iter().map(|o| (&o.key, o.size)).collect::<Vec<_>>(), got.iter().map(|o| (&o.key, o.size)).collect::<Vec<_>>());
    for o in &want {
        let (Fetch::Found((_, a)), Fetch::Found((_, b))) =
            (w.s3.get("src", &o.key, None, None).await.unwrap(), w.s3.get("restored", &o.key, None, None).await.unwrap())
        else {
            panic!("{} is missing", o.key)
        };
        assert_eq!(a, b, "{}", o.key);
    }

    let (status, listed, _) = call(&app, "GET", "/v1/restores?source_bucket=src", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["source_bucket"], "src");
    assert_eq!(listed["restores"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["restores"][0]["restore_id"], id.as_str());
    assert_eq!(listed["restores"][0]["state"], "done");
}

#[tokio::test]
async fn bad_requests_are_4xx_naming_what_was_wrong_and_change_nothing() {
    let w = world().await;
    let app = api(&w);
    let post = |body: String| {
        let app = app.clone();
        async move { call(&app, "POST", "/v1/restores", &body).await }
    };

    let (status, e, _) = post("{\"source_bucket\": ".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["error"].as_str().unwrap().contains("not JSON"), "{e}");

    let mut bad_time = request(&w, "target-1");
    bad_time["as_of"] = json!("yesterday at 9");
    let (status, e, _) = post(bad_time.to_string()).await;
    assert_eq!((status, e["field"].as_str()), (StatusCode::BAD_REQUEST, Some("as_of")), "{e}");
    assert!(e["error"].as_str().unwrap().contains("'yesterday at 9' is not an RFC 3339 time"), "{e}");

    let mut unknown = request(&w, "target-2");
    unknown["source_bucket"] = json!("not-protected");
    let (status, e, _) = post(unknown.to_string()).await;
    assert_eq!((status, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("source_bucket")), "{e}");
    assert!(e["error"].as_str().unwrap().contains("s3://not-protected is not protected by vault vault"), "{e}");

    let mut late = request(&w, "target-3");
    late["as_of"] = json!("2099-01-01T00:00:00Z");
    let (status, e, _) = post(late.to_string()).await;
    assert_eq!((status, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("as_of")), "{e}");
    assert_eq!(e["latest_recovery_point"], json!(w.point), "{e}");
    assert!(e["error"].as_str().unwrap().contains("latest recoverable time is"), "{e}");

    let mut early = request(&w, "target-4");
    early["as_of"] = json!("2001-01-01T00:00:00Z");
    let (status, e, _) = post(early.to_string()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!((e["first_recovery_point"].clone(), e["latest_recovery_point"].clone()), (json!(w.point), json!(w.point)), "{e}");

    // A copy-mode target that holds foreign objects is refused, naming one of them.
    w.s3.create("busy", false);
    w.s3.put("busy", "keep-me", Bytes::from_static(b"x"), &PutOptions::default()).await.unwrap();
    let (status, e, _) = post(request(&w, "busy").to_string()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e["error"].as_str().unwrap().contains("keep-me"), "{e}");

    // A role this runner cannot assume is refused, naming it.
    let mut role = request(&w, "target-5");
    role["target_role_arn"] = json!("arn:aws:iam::111122223333:role/elsewhere");
    let (status, e, _) = post(role.to_string()).await;
    assert_eq!((status, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("target_role_arn")), "{e}");
    assert!(e["error"].as_str().unwrap().contains("arn:aws:iam::111122223333:role/elsewhere"), "{e}");

    for uri in ["/v1/restores/20260101T000000000Z-0123456789abcdef", "/v1/restores/not-an-id", "/v1/nothing-here"] {
        let (status, e, _) = call(&app, "GET", uri, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {e}");
        assert!(e["error"].is_string(), "{e}");
    }
    let (status, e, _) = call(&app, "GET", "/v1/restores", "").await;
    assert_eq!((status, e["field"].as_str()), (StatusCode::BAD_REQUEST, Some("source_bucket")), "{e}");
    let (status, e, _) = call(&app, "GET", "/v1/restores?source_bucket=Bad_Bucket", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    let (status, e, _) = call(&app, "GET", "/v1/restores?source_bucket=not-protected", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{e}");
    let (status, e, headers) = call(&app, "DELETE", "/v1/restores", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{e}");
    assert!(headers.get("allow").is_some_and(|a| a.to_str().unwrap().contains("POST")), "{headers:?}");

    // None of it started a run or wrote a target.
    let (_, listed, _) = call(&app, "GET", "/v1/restores?source_bucket=src", "").await;
    assert_eq!(listed["restores"], json!([]), "{listed}");
    for bucket in ["target-1", "target-2", "target-3", "target-4", "target-5"] {
        assert!(!w.s3.bucket_exists(bucket).await.unwrap(), "{bucket} was created");
    }
    assert_eq!(list_all(w.s3.as_ref(), "busy", "", None).await.unwrap().objects.len(), 1);
}
