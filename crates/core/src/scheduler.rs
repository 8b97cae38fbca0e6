//! Per-prefix adaptive rate control under S3 back-pressure (owned by the scheduler work, issue 4).
