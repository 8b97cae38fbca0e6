//! A malformed scenario is a clear, permanent error that names the field at fault.

use std::path::PathBuf;

use tidemark_sim::{run_scenario_file, Scenario, SimError};

use super::scenario;

/// The small scenario with `from` replaced by `to` (which must occur exactly once).
fn broken(from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(scenario("small.toml")).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once in small.toml");
    text.replacen(from, to, 1)
}

#[test]
fn errors_name_the_field() {
    // (what is replaced, with what, the field the error must name)
    let cases: &[(&str, &str, &str)] = &[
        // A field of the wrong type.
        ("max_concurrency = 100", "max_concurrency = \"many\"", "fleet.max_concurrency"),
        // A misspelt field is unknown rather than silently defaulted.
        ("zipf_exponent = 1.2", "zipf_exponant = 1.2", "objects.zipf_exponant"),
        // A missing field.
        ("split_after_s = 600\n", "", "s3.split_after_s"),
        // A nested table of the engine's own configuration.
        ("beta = 0.7", "beta = \"soft\"", "policies.tidemark.controller.beta"),
        // Values that parse but are out of range.
        ("step_s = 1.0", "step_s = -1.0", "time.step_s"),
        ("peak_utilization = 0.6", "peak_utilization = 1.5", "app.peak_utilization"),
        ("max_partitions = 2", "max_partitions = 0", "s3.max_partitions"),
        ("backup_share = 1.0", "backup_share = 0.0", "policies.tidemark.controller"),
        ("renew_s = 20", "renew_s = 90", "policies.tidemark.renew_s"),
    ];
    for (from, to, field) in cases {
        let err = Scenario::from_toml_str(&broken(from, to), "case.toml").unwrap_err();
        assert_eq!(err.field(), Some(*field), "{from} -> {to}: {err}");
        let message = err.to_string();
        assert!(message.contains(field) && message.contains("case.toml"), "{message}");
        assert!(!err.is_transient(), "{message}");
    }
}

#[test]
fn syntax_errors_say_where() {
    let err = Scenario::from_toml_str(&broken("[fleet]", "[fleet"), "case.toml").unwrap_err();
    assert!(matches!(err, SimError::Parse { .. }), "{err}");
    assert!(err.to_string().contains("line "), "{err}");
}

#[test]
fn files_are_read_through_the_same_checks() {
    let dir = std::env::temp_dir().join(format!("tidemark-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, broken("task_objects = 20_000", "task_objects = 0")).unwrap();
    let err = run_scenario_file(&path, None).unwrap_err();
    assert_eq!(err.field(), Some("fleet.task_objects"));
    assert!(err.to_string().contains("bad.toml"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    // A missing file names the file, and is not a scenario error.
    let missing = PathBuf::from("/nonexistent/tidemark/scenario.toml");
    let err = run_scenario_file(&missing, None).unwrap_err();
    assert!(matches!(err, SimError::Read { .. }), "{err}");
    assert!(err.field().is_none());
    assert!(err.to_string().contains("/nonexistent/tidemark/scenario.toml"), "{err}");
}
