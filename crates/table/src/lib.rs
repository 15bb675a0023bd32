//! Tabular I/O for convlens: the layer / model tables of the filter database, analysis outputs and
//! users' meta tables, as CSV, Parquet and JSON files that pandas and polars load in one line
//! (`pd.read_parquet`, `pd.read_csv`, `pl.read_parquet`, `pd.read_json`).
//!
//! A [`Table`] is an ordered list of uniquely named, equally long, nullable [`Column`]s of four
//! types: strings, 64-bit integers, doubles and booleans.
//!
//! Formats in short (details on each method):
//! - CSV: RFC 4180, header row, `None`/NaN as an empty cell, booleans as `True`/`False`, floats in
//!   their shortest round-trip form with Python's `repr` conventions (`2.0`, `1e+16`, `inf`).
//! - Parquet: one row group per [`ROW_GROUP_ROWS`] rows, snappy compression, all columns
//!   `OPTIONAL` with `BYTE_ARRAY (String)`, `INT64`, `DOUBLE` or `BOOLEAN` physical types,
//!   `created_by` = [`CREATED_BY`]; bytes are a pure function of the table.
//! - JSON: `[{"col": value, ...}, ...]`, one record per line, `None`/NaN/±inf as `null`.
//!
//! pandas' default NumPy dtypes turn an integer column with missing values into `float64` and a
//! boolean one into `object`; `pd.read_parquet(p, dtype_backend="numpy_nullable")` (or
//! `pd.read_csv(...)` with the same argument) gives exact `Int64`/`boolean` columns. polars reads
//! every type exactly.

mod csv_io;
mod json_io;
mod parquet_io;

use std::fs;
use std::path::{Path, PathBuf};

/// Rows per Parquet row group written by [`Table::write_parquet`].
pub const ROW_GROUP_ROWS: usize = 1 << 20;
/// Largest file [`Table::read_csv`] / [`Table::read_parquet`] accept, in bytes.
pub const MAX_FILE_BYTES: u64 = 4 << 30;
/// Largest number of cells (rows × columns) a table read from a file may have. Caps memory
/// independently of the file size: Parquet's run-length encoding lets a tiny file claim billions
/// of null cells, and each one-byte empty CSV cell costs a 24-byte slot.
pub const MAX_CELLS: u64 = 1 << 28;
/// The `created_by` string stored in every Parquet footer written by this crate.
pub const CREATED_BY: &str = "convlens";

/// Errors of this crate. Functions that take a path wrap the cause in [`TableError::File`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// An error that occurred while reading or writing a file.
    #[error("{}: {error}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: Box<TableError>,
    },
    /// The operating system refused a read or write.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The input is larger than the named cap.
    #[error("{what} is {size} bytes, larger than the cap of {cap} bytes")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// A column's length differs from the table's row count.
    #[error("column '{name}' has {got} rows but the table has {expected}")]
    LengthMismatch {
        /// Column name.
        name: String,
        /// The table's row count.
        expected: usize,
        /// The column's length.
        got: usize,
    },
    /// A column name is used twice.
    #[error("duplicate column name '{0}'")]
    DuplicateColumn(String),
    /// A required column is absent.
    #[error("missing column '{name}' (columns: {available})")]
    MissingColumn {
        /// The requested name.
        name: String,
        /// The names present, comma separated.
        available: String,
    },
    /// A column exists but has another type than required.
    #[error("column '{name}' is {got}, expected {expected}")]
    WrongType {
        /// Column name.
        name: String,
        /// The required type.
        expected: &'static str,
        /// The actual type.
        got: &'static str,
    },
    /// A CSV input has no header row.
    #[error("empty CSV: no header row")]
    EmptyCsv,
    /// A CSV record has a different number of fields than the header.
    #[error("ragged CSV row at line {line}: {got} fields, the header has {expected}")]
    RaggedRow {
        /// 1-based line on which the record starts.
        line: u64,
        /// Fields in the header.
        expected: usize,
        /// Fields in this record.
        got: usize,
    },
    /// A CSV field is not UTF-8.
    #[error("CSV line {line}, column {column}: not valid UTF-8")]
    InvalidUtf8 {
        /// 1-based line on which the record starts.
        line: u64,
        /// 1-based field index.
        column: usize,
    },
    /// Any other CSV syntax or I/O error reported by the CSV parser.
    #[error("malformed CSV: {0}")]
    Csv(String),
    /// The bytes are not a readable Parquet file (bad magic, corrupt footer or pages, ...).
    #[error("unreadable Parquet: {0}")]
    Parquet(String),
    /// A Parquet column has a type or structure this crate does not map to a [`Column`].
    #[error("Parquet column '{column}': unsupported {what}")]
    UnsupportedParquet {
        /// Column path.
        column: String,
        /// The unsupported feature.
        what: String,
    },
    /// A file holds or declares more cells than [`MAX_CELLS`].
    #[error("table of {rows} rows × {columns} columns exceeds the cap of {cap} cells")]
    TooManyCells {
        /// Rows (declared, or read so far).
        rows: u64,
        /// Columns.
        columns: u64,
        /// The cap.
        cap: u64,
    },
}

