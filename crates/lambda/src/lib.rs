//! tidemark-lambda.
