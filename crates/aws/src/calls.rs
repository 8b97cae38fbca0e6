//! Recording every AWS request the clients send, as the IAM action and resource it needs, so tests can check the deployed policies against what the code does.
//!
//! [`CallRecorder`] is an SDK interceptor: given to [`crate::ClientOptions::recorder`], every
//! client [`crate::AwsClients::load`] builds (S3, SQS, DynamoDB, EventBridge, CloudWatch, SNS) reports
//! each request just before it is sent, with the operation name the SDK knows it by and the
//! request's URI, headers and body. [`Call::permissions`] turns one request into the IAM actions
//! and resource ARNs it needs, following the S3, SQS and DynamoDB authorization references
//! (`HeadObject` needs `s3:GetObject`, `ListObjectsV2` needs `s3:ListBucket`, a request with a
//! `versionId` needs the `…Version` action, a copy needs `s3:GetObject` on its source, a
//! `TransactWriteItems` needs the action of each item). Requests are recorded whether or not they
//! succeed, because a denied request is exactly what a policy test must find.

use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// One request as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The SDK's service name (`s3`, `sqs`, `dynamodb`, …), lower-case.
    pub service: String,
    /// The operation (`GetObject`, `SendMessageBatch`, …).
    pub operation: String,
    /// The request URI (path-style for S3, as the local stack is addressed).
    pub uri: String,
    /// `x-amz-copy-source` (CopyObject, UploadPartCopy), URL-encoded as sent.
    pub copy_source: Option<String>,
    /// The body of JSON-protocol services (SQS, DynamoDB, …), and of query-protocol ones (SNS) as
    /// an object of their form fields; `None` for S3.
    pub body: Option<serde_json::Value>,
}

/// An IAM action and the resource ARN it is evaluated on (`*` where the action has no resource).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Permission {
    pub action: String,
    pub resource: String,
}

/// Records the requests of every client it is given to (cheap to clone: clones share the record).
#[derive(Debug, Clone, Default)]
pub struct CallRecorder {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl CallRecorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every request recorded so far, in the order sent.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Intercept for CallRecorder {
    fn name(&self) -> &'static str {
        "tidemark::CallRecorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = match cfg.load::<Metadata>() {
            Some(m) => (m.service().to_ascii_lowercase(), m.name().to_string()),
            None => ("unknown".to_string(), "unknown".to_string()),
        };
        let request = context.request();
        let form = request.headers().get("content-type").is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        let body = request.body().bytes().filter(|b| !b.is_empty()).and_then(|b| match b[0] {
            b'{' => serde_json::from_slice(b).ok(),
            // Query-protocol services (SNS) send their parameters as a form; the resource is one of them.
            _ if form => Some(form_fields(&String::from_utf8_lossy(b))),
            _ => None,
        });
        let call = Call {
            service,
            operation,
            uri: request.uri().to_string(),
            copy_source: request.headers().get("x-amz-copy-source").map(str::to_string),
            body,
        };
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(call);
        Ok(())
    }
}

/// The fields of a form body (`a=1&b=x%2Fy`) as a JSON object of strings.
fn form_fields(body: &str) -> serde_json::Value {
    let fields = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(&k.replace('+', " ")), serde_json::Value::String(decode(&v.replace('+', " ")))))
        .collect();
    serde_json::Value::Object(fields)
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The path and query of a URI.
fn path_and_query(uri: &str) -> (String, String) {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let rest = rest.find('/').map_or("/", |i| &rest[i..]);
    match rest.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (rest.to_string(), String::new()),
    }
}

fn has_param(query: &str, name: &str) -> bool {
    query.split('&').any(|kv| kv.split('=').next() == Some(name))
}

/// `arn:aws:sqs:<region>:<account>:<name>` of a queue URL (`https://host/<account>/<name>`).
fn queue_arn(url: &str, region: &str) -> String {
    let (path, _) = path_and_query(url);
    let mut parts = path.trim_matches('/').splitn(2, '/');
    let account = parts.next().unwrap_or_default();
    let name = parts.next().unwrap_or_default();
    format!("arn:aws:sqs:{region}:{account}:{name}")
}

