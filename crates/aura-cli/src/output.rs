//! Rendering of command results as a table, JSON or YAML.

use clap::ValueEnum;
use comfy_table::{Table, presets::NOTHING};
use serde::Serialize;

/// How a read command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Aligned columns for people.
    Table,
    /// Pretty JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Prints `value` in the chosen format; `table` builds the table form.
pub(crate) fn print<T: Serialize>(
    format: Output,
    value: &T,
    table: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    let text = match format {
        Output::Table => table(),
        Output::Json => serde_json::to_string_pretty(value)? + "\n",
        Output::Yaml => serde_saphyr::to_string(value)?,
    };
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(())
}

/// A borderless table with a header row.
pub(crate) fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_preset(NOTHING);
    if header.iter().any(|h| !h.is_empty()) {
        table.set_header(header.iter().map(|h| h.to_string()));
    }
    for row in rows {
        table.add_row(row);
    }
    let mut text = table
        .lines()
        .map(|l| l.trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    text.push('\n');
    text
}
