//! Streaming S3 Inventory reader (owned by the inventory work, issue 3).