impl TableError {
    /// The underlying error, without the file wrapper.
    pub fn kind(&self) -> &TableError {
        match self {
            TableError::File { error, .. } => error.kind(),
            other => other,
        }
    }

    fn in_file(self, path: &Path) -> TableError {
        TableError::File {
            path: path.to_path_buf(),
            error: Box::new(self),
        }
    }
}

/// One nullable column.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// UTF-8 strings.
    Str(Vec<Option<String>>),
    /// Signed 64-bit integers.
    I64(Vec<Option<i64>>),
    /// Doubles; `Some(NaN)` is a value, `None` is missing.
    F64(Vec<Option<f64>>),
    /// Booleans.
    Bool(Vec<Option<bool>>),
}

impl Column {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Column::Str(v) => v.len(),
            Column::I64(v) => v.len(),
            Column::F64(v) => v.len(),
            Column::Bool(v) => v.len(),
        }
    }

    /// True when the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The type's name: `"str"`, `"i64"`, `"f64"` or `"bool"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Column::Str(_) => "str",
            Column::I64(_) => "i64",
            Column::F64(_) => "f64",
            Column::Bool(_) => "bool",
        }
    }

    /// The strings, if this is a `Str` column.
    pub fn as_str(&self) -> Option<&[Option<String>]> {
        match self {
            Column::Str(v) => Some(v),
            _ => None,
        }
    }

    /// The integers, if this is an `I64` column.
    pub fn as_i64(&self) -> Option<&[Option<i64>]> {
        match self {
            Column::I64(v) => Some(v),
            _ => None,
        }
    }

    /// The doubles, if this is an `F64` column.
    pub fn as_f64(&self) -> Option<&[Option<f64>]> {
        match self {
            Column::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The booleans, if this is a `Bool` column.
    pub fn as_bool(&self) -> Option<&[Option<bool>]> {
        match self {
            Column::Bool(v) => Some(v),
            _ => None,
        }
    }
}

/// Ordered, uniquely named columns of equal length.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    columns: Vec<(String, Column)>,
}

impl Table {
    /// An empty table (no columns, no rows).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a column; fails if the name is taken or the length differs from the other columns'.
    pub fn push_column(&mut self, name: &str, col: Column) -> Result<(), TableError> {
        if self.columns.iter().any(|(n, _)| n == name) {
            return Err(TableError::DuplicateColumn(name.to_string()));
        }
        if let Some((_, first)) = self.columns.first() {
            if first.len() != col.len() {
                return Err(TableError::LengthMismatch {
                    name: name.to_string(),
                    expected: first.len(),
                    got: col.len(),
                });
            }
        }
        self.columns.push((name.to_string(), col));
        Ok(())
    }

    /// Builds a table from named columns, checking names and lengths in linear time.
    pub(crate) fn from_columns(columns: Vec<(String, Column)>) -> Result<Table, TableError> {
        let mut seen = std::collections::HashSet::with_capacity(columns.len());
        let rows = columns.first().map_or(0, |(_, c)| c.len());
        for (name, col) in &columns {
            if !seen.insert(name.as_str()) {
                return Err(TableError::DuplicateColumn(name.clone()));
            }
            if col.len() != rows {
                return Err(TableError::LengthMismatch {
                    name: name.clone(),
                    expected: rows,
                    got: col.len(),
                });
            }
        }
        Ok(Table { columns })
    }

    /// Number of rows (0 for a table without columns).
    pub fn n_rows(&self) -> usize {
        self.columns.first().map_or(0, |(_, c)| c.len())
    }

