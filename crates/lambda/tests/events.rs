//! Every console test event in `infra/events/` parses as the type its function takes: the
//! schedules' inputs, the SQS batches of the delta and restore queues (their bodies too), the
//! restore request, and the API Gateway proxy events of the api function (which reach the
//! router's routes, stage included). A file this test does not know fails it, so a new event
//! comes with its check.

use std::path::PathBuf;
use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use tidemark_core::changes::events::parse_change;
use tidemark_core::protocol::messages::{parse_restore_message, RestoreMessage};
use tidemark_core::restore::RestoreRequest;
use tidemark_lambda::{CheckpointRequest, ReconcileRequest};

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/events")
}

fn sqs_bodies(text: &str, queue: &str) -> Vec<String> {
    let batch: SqsEvent = serde_json::from_str(text).expect("an SQS batch");
    assert!(!batch.records.is_empty());
    batch
        .records
        .into_iter()
        .map(|r| {
            assert_eq!(r.event_source.as_deref(), Some("aws:sqs"));
            assert!(r.event_source_arn.as_deref().is_some_and(|a| a.ends_with(&format!(":{queue}"))), "{:?}", r.event_source_arn);
            assert!(r.message_id.is_some() && r.receipt_handle.is_some());
            r.body.expect("a body")
        })
        .collect()
}

/// The path and method the router sees for an API Gateway REST proxy event, and its answer on
/// an engine over the fakes (nothing is protected there, so the answers are the API's errors).
async fn through_the_router(text: &str) -> (String, String, u16, serde_json::Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = lambda_http::request::from_str(text).expect("an API Gateway proxy event");
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let s3 = Arc::new(tidemark_testkit::fakes::MemObjectStore::new());
    s3.create("vault", true);
    let engine = tidemark_testkit::fakes::mem_engine(s3.clone(), tidemark_core::config::EngineConfig::new("vault"));
    let app = tidemark_api::router(tidemark_api::ApiState::new(engine, Arc::new(tidemark_core::ports::SameStore(s3))));
    let (parts, body) = req.into_parts();
    let body: Vec<u8> = match body {
        lambda_http::Body::Empty => Vec::new(),
        lambda_http::Body::Text(t) => t.into_bytes(),
        lambda_http::Body::Binary(b) => b,
        _ => panic!("an unexpected body kind"),
    };
    let resp = app.oneshot(axum::http::Request::from_parts(parts, axum::body::Body::from(body))).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (method, path, status, serde_json::from_slice(&bytes).expect("a JSON answer"))
}

#[tokio::test]
async fn every_console_event_parses_as_its_functions_input() {
    let mut names: Vec<String> =
        std::fs::read_dir(events_dir()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert!(names.len() >= 8, "{names:?}");
    for name in &names {
        let text = std::fs::read_to_string(events_dir().join(name)).unwrap();
        match name.as_str() {
            "checkpoint-schedule.json" => {
                let r: CheckpointRequest = serde_json::from_str(&text).unwrap();
                assert!(!r.buckets.is_empty());
            }
            "reconcile.json" => {
                let r: ReconcileRequest = serde_json::from_str(&text).unwrap();
                assert_eq!(r.mode, "reconcile");
            }
            "delta-batch.json" => {
                for body in sqs_bodies(&text, "tidemark-delta") {
                    assert!(parse_change(&body).unwrap().is_some(), "an S3 change event: {body}");
                }
            }
            "restore-queue-batch.json" => {
                let kinds: Vec<&str> = sqs_bodies(&text, "tidemark-restore")
                    .iter()
                    .map(|b| match parse_restore_message(b).unwrap_or_else(|e| panic!("{b}: {e}")) {
                        RestoreMessage::Step(_) => "step",
                        RestoreMessage::Task(_) => "task",
                    })
                    .collect();
                assert_eq!(kinds, ["step", "task"], "a plan step and a restore task");
            }
            "restore-request.json" => {
                let r: RestoreRequest = serde_json::from_str(&text).unwrap();
                r.validate().unwrap();
                assert_eq!(tidemark_api::parse_request(text.as_bytes()).unwrap(), r, "the API reads it as the function does");
            }
            "restore-request.schema.json" => {
                // The schema describes exactly the fields the Rust type has.
                let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
                let mut documented: Vec<&str> = schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
                documented.sort();
                let mut full: RestoreRequest = serde_json::from_str(include_str!("../../../infra/events/restore-request.json")).unwrap();
                full.target_role_arn = Some("arn:aws:iam::111122223333:role/tidemark-restore-target".into());
                let value = serde_json::to_value(&full).unwrap();
                let mut fields: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
                fields.sort();
                assert_eq!(documented, fields);
            }
            "api-start-restore.json" => {
                let (method, path, status, answer) = through_the_router(&text).await;
                assert_eq!((method.as_str(), path.as_str()), ("POST", "/v1/restores"), "the stage is the path's first segment");
                assert_eq!((status, answer["field"].as_str()), (422, Some("source_bucket")), "{answer}");
            }
            "api-get-restore.json" => {
                let (method, path, status, answer) = through_the_router(&text).await;
                assert_eq!((method.as_str(), path.as_str()), ("GET", "/v1/restores/20261121T094012345Z-0f1e2d3c4b5a6978"));
                assert_eq!(status, 404, "{answer}");
                assert!(answer["error"].as_str().unwrap().contains("does not exist"), "{answer}");
            }
            "scrub-schedule.json" => {
                let r: tidemark_lambda::ScrubRequest = serde_json::from_str(&text).unwrap();
                assert_eq!(r.source.as_deref(), Some("acme-prod-data"), "a scrub of one source bucket (`{{}}` scrubs every one)");
            }
            other => panic!("infra/events/{other} has no parser in this test; add the type its function takes"),
        }
    }
}
