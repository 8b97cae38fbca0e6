//! Building SDK clients once from typed options (endpoint, region, profile) and the standard credential chain.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};

/// A retry classifier that forbids the SDK from retrying `503 SlowDown` on the source bucket.
///
/// The per-prefix scheduler needs to see every throttle to cut the prefix's rate, and the SDK's
/// standard retries would hide them (and retry at once, against the same hot prefix, which is
/// what makes a fleet of clients collapse a partition). Setting `max_attempts(1)` instead would
/// also stop the SDK from retrying connection resets and 500s, which the scheduler has no use
/// for; forbidding only the throttle keeps those retries. Any classifier returning
/// `RetryForbidden` wins over the others, so the priority only needs to be valid.
#[derive(Debug, Clone, Copy)]
pub struct SurfaceThrottles;

impl aws_sdk_s3::config::retry::ClassifyRetry for SurfaceThrottles {
    fn classify_retry(&self, ctx: &aws_sdk_s3::config::interceptors::InterceptorContext) -> aws_sdk_s3::config::retry::RetryAction {
        match ctx.response() {
            Some(r) if r.status().as_u16() == 503 => aws_sdk_s3::config::retry::RetryAction::RetryForbidden,
            _ => aws_sdk_s3::config::retry::RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "tidemark::SurfaceThrottles"
    }
}

/// Where and how to reach AWS (or the local stack).
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Endpoint for every service (`--endpoint-url` / `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    /// Endpoint for S3 only (`AWS_ENDPOINT_URL_S3`), e.g. SeaweedFS beside moto.
    pub s3_endpoint_url: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Records every request the clients send (tests check the IAM policies against it).
    pub recorder: Option<crate::calls::CallRecorder>,
}

impl ClientOptions {
    /// Every service at the local stack's `endpoint` (moto on 127.0.0.1), in us-east-1.
    pub fn local(endpoint: &str) -> Self {
        ClientOptions { endpoint_url: Some(endpoint.into()), region: Some("us-east-1".into()), ..Default::default() }
    }
}

/// The SDK clients tidemark uses.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    /// S3 for reads of the source bucket: the same configuration as `s3`, except that a
    /// `503 SlowDown` is never retried inside the SDK (see [`SurfaceThrottles`]).
    pub s3_source: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// SNS, for the alert function's publishes (`crate::SnsNotifier::new`).
    pub sns: aws_sdk_sns::Client,
    /// KMS, for the vault's data keys (`crate::KmsKeys`).
    pub kms: aws_sdk_kms::Client,
    /// The loaded configuration (credentials, region, endpoint) the clients were built from; the
    /// source-account sessions call STS with it (see [`crate::source`]).
    pub shared: aws_config::SdkConfig,
}

fn is_local(url: &str) -> bool {
    let rest = url.trim_start_matches("http://").trim_start_matches("https://");
    rest.starts_with("127.") || rest.starts_with("localhost") || rest.starts_with("[::1]")
}

impl AwsClients {
    /// Loads configuration the standard way. Against a loopback endpoint with no credentials
    /// configured, static test credentials are used, as the local stack accepts any.
    pub async fn load(opts: &ClientOptions) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(RetryConfig::standard().with_max_attempts(5));
        let region = opts.region.clone().or_else(|| std::env::var("AWS_REGION").ok()).or_else(|| std::env::var("AWS_DEFAULT_REGION").ok());
        let local = opts.endpoint_url.as_deref().is_some_and(is_local) || opts.s3_endpoint_url.as_deref().is_some_and(is_local);
        match region {
            Some(r) => loader = loader.region(Region::new(r)),
            None if local => loader = loader.region(Region::new("us-east-1")),
            None => {}
        }
        if let Some(p) = &opts.profile {
            loader = loader.profile_name(p);
        }
        if let Some(e) = &opts.endpoint_url {
            loader = loader.endpoint_url(e);
        }
        if local && std::env::var("AWS_ACCESS_KEY_ID").is_err() && opts.profile.is_none() {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "tidemark-local"));
        }
        let shared = loader.load().await;
        let mut s3 = aws_sdk_s3::config::Builder::from(&shared);
        if let Some(e) = &opts.s3_endpoint_url {
            s3 = s3.endpoint_url(e);
        }
        if opts.endpoint_url.is_some() || opts.s3_endpoint_url.is_some() {
            s3 = s3.force_path_style(true);
        }
        let mut sqs = aws_sdk_sqs::config::Builder::from(&shared);
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(&shared);
        let mut events = aws_sdk_eventbridge::config::Builder::from(&shared);
        let mut cloudwatch = aws_sdk_cloudwatch::config::Builder::from(&shared);
        let mut sns = aws_sdk_sns::config::Builder::from(&shared);
        let mut kms = aws_sdk_kms::config::Builder::from(&shared);
        if let Some(r) = &opts.recorder {
            s3 = s3.interceptor(r.clone());
            sqs = sqs.interceptor(r.clone());
            dynamodb = dynamodb.interceptor(r.clone());
            events = events.interceptor(r.clone());
            cloudwatch = cloudwatch.interceptor(r.clone());
            sns = sns.interceptor(r.clone());
            kms = kms.interceptor(r.clone());
        }
        let s3_source = s3.clone().retry_classifier(SurfaceThrottles);
        AwsClients {
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            s3_source: aws_sdk_s3::Client::from_conf(s3_source.build()),
            sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            events: aws_sdk_eventbridge::Client::from_conf(events.build()),
            cloudwatch: aws_sdk_cloudwatch::Client::from_conf(cloudwatch.build()),
            sns: aws_sdk_sns::Client::from_conf(sns.build()),
            kms: aws_sdk_kms::Client::from_conf(kms.build()),
            shared,
        }
    }
}
