//! The HTML report is self-contained and plots, per policy, throughput and 503s per prefix over time.

use tidemark_sim::{render_html, run_scenario_file};

use super::scenario;

#[test]
fn report_plots_every_policy_inline() {
    let report = run_scenario_file(&scenario("small.toml"), None).unwrap();
    let html = render_html(&report);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    // Self-contained: no scripts, nothing fetched.
    for forbidden in ["<script", "src=", "href=", "@import"] {
        assert!(!html.contains(forbidden), "the report contains {forbidden}");
    }
    // One throughput plot for all, then three plots per policy.
    assert_eq!(html.matches("<svg").count(), 1 + 3 * report.policies.len());
    for p in &report.policies {
        let name = p.policy.name();
        for title in ["throughput", "503s seen by the application, per prefix", "503s seen by the backup, per prefix"] {
            assert!(html.contains(&format!("{name}: {title}")), "no {title} plot for {name}");
        }
    }
    // Each plotted prefix has a line in the legends, and the lines have data.
    for prefix in &report.plotted_prefixes {
        assert!(html.contains(prefix.as_str()), "{prefix} is not in the legend");
    }
    assert!(html.matches("<path d=\"M").count() >= 3 * (report.plotted_prefixes.len() + 1));
}
