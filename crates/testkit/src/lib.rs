//! tidemark-testkit.
