//! CSV reading (with type inference) and writing.

use std::collections::{HashMap, HashSet};

use crate::{format_f64, Column, Table, TableError};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Cells counted as missing when a column is inferred as a non-string type.
const NA_TOKENS: &[&str] = &["NA", "N/A", "n/a", "NULL", "null", "None", "<NA>", "#N/A"];

fn csv_err(e: csv::Error) -> TableError {
    let line = e.position().map(|p| p.line());
    match e.into_kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => TableError::RaggedRow {
            line: pos.map(|p| p.line()).or(line).unwrap_or(0),
            expected: usize::try_from(expected_len).unwrap_or(usize::MAX),
            got: usize::try_from(len).unwrap_or(usize::MAX),
        },
        other => {
            let msg = match other {
                csv::ErrorKind::Io(e) => e.to_string(),
                k => format!("{k:?}"),
            };
            match line {
                Some(l) => TableError::Csv(format!("line {l}: {msg}")),
                None => TableError::Csv(msg),
            }
        }
    }
}

pub(crate) fn read(bytes: &[u8], infer: bool, max_cells: u64) -> Result<Table, TableError> {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .from_reader(bytes);
    let mut records = rdr.byte_records();
    let header = match records.next() {
        None => return Err(TableError::EmptyCsv),
        Some(r) => r.map_err(csv_err)?,
    };
    let header_line = header.position().map_or(1, |p| p.line());
    let mut raw_names: Vec<String> = Vec::with_capacity(header.len());
    for (i, field) in header.iter().enumerate() {
        let base = std::str::from_utf8(field).map_err(|_| TableError::InvalidUtf8 {
            line: header_line,
            column: i + 1,
        })?;
        raw_names.push(base.to_string());
    }
    let names = unique_names(raw_names);
    let mut cells: Vec<Vec<Option<String>>> = vec![Vec::new(); names.len()];
    let n_cols = names.len() as u64;
    let mut n_rows: u64 = 0;
    for rec in records {
        let rec = rec.map_err(csv_err)?;
        n_rows += 1;
        if n_rows.saturating_mul(n_cols) > max_cells {
            return Err(TableError::TooManyCells {
                rows: n_rows,
                columns: n_cols,
                cap: max_cells,
            });
        }
        let line = rec.position().map_or(0, |p| p.line());
        if rec.len() != names.len() {
            // The parser already rejects ragged rows; kept as a guard for the zip below.
            return Err(TableError::RaggedRow {
                line,
                expected: names.len(),
                got: rec.len(),
            });
        }
        for (i, (field, col)) in rec.iter().zip(cells.iter_mut()).enumerate() {
            let s = std::str::from_utf8(field).map_err(|_| TableError::InvalidUtf8 {
                line,
                column: i + 1,
            })?;
            col.push(if s.is_empty() {
                None
            } else {
                Some(s.to_string())
            });
        }
    }
    let columns = names
        .into_iter()
        .zip(cells)
        .map(|(name, col)| {
            let col = if infer {
                infer_column(col)
            } else {
                Column::Str(col)
            };
            (name, col)
        })
        .collect();
    Table::from_columns(columns)
}

/// Header names made unique as pandas does: `base`, then `base.1`, `base.2`, ...
fn unique_names(raw: Vec<String>) -> Vec<String> {
    let mut taken: HashSet<String> = HashSet::with_capacity(raw.len());
    let mut next_suffix: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for base in raw {
        let name = if taken.contains(&base) {
            let mut k = next_suffix.get(&base).copied().unwrap_or(1);
            let mut cand = format!("{base}.{k}");
            while taken.contains(&cand) {
                k = k.saturating_add(1);
                cand = format!("{base}.{k}");
            }
            next_suffix.insert(base, k.saturating_add(1));
            cand
        } else {
            base
        };
        taken.insert(name.clone());
        out.push(name);
    }
    out
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "True" | "true" | "TRUE" => Some(true),
        "False" | "false" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Missing (`None`), an NA marker, or a trimmed cell to type-check.
enum Cell<'a> {
    Missing,
    Value(&'a str),
}

fn classify(c: &Option<String>) -> Cell<'_> {
    match c {
        None => Cell::Missing,
        Some(s) => {
            let t = s.trim_matches(|ch: char| ch.is_ascii_whitespace());
            if t.is_empty() || NA_TOKENS.contains(&t) {
                Cell::Missing
            } else {
                Cell::Value(t)
            }
        }
    }
}

fn all_values<F: Fn(&str) -> bool>(col: &[Option<String>], ok: F) -> bool {
    let mut any = false;
    for c in col {
        if let Cell::Value(t) = classify(c) {
            if !ok(t) {
                return false;
            }
            any = true;
        }
    }
    any
}

fn convert<T, F: Fn(&str) -> Option<T>>(col: &[Option<String>], parse: F) -> Vec<Option<T>> {
    col.iter()
        .map(|c| match classify(c) {
            Cell::Missing => None,
            Cell::Value(t) => parse(t),
        })
        .collect()
}

fn infer_column(col: Vec<Option<String>>) -> Column {
    if all_values(&col, |t| parse_bool(t).is_some()) {
        Column::Bool(convert(&col, parse_bool))
    } else if all_values(&col, |t| t.parse::<i64>().is_ok()) {
        Column::I64(convert(&col, |t| t.parse().ok()))
    } else if all_values(&col, |t| t.parse::<f64>().is_ok()) {
        Column::F64(convert(&col, |t| t.parse().ok()))
    } else {
        Column::Str(col)
    }
}

pub(crate) fn write(table: &Table) -> Result<Vec<u8>, TableError> {
    if table.n_columns() == 0 {
        return Ok(Vec::new());
    }
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(Vec::new());
    w.write_record(table.names()).map_err(csv_err)?;
    let cols: Vec<&Column> = table.columns().map(|(_, c)| c).collect();
    let mut row: Vec<String> = Vec::with_capacity(cols.len());
    for r in 0..table.n_rows() {
        row.clear();
        for c in &cols {
            row.push(cell_text(c, r));
        }
        w.write_record(&row).map_err(csv_err)?;
    }
    w.into_inner()
        .map_err(|e| TableError::Csv(e.error().to_string()))
}

fn cell_text(c: &Column, r: usize) -> String {
    match c {
        Column::Str(v) => v.get(r).cloned().flatten().unwrap_or_default(),
        Column::I64(v) => v
            .get(r)
            .copied()
            .flatten()
            .map(|x| x.to_string())
            .unwrap_or_default(),
        Column::F64(v) => v
            .get(r)
            .copied()
            .flatten()
            .and_then(format_f64)
            .unwrap_or_default(),
        Column::Bool(v) => match v.get(r).copied().flatten() {
            Some(true) => "True".to_string(),
            Some(false) => "False".to_string(),
            None => String::new(),
        },
    }
}
