//! The conformance suites against the in-memory fakes: the fakes must behave like the real services.

use tidemark_core::ports::ObjectStore;
use tidemark_testkit::conformance;
use tidemark_testkit::fakes::{MemControlStore, MemObjectStore, MemQueue};

#[tokio::test]
async fn mem_object_store_conforms() {
    let s = MemObjectStore::new();
    s.create("plain", false);
    s.create("versioned", true);
    conformance::object_store(&s, "plain", "missing-bucket", Default::default()).await;
    conformance::versioned_object_store(&s, "versioned").await;
    assert!(s.bucket_exists("plain").await.unwrap());
    s.create("attrs", false);
    conformance::attributes(&s, "attrs", Default::default()).await;
    s.create("versions", true);
    conformance::versions(&s, "versions").await;
}

#[tokio::test]
async fn mem_queue_conforms() {
    conformance::queue(&MemQueue::new(), "q").await;
}

#[tokio::test]
async fn mem_control_store_conforms() {
    conformance::control_store(&MemControlStore::new(), "pk").await;
}

#[tokio::test]
async fn mem_keys_conform() {
    let k = tidemark_core::memory::MemKeys::new();
    let (key, other, disabled) = (k.create_key(), k.create_key(), k.create_key());
    k.set_enabled(&disabled, false);
    let missing = "arn:aws:kms:us-east-1:000000000000:key/00000000-0000-0000-0000-000000000000".to_string();
    conformance::key_service(&k, &conformance::TestKeys { key, other, disabled: Some(disabled), missing }).await;
}
