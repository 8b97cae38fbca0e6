//! The self-contained HTML report: a summary table and, per policy, inline SVG plots of throughput and of 503s per prefix over time.
//!
//! No scripts, no external styles or fonts: the file opens anywhere, including as an attachment.

use std::fmt::Write;

use crate::report::{PolicyReport, SimReport};

/// Colours for series, chosen to stay distinguishable in print.
const PALETTE: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"];

/// Renders the report as one HTML document with inline SVG plots.
pub fn render_html(report: &SimReport) -> String {
    let mut html = String::new();
    let title = format!("tidemark simulate: {}", report.scenario);
    let _ = writeln!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{}</style></head><body>",
        escape(&title),
        STYLE
    );
    let _ = writeln!(html, "<h1>{}</h1>", escape(&title));
    let _ = writeln!(
        html,
        "<p>{} objects in {} prefixes, at most {} workers, seed {}. Lower bound on the makespan: <b>{}</b> \
         (fleet concurrency alone: {}; slowest prefix alone: {}).</p>",
        group(report.objects),
        report.prefixes,
        report.workers,
        report.seed,
        duration(report.lower_bound_s),
        duration(report.lower_bound_fleet_only_s),
        duration(report.lower_bound_slowest_prefix_s),
    );
    summary_table(&mut html, report);
    let _ = writeln!(
        html,
        "<p>Projected days are the makespan scaled to 24.5 billion objects; the reference customer's initial \
         backup of 24.5 billion objects took {} days.</p>",
        report.reference_customer_days
    );
    html.push_str("<h2>Throughput, all policies</h2>\n");
    let series: Vec<Series> = report
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| Series {
            name: p.policy.name().to_string(),
            colour: PALETTE[i % PALETTE.len()],
            points: p.samples.iter().map(|s| (s.t_s / 3600.0, s.objects_per_s)).collect(),
        })
        .collect();
    html.push_str(&line_chart("Objects copied per second", "hours", "objects/s", &series));
    for policy in &report.policies {
        policy_section(&mut html, report, policy);
    }
    html.push_str("</body></html>\n");
    html
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}\
th{background:#f4f4f4}td:first-child{text-align:left}svg{display:block;margin:1em 0}\
.axis{stroke:#444;stroke-width:1}.grid{stroke:#e4e4e4;stroke-width:1}text{font-size:12px;fill:#333}";

fn summary_table(html: &mut String, report: &SimReport) {
    html.push_str(
        "<table><tr><th>policy</th><th>makespan</th><th>÷ lower bound</th><th>projected days (24.5 B)</th>\
         <th>app 503s</th><th>app 503 share</th><th>worst prefix</th><th>worst interval</th><th>backup 503s</th>\
         <th>requests</th><th>cost (USD)</th></tr>\n",
    );
    for p in &report.policies {
        let _ = writeln!(
            html,
            "<tr><td>{}{}</td><td>{}</td><td>{:.3}</td><td>{:.2}</td><td>{}</td><td>{:.4} %</td><td>{:.3} %</td>\
             <td>{:.3} %</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            p.policy.name(),
            if p.finished { "" } else { " (unfinished)" },
            duration(p.makespan_s),
            p.ratio_to_lower_bound,
            p.projected_days,
            group(p.app_503),
            p.app_503_share * 100.0,
            p.app_503_worst_prefix_share * 100.0,
            p.app_503_worst_interval_share * 100.0,
            group(p.backup_503),
            group(p.requests),
            group(p.cost_usd),
        );
    }
    html.push_str("</table>\n");
}

fn policy_section(html: &mut String, report: &SimReport, policy: &PolicyReport) {
    let _ = writeln!(html, "<h2>{}</h2>", escape(policy.policy.name()));
    let _ = writeln!(
        html,
        "<p>Makespan {} ({:.3} × the lower bound); the application saw {:.4} % of its requests answered 503; \
         the backup saw {} 503s; {} partition splits; {} deferrals, {} yields, {} cuts; cost ${} \
         (S3 GET {}, S3 PUT {}, Lambda {}, SQS {}, DynamoDB {}).</p>",
        duration(policy.makespan_s),
        policy.ratio_to_lower_bound,
        policy.app_503_share * 100.0,
        group(policy.backup_503),
        policy.splits,
        group(policy.deferrals),
        group(policy.yields),
        group(policy.cuts),
        group(policy.cost_usd),
        group(policy.cost_breakdown.s3_get),
        group(policy.cost_breakdown.s3_put),
        group(policy.cost_breakdown.lambda),
        group(policy.cost_breakdown.sqs),
        group(policy.cost_breakdown.dynamodb),
    );
    let hours = |s: &crate::engine::Sample| s.t_s / 3600.0;
    let throughput = [
        Series {
            name: "objects/s".into(),
            colour: PALETTE[0],
            points: policy.samples.iter().map(|s| (hours(s), s.objects_per_s)).collect(),
        },
        Series {
            name: "backup requests/s".into(),
            colour: PALETTE[7],
            points: policy.samples.iter().map(|s| (hours(s), s.backup_rps)).collect(),
        },
    ];
    html.push_str(&line_chart(&format!("{}: throughput", policy.policy.name()), "hours", "per second", &throughput));
    let names: Vec<String> = report.plotted_prefixes.iter().cloned().chain(std::iter::once("all other prefixes".to_string())).collect();
    let per_prefix = |pick: fn(&crate::engine::Sample) -> &Vec<f64>| -> Vec<Series> {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| Series {
                name: name.clone(),
                colour: PALETTE[i % PALETTE.len()],
                points: policy.samples.iter().map(|s| (hours(s), pick(s).get(i).copied().unwrap_or(0.0))).collect(),
            })
            .collect()
    };
    html.push_str(&line_chart(
        &format!("{}: 503s seen by the application, per prefix", policy.policy.name()),
        "hours",
        "503/s",
        &per_prefix(|s| &s.app_503_per_s),
    ));
    html.push_str(&line_chart(
        &format!("{}: 503s seen by the backup, per prefix", policy.policy.name()),
        "hours",
        "503/s",
        &per_prefix(|s| &s.backup_503_per_s),
    ));
}

/// One line of a chart.
struct Series {
    name: String,
    colour: &'static str,
    points: Vec<(f64, f64)>,
}

/// An SVG line chart with axes, a light grid and a legend.
fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    const W: f64 = 960.0;
    const H: f64 = 300.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 190.0;
    const TOP: f64 = 30.0;
    const BOTTOM: f64 = 40.0;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x_max = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(0.0, f64::max).max(1e-9);
    let y_max = nice_ceiling(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max));
    let x_of = |x: f64| LEFT + x / x_max * plot_w;
    let y_of = |y: f64| TOP + plot_h - y / y_max * plot_h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-label=\"{}\">",
        escape(title)
    );
    let _ = write!(svg, "<text x=\"{LEFT}\" y=\"18\" font-weight=\"bold\">{}</text>", escape(title));
    for i in 0..=4 {
        let y = y_max * f64::from(i) / 4.0;
        let py = y_of(y);
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            py + 4.0,
            short(y)
        );
        let x = x_max * f64::from(i) / 4.0;
        let px = x_of(x);
        let _ = write!(svg, "<text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>", TOP + plot_h + 16.0, short(x));
    }
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{:.1}\"/>\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>",
        TOP + plot_h,
        TOP + plot_h,
        LEFT + plot_w,
        TOP + plot_h
    );
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">{}</text>",
        LEFT + plot_w / 2.0,
        H - 6.0,
        escape(x_label),
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        if !s.points.is_empty() {
            let mut path = String::new();
            for (j, &(x, y)) in s.points.iter().enumerate() {
                let _ = write!(path, "{}{:.1},{:.1}", if j == 0 { "M" } else { " L" }, x_of(x), y_of(y));
            }
            let _ = write!(svg, "<path d=\"{path}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/>", s.colour);
        }
        let ly = TOP + 12.0 + 18.0 * i as f64;
        let lx = LEFT + plot_w + 12.0;
        let _ = write!(
            svg,
            "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{}\" stroke-width=\"3\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            lx + 18.0,
            s.colour,
            lx + 24.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A round number at or above `v`, so axes end on readable ticks.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= step * magnitude {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// A tick label: 1.2k, 3.5M, 0.25.
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A whole number with thousands separators.
fn group(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Seconds as days, hours and minutes.
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    let days = (s / 86_400.0).floor();
    let hours = ((s - days * 86_400.0) / 3600.0).floor();
    let minutes = ((s - days * 86_400.0 - hours * 3600.0) / 60.0).round();
    if days > 0.0 {
        format!("{days:.0} d {hours:.0} h {minutes:.0} min ({s:.0} s)")
    } else if hours > 0.0 {
        format!("{hours:.0} h {minutes:.0} min ({s:.0} s)")
    } else {
        format!("{s:.0} s")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_format_numbers_for_people() {
        assert_eq!(group(1_234_567.4), "1,234,567");
        assert_eq!(group(-999.0), "-999");
        assert_eq!(short(2_500.0), "2.5k");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(nice_ceiling(7.3), 10.0);
        assert_eq!(nice_ceiling(180.0), 200.0);
        assert_eq!(duration(90_061.0), "1 d 1 h 1 min (90061 s)");
        assert_eq!(escape("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
