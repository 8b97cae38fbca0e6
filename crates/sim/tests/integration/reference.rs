//! The reference-scale acceptance figures: 24.5 billion objects, 1,000 workers.
//!
//! tidemark must finish within 1.2 x the lower bound while the application sees 503s on at most
//! 0.1 % of its requests, and do strictly better on both than fixed concurrency with retries.

use tidemark_sim::{run_scenario_file, REFERENCE_CUSTOMER_DAYS, REFERENCE_OBJECTS};

use super::{policy, scenario};

#[test]
fn reference_scale_acceptance() {
    let started = std::time::Instant::now();
    let report = run_scenario_file(&scenario("reference.toml"), None).unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(report.objects, REFERENCE_OBJECTS);
    assert_eq!(report.workers, 1_000);
    eprintln!("reference simulated in {elapsed:.1} s; lower bound {:.0} s", report.lower_bound_s);
    for p in &report.policies {
        eprintln!(
            "{:>12}: makespan {:.0} s ({:.3} x bound, {:.2} days vs {} for the reference customer), app 503 {:.4} %, \
             backup 503 {:.0}, requests {:.0}, ${:.0}",
            p.policy.name(),
            p.makespan_s,
            p.ratio_to_lower_bound,
            p.projected_days,
            REFERENCE_CUSTOMER_DAYS,
            p.app_503_share * 100.0,
            p.backup_503,
            p.requests,
            p.cost_usd
        );
        assert!(p.finished, "{} did not finish", p.policy.name());
    }
    let tidemark = policy(&report, "tidemark");
    let fixed = policy(&report, "fixed");
    assert!(tidemark.ratio_to_lower_bound <= 1.2, "tidemark at {:.3} x the lower bound", tidemark.ratio_to_lower_bound);
    assert!(tidemark.app_503_share <= 0.001, "tidemark: application 503 share {}", tidemark.app_503_share);
    assert!(tidemark.makespan_s < fixed.makespan_s, "fixed finished first: {} < {}", fixed.makespan_s, tidemark.makespan_s);
    assert!(tidemark.app_503_share < fixed.app_503_share, "fixed hurt the application less");
    // The projection is the makespan itself at this scale.
    assert!((tidemark.projected_days - tidemark.makespan_s / 86_400.0).abs() < 1e-9);
}
