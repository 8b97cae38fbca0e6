//! Protecting a bucket: seed runs, their stepwise planning, and the workers that copy each task's partition.

pub mod lifecycle;
pub mod seed;
pub mod steps;
pub mod worker;
