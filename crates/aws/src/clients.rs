//! Building SDK clients once from typed options (endpoint, region, profile) and the standard credential chain.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};

/// Where and how to reach AWS (or the local stack).
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Endpoint for every service (`--endpoint-url` / `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    /// Endpoint for S3 only (`AWS_ENDPOINT_URL_S3`), e.g. SeaweedFS beside moto.
    pub s3_endpoint_url: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
}

/// The SDK clients tidemark uses.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub events: aws_sdk_eventbridge::Client,
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
        AwsClients {
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            sqs: aws_sdk_sqs::Client::new(&shared),
            dynamodb: aws_sdk_dynamodb::Client::new(&shared),
            events: aws_sdk_eventbridge::Client::new(&shared),
        }
    }
}
