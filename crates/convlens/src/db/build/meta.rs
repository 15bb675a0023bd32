//! The meta table: one row of strings per model name, joined to the models by name.

use crate::db::DbError;
use std::collections::BTreeMap;
use std::path::Path;

/// A meta table held as strings: column names and one row per model name.
pub struct MetaTable {
    /// Column names in file order.
    pub columns: Vec<String>,
    /// Rows by model name (first row wins on duplicates).
    pub rows: BTreeMap<String, Vec<String>>,
    /// Names that appear in more than one row.
    pub duplicate_names: Vec<String>,
}

impl MetaTable {
    /// Reads a meta CSV; `name_column` identifies models.
    pub fn read(path: &Path, name_column: &str) -> Result<MetaTable, DbError> {
        let t = convlens_table::Table::read_csv(path, false)
            .map_err(|e| DbError::Meta(e.to_string()))?;
        let columns: Vec<String> = t.names().map(str::to_string).collect();
        let name_idx = columns
            .iter()
            .position(|c| c == name_column)
            .ok_or_else(|| {
                DbError::Meta(format!(
                    "{}: no column {name_column:?} (columns: {}); choose one with --name-col",
                    path.display(),
                    columns.join(", ")
                ))
            })?;
        let cols: Vec<&[Option<String>]> = t
            .columns()
            .map(|(_, c)| c.as_str().unwrap_or(&[]))
            .collect();
        let mut rows = BTreeMap::new();
        let mut duplicate_names = Vec::new();
        for r in 0..t.n_rows() {
            let row: Vec<String> = cols
                .iter()
                .map(|c| c.get(r).cloned().flatten().unwrap_or_default())
                .collect();
            let name = row[name_idx].trim().to_string();
            if name.is_empty() {
                continue;
            }
            match rows.entry(name) {
                std::collections::btree_map::Entry::Occupied(e) => {
                    duplicate_names.push(e.key().clone())
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(row);
                }
            }
        }
        Ok(MetaTable {
            columns,
            rows,
            duplicate_names,
        })
    }
}