    /// Number of columns.
    pub fn n_columns(&self) -> usize {
        self.columns.len()
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// The column called `name`, or an error listing the columns present.
    pub fn require(&self, name: &str) -> Result<&Column, TableError> {
        self.column(name).ok_or_else(|| TableError::MissingColumn {
            name: name.to_string(),
            available: self.names().collect::<Vec<_>>().join(", "),
        })
    }

    /// Column names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|(n, _)| n.as_str())
    }

    /// `(name, column)` pairs in order.
    pub fn columns(&self) -> impl Iterator<Item = (&str, &Column)> {
        self.columns.iter().map(|(n, c)| (n.as_str(), c))
    }

    /// The table as CSV bytes; see [`Table::write_csv`].
    pub fn to_csv_bytes(&self) -> Result<Vec<u8>, TableError> {
        csv_io::write(self)
    }

    /// Writes RFC 4180 CSV (`,` separator, `\n` line ends, fields quoted only when needed) with a
    /// header row. Missing values and NaN become empty cells (so do empty strings: CSV cannot tell
    /// them apart); booleans are `True`/`False` (as pandas writes them); integers are decimal;
    /// floats use the shortest text that parses back to the same double, in Python `repr` style
    /// (`2.0`, `0.1`, `1e+16`, `1.5e-05`, `inf`, `-inf`). A table without columns writes an
    /// empty file.
    pub fn write_csv(&self, path: &Path) -> Result<(), TableError> {
        let bytes = self.to_csv_bytes().map_err(|e| e.in_file(path))?;
        fs::write(path, bytes).map_err(|e| TableError::Io(e).in_file(path))
    }

    /// Parses CSV bytes; see [`Table::read_csv`].
    pub fn from_csv_bytes(bytes: &[u8], infer: bool) -> Result<Table, TableError> {
        csv_io::read(bytes, infer, MAX_CELLS)
    }

    /// Reads a CSV file with a header row (RFC 4180 quoting, `\n` or `\r\n` line ends, an optional
    /// UTF-8 BOM, blank lines skipped). Every record must have as many fields as the header.
    /// Repeated header names are renamed as pandas does (`X`, `X.1`, `X.2`, ...). Empty cells
    /// are `None` in every column type. At most [`MAX_CELLS`] cells.
    ///
    /// With `infer = false` every column is `Str`. With `infer = true` each column gets the
    /// first type that fits all its non-empty cells (cells trimmed of ASCII whitespace for this
    /// test; the NA markers `NA`, `N/A`, `n/a`, `NULL`, `null`, `None`, `<NA>`, `#N/A` count as
    /// missing in non-`Str` columns):
    /// `Bool` (`True`/`False`/`true`/`false`/`TRUE`/`FALSE`), then `I64`, then `F64` (any Rust
    /// float literal, including `nan`, `inf`, `-inf`, `1e-5`), else `Str` with the cells
    /// verbatim. A column with no typed value (all empty or all NA markers) is `Str`.
    pub fn read_csv(path: &Path, infer: bool) -> Result<Table, TableError> {
        let bytes = read_capped(path)?;
        Self::from_csv_bytes(&bytes, infer).map_err(|e| e.in_file(path))
    }

    /// The table as Parquet bytes; see [`Table::write_parquet`].
    pub fn to_parquet_bytes(&self) -> Result<Vec<u8>, TableError> {
        parquet_io::write(self)
    }

    /// Writes a Parquet file: flat schema, every column `OPTIONAL`; `Str` → `BYTE_ARRAY` annotated
    /// `String`/`UTF8`, `I64` → `INT64`, `F64` → `DOUBLE` (NaN stored as a value, distinct from
    /// null), `Bool` → `BOOLEAN`; snappy compression; one row group per [`ROW_GROUP_ROWS`] rows;
    /// `created_by` = [`CREATED_BY`], no timestamps or other varying metadata.
    pub fn write_parquet(&self, path: &Path) -> Result<(), TableError> {
        let bytes = self.to_parquet_bytes().map_err(|e| e.in_file(path))?;
        fs::write(path, bytes).map_err(|e| TableError::Io(e).in_file(path))
    }

    /// Parses Parquet bytes; see [`Table::read_parquet`].
    pub fn from_parquet_bytes(bytes: &[u8]) -> Result<Table, TableError> {
        parquet_io::read(bytes::Bytes::copy_from_slice(bytes), MAX_CELLS)
    }

