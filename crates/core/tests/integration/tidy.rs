//! Architecture invariants that the imports keep, checked on the source: `vault/` knows neither
//! the control store nor the engine context, `restore/` never reaches into `capture/`, the engine
//! depends on no AWS SDK and no Lambda crate, and every Rust file opens with a `//!` line.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&root().join(dir), &mut files);
    files.into_iter().map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap())).collect()
}

/// The lines of `text` outside its `#[cfg(test)]` module, where the imports that matter live.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().take_while(|l| !l.starts_with("#[cfg(test)]")).filter(|l| !l.trim_start().starts_with("//"))
}

fn check_no_reference(dir: &str, forbidden: &[&str], why: &str) {
    let mut offences = Vec::new();
    for (path, text) in sources(dir) {
        for line in code_lines(&text) {
            if let Some(f) = forbidden.iter().find(|f| line.contains(*f)) {
                offences.push(format!("{}: {f}: {}", path.display(), line.trim()));
            }
        }
    }
    assert!(offences.is_empty(), "{why}:\n{}", offences.join("\n"));
}

#[test]
fn the_vault_format_knows_neither_the_control_store_nor_the_engine() {
    check_no_reference(
        "crates/core/src/vault",
        &["crate::control", "crate::engine", "ControlStore", "Engine"],
        "vault/ must be readable with the vault bucket alone",
    );
}

#[test]
fn restore_never_reaches_into_the_capture_pipeline() {
    check_no_reference("crates/core/src/restore", &["crate::capture"], "restore/ reads the vault format, not the write pipeline");
}

#[test]
fn the_engine_depends_on_no_aws_sdk_and_no_lambda_crate() {
    let manifest = std::fs::read_to_string(root().join("crates/core/Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
    for line in deps.lines() {
        assert!(!line.starts_with("aws-") && !line.starts_with("lambda"), "tidemark-core must not depend on {line}");
    }
}

#[test]
fn every_rust_file_opens_with_a_module_doc_line() {
    let mut missing = Vec::new();
    for dir in ["crates", "tests"] {
        for (path, text) in sources(dir) {
            if !text.starts_with("//!") {
                missing.push(path.display().to_string());
            }
        }
    }
    assert!(missing.is_empty(), "files without a leading //! line:\n{}", missing.join("\n"));
}
