//! The configuration table and the README agree: every variable the programs read is documented
//! with its default, and the README documents no variable the table does not have.

use std::collections::BTreeSet;

use tidemark_core::config::settings::Settings;

fn readme() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_readme_documents_every_variable_of_the_table_with_its_default() {
    let readme = readme();
    let mut documented = BTreeSet::new();
    for line in readme.lines().filter(|l| l.starts_with("| `TIDEMARK_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        documented.insert((cells[1].trim_matches('`').to_string(), cells[3].trim_matches('`').to_string()));
    }
    let table: BTreeSet<(String, String)> =
        Settings::table().into_iter().map(|s| (s.var.to_string(), s.default.unwrap_or_else(|| "—".into()))).collect();
    let missing: Vec<_> = table.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&table).collect();
    assert!(missing.is_empty(), "the README's configuration table lacks (variable, default): {missing:?}");
    assert!(extra.is_empty(), "the README documents (variable, default) the table does not have: {extra:?}");
}