    /// Reads a flat Parquet file, uncompressed or snappy-compressed (what this crate and
    /// pandas/pyarrow write by default; zstd, gzip, brotli and lz4 are not supported).
    /// `BYTE_ARRAY` (UTF-8) → `Str`; `INT64` and `INT32` (signed or unsigned 8–32 bit) → `I64`;
    /// `DOUBLE` and `FLOAT` → `F64`; `BOOLEAN` → `Bool`; pyarrow's all-null columns → `Str` of
    /// `None`. Nested, repeated, date/time, decimal and other annotated columns are rejected with
    /// an error naming the column. The file may declare at most [`MAX_CELLS`] cells.
    pub fn read_parquet(path: &Path) -> Result<Table, TableError> {
        let bytes = read_capped(path)?;
        parquet_io::read(bytes::Bytes::from(bytes), MAX_CELLS).map_err(|e| e.in_file(path))
    }

    /// The table as JSON bytes; see [`Table::write_json_records`].
    pub fn to_json_records_bytes(&self) -> Vec<u8> {
        json_io::write_records(self)
    }

    /// Writes a JSON array of records, `[{"col": value, ...}, ...]`, one record per line, keys in
    /// column order; `None`, NaN and ±inf are `null` (JSON has no NaN or infinity), floats use
    /// the same shortest round-trip text as CSV, integers are exact. Loads with
    /// `pd.read_json(path)` / `pl.read_json(path)`.
    pub fn write_json_records(&self, path: &Path) -> Result<(), TableError> {
        fs::write(path, self.to_json_records_bytes()).map_err(|e| TableError::Io(e).in_file(path))
    }
}

/// Reads a whole file after checking its size against [`MAX_FILE_BYTES`].
fn read_capped(path: &Path) -> Result<Vec<u8>, TableError> {
    let size = fs::metadata(path)
        .map_err(|e| TableError::Io(e).in_file(path))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(TableError::TooLarge {
            what: "file",
            size,
            cap: MAX_FILE_BYTES,
        }
        .in_file(path));
    }
    fs::read(path).map_err(|e| TableError::Io(e).in_file(path))
}

/// Shortest round-trip text of a finite or infinite double in Python `repr` style; `None` for
/// NaN.
pub(crate) fn format_f64(x: f64) -> Option<String> {
    if x.is_nan() {
        return None;
    }
    if x.is_infinite() {
        return Some(if x > 0.0 { "inf" } else { "-inf" }.to_string());
    }
    let a = x.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        // Rust writes `1.5e-5`; Python writes `1.5e-05`: both parse everywhere, mimic Python.
        let s = format!("{x:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        let pad = if digits.len() < 2 { "0" } else { "" };
        Some(format!("{mantissa}e{sign}{pad}{digits}"))
    } else {
        let mut s = format!("{x}");
        if !s.contains('.') {
            s.push_str(".0");
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_text_matches_python_repr() {
        let cases: &[(f64, &str)] = &[
            (2.0, "2.0"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123456789.125, "123456789.125"),
            (1e300, "1e+300"),
            (-2.5e-300, "-2.5e-300"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for &(x, want) in cases {
            assert_eq!(format_f64(x).as_deref(), Some(want), "{x:?}");
            let back: f64 = want.parse().unwrap();
            assert_eq!(back.to_bits(), x.to_bits(), "{want}");
        }
        assert_eq!(format_f64(f64::NAN), None);
    }

    #[test]
    fn parquet_cell_cap_is_checked_before_decoding() {
        let mut t = Table::new();
        t.push_column("a", Column::I64(vec![Some(1); 6])).unwrap();
        t.push_column("b", Column::Bool(vec![None; 6])).unwrap();
        let bytes = bytes::Bytes::from(t.to_parquet_bytes().unwrap());
        assert_eq!(parquet_io::read(bytes.clone(), 12).unwrap(), t);
        let e = parquet_io::read(bytes, 11).unwrap_err();
        assert!(
            matches!(
                e,
                TableError::TooManyCells {
                    rows: 6,
                    columns: 2,
                    cap: 11
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn csv_cell_cap_is_checked_while_reading() {
        let text = b"a,b\n1,2\n3,4\n5,6\n";
        assert_eq!(csv_io::read(text, true, 6).unwrap().n_rows(), 3);
        let e = csv_io::read(text, true, 5).unwrap_err();
        assert!(
            matches!(
                e,
                TableError::TooManyCells {
                    rows: 3,
                    columns: 2,
                    cap: 5
                }
            ),
            "{e}"
        );
    }
}
