//! Choosing and grouping the models of a database: `--where COL=VAL`, `--by COL`, `--pairs`.

use super::{Db, DbError};
use std::collections::BTreeMap;
use std::path::Path;

/// A `COL=VAL` condition on the meta table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// Column.
    pub column: String,
    /// Value (compared after trimming; `true`/`false` case-insensitively).
    pub value: String,
}

impl std::str::FromStr for Condition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (c, v) = s
            .split_once('=')
            .ok_or_else(|| format!("invalid condition {s:?}: expected COLUMN=VALUE"))?;
        Ok(Condition {
            column: c.trim().to_string(),
            value: v.trim().to_string(),
        })
    }
}

/// Canonical form of a meta cell for comparisons and group labels.
pub fn canonical(v: &str) -> String {
    let t = v.trim();
    match t.to_ascii_lowercase().as_str() {
        "true" => "True".to_string(),
        "false" => "False".to_string(),
        _ => t.to_string(),
    }
}

/// A robust ↔ normal pairing (one row of the authors' `pairings.csv`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pair {
    /// The adversarially trained model.
    pub robust: String,
    /// Its normally trained twin.
    pub normal: String,
}

/// Reads a pairings table with `Robust` and `Normal` columns.
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>, DbError> {
    let t = convlens_table::Table::read_csv(path, false)
        .map_err(|e| DbError::Selection(e.to_string()))?;
    let col = |n: &str| {
        t.column(n).and_then(|c| c.as_str()).ok_or_else(|| {
            DbError::Selection(format!(
                "{}: pairings table needs columns `Robust` and `Normal` (has: {})",
                path.display(),
                t.names().collect::<Vec<_>>().join(", ")
            ))
        })
    };
    let (r, n) = (col("Robust")?, col("Normal")?);
    Ok(r.iter()
        .zip(n)
        .filter_map(|(a, b)| {
            Some(Pair {
                robust: a.clone()?.trim().to_string(),
                normal: b.clone()?.trim().to_string(),
            })
        })
        .collect())
}

/// The models an analysis uses, with the reasons others were left out.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Selection {
    /// Indices into `Db::models`, in name order.
    pub models: Vec<usize>,
    /// Pairs whose two models are both selected.
    pub pairs: Vec<Pair>,
    /// (model, reason) for every model of the database not selected, and for pairs that
    /// name models missing from the database.
    pub excluded: Vec<(String, String)>,
}

/// Selects models by conditions and (optionally) pairings.
pub fn select(
    db: &Db,
    conditions: &[Condition],
    pairs: Option<&[Pair]>,
) -> Result<Selection, DbError> {
    let cols = db.meta_columns();
    for c in conditions {
        if !cols.contains(&c.column) {
            return Err(DbError::Selection(format!(
                "--where {}: no such meta column (columns: {})",
                c.column,
                cols.join(", ")
            )));
        }
    }
    let mut models = Vec::new();
    let mut excluded = Vec::new();
    for (i, m) in db.models.iter().enumerate() {
        let failed = conditions
            .iter()
            .find(|c| m.meta(&c.column).map(canonical) != Some(canonical(&c.value)));
        if let Some(c) = failed {
            excluded.push((m.name.clone(), format!("{} is not {}", c.column, c.value)));
            continue;
        }
        models.push(i);
    }
    let mut kept_pairs = Vec::new();
    if let Some(pairs) = pairs {
        let selected: BTreeMap<&str, usize> = models
            .iter()
            .map(|&i| (db.models[i].name.as_str(), i))
            .collect();
        let mut in_pair = std::collections::BTreeSet::new();
        for p in pairs {
            let (a, b) = (
                selected.get(p.robust.as_str()),
                selected.get(p.normal.as_str()),
            );
            match (a, b) {
                (Some(&a), Some(&b)) => {
                    in_pair.insert(a);
                    in_pair.insert(b);
                    kept_pairs.push(p.clone());
                }
                _ => {
                    let missing: Vec<&str> = [&p.robust, &p.normal]
                        .into_iter()
                        .filter(|n| !selected.contains_key(n.as_str()))
                        .map(String::as_str)
                        .collect();
                    excluded.push((
                        format!("{} / {}", p.robust, p.normal),
                        format!(
                            "pair skipped: {} not selected or not in the database",
                            missing.join(", ")
                        ),
                    ));
                }
            }
        }
        models.retain(|i| {
            let keep = in_pair.contains(i);
            if !keep {
                excluded.push((db.models[*i].name.clone(), "not in a complete pair".into()));
            }
            keep
        });
    }
    Ok(Selection {
        models,
        pairs: kept_pairs,
        excluded,
    })
}

/// Groups of models: (label, model indices), sorted by label.
pub type Groups = Vec<(String, Vec<usize>)>;

/// Groups selected models by the value of a meta column. Models without a value are returned
/// separately (by name).
pub fn group_by(db: &Db, models: &[usize], column: &str) -> Result<(Groups, Vec<String>), DbError> {
    if column == "model" || column == "Name" && !db.meta_columns().iter().any(|c| c == "Name") {
        let groups = models
            .iter()
            .map(|&i| (db.models[i].name.clone(), vec![i]))
            .collect();
        return Ok((groups, Vec::new()));
    }
    if !db.meta_columns().iter().any(|c| c == column) {
        return Err(DbError::Selection(format!(
            "--by {column}: no such meta column (columns: {})",
            db.meta_columns().join(", ")
        )));
    }
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut missing = Vec::new();
    for &i in models {
        match db.models[i].meta(column) {
            Some(v) => groups.entry(canonical(v)).or_default().push(i),
            None => missing.push(db.models[i].name.clone()),
        }
    }
    Ok((groups.into_iter().collect(), missing))
}
