//! AWS adapters for the engine's ports (S3, SQS, DynamoDB, KMS) and the admin operations that set up
//! a vault and protect a bucket (Object Lock bucket, queues with dead-letter queues, control
//! table, EventBridge notifications and routing).
//!
//! Architecture invariant: this is the only crate (with the binaries) that depends on the AWS SDK.

pub mod admin;
pub mod calls;
pub mod clients;
pub mod dynamodb;
mod errors;
pub mod kms;
pub mod s3;
pub mod sns;
pub mod source;
pub mod sqs;
pub mod target;

pub use calls::{Call, CallRecorder, Permission};
pub use clients::{AwsClients, ClientOptions};
pub use dynamodb::DynamoControlStore;
pub use kms::KmsKeys;
pub use s3::S3Store;
pub use sns::SnsNotifier;
pub use source::{BucketAccounts, RoleSourceStore, RoleVaultStore, SourceRole, SourceSessions};
pub use sqs::SqsQueue;
pub use target::{RoleTargets, TargetRole};