impl Call {
    /// The IAM actions and resources this request needs, in `region` of `account`.
    pub fn permissions(&self, region: &str, account: &str) -> Vec<Permission> {
        let p = |action: &str, resource: String| Permission { action: action.to_string(), resource };
        let op = self.operation.as_str();
        match self.service.as_str() {
            "s3" => {
                let (path, query) = path_and_query(&self.uri);
                let path = path.trim_start_matches('/');
                let (bucket, key) = path.split_once('/').map_or((path.to_string(), None), |(b, k)| (b.to_string(), Some(decode(k))));
                let bucket_arn = format!("arn:aws:s3:::{bucket}");
                let object_arn = format!("{bucket_arn}/{}", key.clone().unwrap_or_default());
                let versioned = has_param(&query, "versionId");
                let v = |plain: &str, version: &str| if versioned { version.to_string() } else { plain.to_string() };
                let mut out = match op {
                    "GetObject" | "HeadObject" => vec![p(&v("s3:GetObject", "s3:GetObjectVersion"), object_arn)],
                    "GetObjectTagging" => vec![p(&v("s3:GetObjectTagging", "s3:GetObjectVersionTagging"), object_arn)],
                    "GetObjectAcl" => vec![p(&v("s3:GetObjectAcl", "s3:GetObjectVersionAcl"), object_arn)],
                    "PutObjectTagging" => vec![p(&v("s3:PutObjectTagging", "s3:PutObjectVersionTagging"), object_arn)],
                    "PutObjectAcl" => vec![p(&v("s3:PutObjectAcl", "s3:PutObjectVersionAcl"), object_arn)],
                    "DeleteObject" => vec![p(&v("s3:DeleteObject", "s3:DeleteObjectVersion"), object_arn)],
                    "PutObject" | "CreateMultipartUpload" | "UploadPart" | "CompleteMultipartUpload" | "CopyObject" | "UploadPartCopy" => {
                        vec![p("s3:PutObject", object_arn)]
                    }
                    "AbortMultipartUpload" => vec![p("s3:AbortMultipartUpload", object_arn)],
                    "ListParts" => vec![p("s3:ListMultipartUploadParts", object_arn)],
                    "RestoreObject" => vec![p("s3:RestoreObject", object_arn)],
                    // The keys are in the XML body; each needs s3:DeleteObject on itself.
                    "DeleteObjects" => vec![p("s3:DeleteObject", format!("{bucket_arn}/*"))],
                    "ListObjects" | "ListObjectsV2" | "HeadBucket" => vec![p("s3:ListBucket", bucket_arn)],
                    "ListObjectVersions" => vec![p("s3:ListBucketVersions", bucket_arn)],
                    "ListMultipartUploads" => vec![p("s3:ListBucketMultipartUploads", bucket_arn)],
                    "GetBucketNotificationConfiguration" => vec![p("s3:GetBucketNotification", bucket_arn)],
                    "PutBucketNotificationConfiguration" => vec![p("s3:PutBucketNotification", bucket_arn)],
                    "GetBucketOwnershipControls" => vec![p("s3:GetBucketOwnershipControls", bucket_arn)],
                    other => vec![p(&format!("s3:{other}"), bucket_arn)],
                };
                if let Some(source) = &self.copy_source {
                    let source = decode(source.trim_start_matches('/'));
                    let (source, version) = match source.split_once("?versionId=") {
                        Some((s, _)) => (s.to_string(), true),
                        None => (source, false),
                    };
                    out.push(p(if version { "s3:GetObjectVersion" } else { "s3:GetObject" }, format!("arn:aws:s3:::{source}")));
                }
                out
            }
            "sqs" => {
                let url = self.body.as_ref().and_then(|b| b["QueueUrl"].as_str()).unwrap_or_default();
                let action = match op {
                    "SendMessageBatch" => "SendMessage",
                    "DeleteMessageBatch" => "DeleteMessage",
                    "ChangeMessageVisibilityBatch" => "ChangeMessageVisibility",
                    other => other,
                };
                let resource = if url.is_empty() { "*".to_string() } else { queue_arn(url, region) };
                vec![p(&format!("sqs:{action}"), resource)]
            }
            "dynamodb" => {
                let table_arn = |t: &str| format!("arn:aws:dynamodb:{region}:{account}:table/{t}");
                let body = self.body.clone().unwrap_or_default();
                match op {
                    "TransactWriteItems" | "TransactGetItems" => body["TransactItems"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|item| item.as_object()?.iter().next().map(|(k, v)| (k.clone(), v.clone())))
                        .map(|(kind, v)| {
                            let action = match kind.as_str() {
                                "Put" => "dynamodb:PutItem",
                                "Update" => "dynamodb:UpdateItem",
                                "Delete" => "dynamodb:DeleteItem",
                                "Get" => "dynamodb:GetItem",
                                _ => "dynamodb:ConditionCheckItem",
                            };
                            p(action, table_arn(v["TableName"].as_str().unwrap_or_default()))
                        })
                        .collect(),
                    "BatchWriteItem" | "BatchGetItem" => body["RequestItems"]
                        .as_object()
                        .into_iter()
                        .flat_map(|m| m.keys())
                        .map(|t| p(&format!("dynamodb:{op}"), table_arn(t)))
                        .collect(),
                    _ => {
                        let table = body["TableName"].as_str().unwrap_or_default();
                        let resource = match body["IndexName"].as_str() {
                            Some(index) => format!("{}/index/{index}", table_arn(table)),
                            None => table_arn(table),
                        };
                        vec![p(&format!("dynamodb:{op}"), resource)]
                    }
                }
            }
            "cloudwatch" => vec![p(&format!("cloudwatch:{op}"), "*".to_string())],
            // A publish is authorised on its topic.
            "sns" => {
                let topic = self.body.as_ref().and_then(|b| b["TopicArn"].as_str()).unwrap_or("*");
                vec![p(&format!("sns:{op}"), topic.to_string())]
            }
            "eventbridge" | "events" => vec![p(&format!("events:{op}"), "*".to_string())],
            other => vec![p(&format!("{other}:{op}"), "*".to_string())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(op: &str, uri: &str, copy: Option<&str>) -> Call {
        Call { service: "s3".into(), operation: op.into(), uri: uri.into(), copy_source: copy.map(str::to_string), body: None }
    }

    #[test]
    fn s3_requests_need_the_actions_of_the_authorization_reference() {
        let perms = |c: Call| c.permissions("eu-west-1", "1").into_iter().map(|p| (p.action, p.resource)).collect::<Vec<_>>();
        assert_eq!(
            perms(s3("HeadObject", "http://127.0.0.1:5000/b/a%20b?versionId=3", None)),
            [("s3:GetObjectVersion".into(), "arn:aws:s3:::b/a b".into())]
        );
        assert_eq!(
            perms(s3("ListObjectsV2", "http://127.0.0.1:5000/b?list-type=2", None)),
            [("s3:ListBucket".into(), "arn:aws:s3:::b".into())]
        );
        assert_eq!(
            perms(s3("CopyObject", "http://h/vault/v1/x/objects/k", Some("src/k%2B?versionId=7"))),
            [
                ("s3:PutObject".into(), "arn:aws:s3:::vault/v1/x/objects/k".into()),
                ("s3:GetObjectVersion".into(), "arn:aws:s3:::src/k+".into())
            ]
        );
        let tx = Call {
            service: "dynamodb".into(),
            operation: "TransactWriteItems".into(),
            uri: "http://h/".into(),
            copy_source: None,
            body: Some(serde_json::json!({"TransactItems": [{"Put": {"TableName": "t"}}, {"ConditionCheck": {"TableName": "t"}}]})),
        };
        assert_eq!(
            perms(tx),
            [
                ("dynamodb:PutItem".into(), "arn:aws:dynamodb:eu-west-1:1:table/t".into()),
                ("dynamodb:ConditionCheckItem".into(), "arn:aws:dynamodb:eu-west-1:1:table/t".into())
            ]
        );
        let sqs = Call {
            service: "sqs".into(),
            operation: "DeleteMessageBatch".into(),
            uri: "http://h/".into(),
            copy_source: None,
            body: Some(serde_json::json!({"QueueUrl": "http://127.0.0.1:5000/123456789012/work"})),
        };
        assert_eq!(perms(sqs), [("sqs:DeleteMessage".into(), "arn:aws:sqs:eu-west-1:123456789012:work".into())]);
        let publish = Call {
            service: "sns".into(),
            operation: "Publish".into(),
            uri: "http://h/".into(),
            copy_source: None,
            body: Some(form_fields(
                "Action=Publish&TopicArn=arn%3Aaws%3Asns%3Aeu-west-1%3A1%3Aalarms&Subject=tidemark%3A+seed+task+failed",
            )),
        };
        assert_eq!(perms(publish), [("sns:Publish".into(), "arn:aws:sns:eu-west-1:1:alarms".into())]);
    }
}
