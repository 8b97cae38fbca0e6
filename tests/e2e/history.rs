//! Run history end to end on moto: a seed run's and a restore run's steps are kept in the
//! control table and shown in order by `tidemark status --run ID --json`, and drawn by
//! `tidemark report --run ID --html FILE` (one bar per step, a throughput line).

use anyhow::Result;
use tidemark_e2e::tidemark_json;
use tidemark_testkit::harness;

fn check_steps(h: &serde_json::Value, kind: &str, names: &[&str]) {
    assert_eq!(h["kind"], kind, "{h}");
    let steps = h["steps"].as_array().expect("steps");
    assert!(!steps.is_empty(), "{h}");
    let mut last = String::new();
    for s in steps {
        for field in ["name", "state", "started_at", "ended_at", "input_digest", "input_ref", "log_id"] {
            assert!(s[field].is_string(), "{field} of {s}");
        }
        assert!(s["attempts"].as_u64() >= Some(1), "{s}");
        assert_eq!(s["state"], "done", "{s}");
        assert_eq!(s["input_digest"].as_str().unwrap().len(), 64, "{s}");
        let started = s["started_at"].as_str().unwrap().to_string();
        assert!(started >= last, "steps in the order they began: {h}");
        last = started;
    }
    for name in names {
        assert!(steps.iter().any(|s| s["name"] == *name), "a {name} step in {h}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_and_restore_runs_keep_their_steps_and_draw_them() -> Result<()> {
    let moto = harness::start_moto()?;
    let ep = moto.endpoint.as_str();
    let env: Vec<(&str, String)> = vec![("TIDEMARK_LATE_EVENT_SECONDS", "1".into()), ("TIDEMARK_TARGET_OBJECTS", "10".into())];
    tidemark_json(ep, &env, &["init", "--local", "--vault", "s3://h-vault", "--json"])?;
    super::fill(ep, "h-src", 40).await?;
    let p = tidemark_json(ep, &env, &["protect", "--source", "s3://h-src", "--vault", "s3://h-vault", "--wait", "--json"])?;
    let run = p["run_id"].as_str().unwrap().to_string();
    let h = tidemark_json(ep, &env, &["status", "--run", &run, "--vault", "s3://h-vault", "--json"])?;
    check_steps(&h, "seed", &["seed start", "seed task"]);
    assert_eq!(h["steps"][0]["name"], "seed start", "the start comes first: {h}");
    let objects: u64 = h["steps"].as_array().unwrap().iter().filter_map(|s| s["objects"].as_u64()).sum();
    assert_eq!(objects, p["objects"].as_u64().unwrap(), "the task steps count what the run captured: {h}");

    let point = p["recovery_point"].as_str().unwrap().to_string();
    let r = tidemark_json(
        ep,
        &env,
        &["restore", "--source", "s3://h-src", "--vault", "s3://h-vault", "--as-of", &point, "--to", "s3://h-restored", "--wait", "--json"],
    )?;
    let restore = r["restore_id"].as_str().unwrap().to_string();
    let rh = tidemark_json(ep, &env, &["status", "--run", &restore, "--vault", "s3://h-vault", "--json"])?;
    check_steps(&rh, "restore", &["restore start", "restore plan", "restore enqueue", "restore task", "restore finish"]);
    assert_eq!(rh["steps"][0]["name"], "restore start", "the start comes first: {rh}");

    let dir = tempfile::tempdir()?;
    let file = dir.path().join("run.html");
    let out = tidemark_e2e::tidemark(ep, &env, &["report", "--run", &run, "--vault", "s3://h-vault", "--html", file.to_str().unwrap()])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&file)?;
    assert!(html.contains("<svg id=\"timeline\"") && html.contains("<svg id=\"throughput\""), "{html}");
    assert_eq!(html.matches("<rect class=\"step done\"").count(), h["steps"].as_array().unwrap().len(), "one bar per step");
    let bad = tidemark_e2e::tidemark(ep, &env, &["status", "--run", "no-such-run", "--vault", "s3://h-vault"])?;
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("no seed run or restore run no-such-run"));
    Ok(())
}
