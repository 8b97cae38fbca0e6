//! Integration tests of the simulator through its public API: determinism, the small scenario's invariants, scenario errors, the HTML report and the reference-scale acceptance figures.
//!
//! Scenarios are the repository's own files under `tests/scenarios/`; the malformed ones are
//! written to a temporary directory from the small one with one field broken.

mod integration {
    mod determinism;
    mod html;
    mod malformed;
    mod reference;
    mod small;

    use std::path::PathBuf;

    /// A scenario file of the repository.
    pub(crate) fn scenario(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/scenarios").join(name)
    }

    /// The report's entry for `name`.
    pub(crate) fn policy<'a>(report: &'a tidemark_sim::SimReport, name: &str) -> &'a tidemark_sim::PolicyReport {
        report.policies.iter().find(|p| p.policy.name() == name).unwrap_or_else(|| panic!("no policy {name} in the report"))
    }
}
