//! The small scenario's invariants: the JSON contract, the lower bound, accounting and the ordering of the policies.

use serde_json::Value;
use tidemark_sim::run_scenario_file;

use super::{policy, scenario};

#[test]
fn json_has_the_contract_keys() {
    let report = run_scenario_file(&scenario("small.toml"), None).unwrap();
    let json: Value = serde_json::to_value(&report).unwrap();
    assert!(json["lower_bound_s"].as_f64().unwrap() > 0.0);
    let policies = json["policies"].as_array().unwrap();
    let names: Vec<&str> = policies.iter().map(|p| p["policy"].as_str().unwrap()).collect();
    assert_eq!(names, ["tidemark", "fixed", "sdk-adaptive"]);
    for p in policies {
        for key in ["makespan_s", "app_503_share", "backup_503", "requests", "cost_usd"] {
            assert!(p[key].is_number(), "{} lacks {key}: {p}", p["policy"]);
        }
    }
    // The time series are for the HTML report and stay out of the JSON.
    assert!(policies[0].get("samples").is_none());
}

#[test]
fn the_lower_bound_and_the_accounting_hold_for_every_policy() {
    let report = run_scenario_file(&scenario("small.toml"), None).unwrap();
    // The combined bound is at least each of the simpler bounds it refines.
    assert!(report.lower_bound_s >= report.lower_bound_fleet_only_s);
    assert!(report.lower_bound_s >= report.lower_bound_slowest_prefix_s);
    for p in &report.policies {
        let name = p.policy.name();
        assert!(p.finished, "{name} did not finish");
        assert!((p.ratio_to_lower_bound - p.makespan_s / report.lower_bound_s).abs() < 1e-9);
        assert!(p.app_503 >= 0.0 && p.app_503 <= p.app_requests, "{name}");
        assert!((p.app_503_share - p.app_503 / p.app_requests).abs() < 1e-12, "{name}");
        assert!(p.app_503_worst_prefix_share >= p.app_503_share, "{name}");
        // Every object needs at least one request to the source.
        assert!(p.requests >= report.objects, "{name}: {} requests for {} objects", p.requests, report.objects);
        assert!(p.backup_503 >= 0.0 && p.backup_503 <= p.requests, "{name}");
        let c = &p.cost_breakdown;
        let sum = c.s3_get + c.s3_put + c.lambda + c.sqs + c.dynamodb;
        assert!(p.cost_usd > 0.0 && (p.cost_usd - sum).abs() < 1e-9 * sum.max(1.0), "{name}");
        assert!(!p.samples.is_empty(), "{name} has no time series");
        assert!(p.samples.windows(2).all(|w| w[0].t_s < w[1].t_s), "{name}: samples out of order");
    }
    // tidemark leaves the application its capacity, so it cannot beat a bound computed from the
    // capacity the application leaves free (fixed can, by taking the application's share).
    let tidemark = policy(&report, "tidemark");
    assert!(tidemark.makespan_s >= report.lower_bound_s * 0.999, "{} < {}", tidemark.makespan_s, report.lower_bound_s);
}

#[test]
fn tidemark_spares_the_application_and_finishes_first() {
    let report = run_scenario_file(&scenario("small.toml"), None).unwrap();
    let tidemark = policy(&report, "tidemark");
    let fixed = policy(&report, "fixed");
    let sdk = policy(&report, "sdk-adaptive");
    assert!(tidemark.ratio_to_lower_bound <= 1.2, "tidemark at {:.3} x the lower bound", tidemark.ratio_to_lower_bound);
    assert!(tidemark.app_503_share <= 0.001, "tidemark: application 503 share {}", tidemark.app_503_share);
    for other in [fixed, sdk] {
        let name = other.policy.name();
        assert!(tidemark.makespan_s < other.makespan_s, "{name} finished first");
        assert!(tidemark.app_503_share < other.app_503_share, "{name} hurt the application less");
    }
    // Only tidemark defers and yields; the others keep what they receive.
    assert!(tidemark.deferrals > 0.0 && tidemark.cuts > 0.0);
    assert_eq!(fixed.deferrals + fixed.yields + fixed.cuts, 0.0);
}
