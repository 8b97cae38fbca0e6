//! Simulator of S3 partitions, application load, the Lambda fleet and scheduling policies (see issue 4).
