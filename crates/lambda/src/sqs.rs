//! SQS glue: partial batch responses, so that only the messages that failed come back.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};

pub(crate) fn failure(id: &str) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id.to_string();
    f
}

pub(crate) fn response(failures: Vec<BatchItemFailure>) -> SqsBatchResponse {
    let mut r = SqsBatchResponse::default();
    r.batch_item_failures = failures;
    r
}
