//! The engine's behaviour tests through its public API, on the test kit's in-memory fakes: seeding
//! and the stepwise seeder, the worker under the scheduler, the scheduler's shared state, delta
//! semantics and the delta handlers' backlog records, reconciliation, the inventory reader and the listing planner, and the queue protocol.
//!
//! One test binary with a module per area (as `crates/sim` does). The conformance of the fakes
//! themselves is tested in `crates/testkit`; the adapters against the local stack in
//! `crates/aws`. Fixtures live under `tests/fixtures/`: `messages/` holds work-queue bodies as
//! each version of the code wrote them, `vault/` tiny vaults (packs, segments, points) likewise.

mod integration {
    mod backlog;
    mod config_table;
    mod deferral;
    mod delta_semantics;
    mod encryption;
    mod fidelity;
    mod inventory;
    mod lifecycle;
    mod listing_plan;
    mod pressure;
    mod protocol;
    mod rebuild;
    mod reconcile_inventory;
    mod restore_run;
    mod seed_fanout;
    mod support;
    mod tidy;
    mod upgrade;
    mod vault_fixtures;
    mod vault_verify;
}
