//! tidemark-aws.
