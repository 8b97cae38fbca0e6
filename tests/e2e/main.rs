//! End-to-end tests of the tidemark CLI on the local stack.
