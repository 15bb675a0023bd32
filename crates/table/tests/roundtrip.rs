//! Round trips through CSV, Parquet and JSON, determinism, and the Parquet file layout.

use convlens_table::{Column, Table, TableError, CREATED_BY, ROW_GROUP_ROWS};
use std::path::PathBuf;

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("convlens-table-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A table exercising every awkward value.
fn sample() -> Table {
    let mut t = Table::new();
    let s = |x: &str| Some(x.to_string());
    t.push_column(
        "name, with comma",
        Column::Str(vec![
            s("plain"),
            s(""),
            None,
            s("comma, inside"),
            s("quote \"x\" here"),
            s("new\nline"),
            s("unicode é∑ 😀 日本"),
            s("  padded  "),
            s("crlf\r\nend"),
        ]),
    )
    .unwrap();
    t.push_column(
        "count",
        Column::I64(vec![
            Some(0),
            Some(-1),
            None,
            Some(i64::MAX),
            Some(i64::MIN),
            Some(42),
            None,
            Some(7),
            Some(1_000_000_000_000),
        ]),
    )
    .unwrap();
    t.push_column(
        "Clean \"Accuracy\"",
        Column::F64(vec![
            Some(0.1),
            Some(f64::NAN),
            None,
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
            Some(-0.0),
            Some(1e300),
            Some(5e-324),
            Some(2.0),
        ]),
    )
    .unwrap();
    t.push_column(
        "Robust",
        Column::Bool(vec![
            Some(true),
            Some(false),
            None,
            Some(true),
            Some(true),
            Some(false),
            None,
            Some(false),
            Some(true),
        ]),
    )
    .unwrap();
    t.push_column(
        "ünïcode\nname",
        Column::Str(vec![
            s("a"),
            s("b"),
            s("c"),
            s("d"),
            s("e"),
            s("f"),
            s("g"),
            s("h"),
            s("i"),
        ]),
    )
    .unwrap();
    t
}

/// Equality with doubles compared bit for bit (NaN == NaN, -0.0 != 0.0).
fn assert_same(a: &Table, b: &Table) {
    let an: Vec<&str> = a.names().collect();
    let bn: Vec<&str> = b.names().collect();
    assert_eq!(an, bn);
    assert_eq!(a.n_rows(), b.n_rows());
    for ((name, x), (_, y)) in a.columns().zip(b.columns()) {
        match (x, y) {
            (Column::F64(x), Column::F64(y)) => {
                let xb: Vec<Option<u64>> = x.iter().map(|v| v.map(f64::to_bits)).collect();
                let yb: Vec<Option<u64>> = y.iter().map(|v| v.map(f64::to_bits)).collect();
                assert_eq!(xb, yb, "column {name}");
            }
            _ => assert_eq!(x, y, "column {name}"),
        }
    }
}

/// What a CSV round trip keeps: empty strings and NaN both become missing.
fn csv_normalised(t: &Table) -> Table {
    let mut out = Table::new();
    for (name, c) in t.columns() {
        let c = match c {
            Column::Str(v) => Column::Str(
                v.iter()
                    .map(|x| x.clone().filter(|s| !s.is_empty()))
                    .collect(),
            ),
            Column::F64(v) => Column::F64(v.iter().map(|x| x.filter(|f| !f.is_nan())).collect()),
            other => other.clone(),
        };
        out.push_column(name, c).unwrap();
    }
    out
}

#[test]
fn parquet_round_trip_is_exact() {
    let t = sample();
    let dir = tmp_dir("pq");
    let p = dir.join("t.parquet");
    t.write_parquet(&p).unwrap();
    let back = Table::read_parquet(&p).unwrap();
    assert_same(&t, &back);
    // NaN stays a value, distinct from null.
    let v = back.column("Clean \"Accuracy\"").unwrap().as_f64().unwrap();
    assert!(v[1].unwrap().is_nan());
    assert_eq!(v[2], None);
    assert_eq!(
        back.column("name, with comma").unwrap().as_str().unwrap()[1].as_deref(),
        Some("")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn csv_round_trip_keeps_values_and_types() {
    let t = sample();
    let dir = tmp_dir("csv");
    let p = dir.join("t.csv");
    t.write_csv(&p).unwrap();
    let back = Table::read_csv(&p, true).unwrap();
    assert_same(&csv_normalised(&t), &back);
    let types: Vec<&str> = back.columns().map(|(_, c)| c.type_name()).collect();
    assert_eq!(types, ["str", "i64", "f64", "bool", "str"]);
    // Without inference every column is text, exactly as written.
    let raw = Table::read_csv(&p, false).unwrap();
    let f = raw.column("Clean \"Accuracy\"").unwrap().as_str().unwrap();
    let f: Vec<Option<&str>> = f.iter().map(|x| x.as_deref()).collect();
    assert_eq!(
        f,
        [
            Some("0.1"),
            None,
            None,
            Some("inf"),
            Some("-inf"),
            Some("-0.0"),
            Some("1e+300"),
            Some("5e-324"),
            Some("2.0")
        ]
    );
    let b = raw.column("Robust").unwrap().as_str().unwrap();
    assert_eq!(b[0].as_deref(), Some("True"));
    assert_eq!(b[1].as_deref(), Some("False"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn csv_text_is_rfc4180() {
    let mut t = Table::new();
    t.push_column(
        "a,b",
        Column::Str(vec![Some("x\"y".into()), None, Some("l1\nl2".into())]),
    )
    .unwrap();
    t.push_column("n", Column::I64(vec![Some(1), Some(2), None]))
        .unwrap();
    t.push_column(
        "f",
        Column::F64(vec![Some(1e16), Some(f64::NAN), Some(0.5)]),
    )
    .unwrap();
    let text = String::from_utf8(t.to_csv_bytes().unwrap()).unwrap();
    assert_eq!(
        text,
        "\"a,b\",n,f\n\"x\"\"y\",1,1e+16\n,2,\n\"l1\nl2\",,0.5\n"
    );
}

#[test]
fn single_column_of_missing_values_survives_csv() {
    let mut t = Table::new();
    t.push_column("x", Column::I64(vec![Some(3), None, None, Some(4)]))
        .unwrap();
    let back = Table::from_csv_bytes(&t.to_csv_bytes().unwrap(), true).unwrap();
    assert_same(&t, &back);
}

#[test]
fn json_records() {
    let mut t = Table::new();
    t.push_column("s", Column::Str(vec![Some("a\"b\\c\n\u{1}é".into()), None]))
        .unwrap();
    t.push_column("i", Column::I64(vec![Some(-5), None]))
        .unwrap();
    t.push_column("f", Column::F64(vec![Some(f64::NAN), Some(f64::INFINITY)]))
        .unwrap();
    t.push_column("g", Column::F64(vec![Some(0.25), Some(1e-7)]))
        .unwrap();
    t.push_column("b", Column::Bool(vec![Some(true), None]))
        .unwrap();
    let text = String::from_utf8(t.to_json_records_bytes()).unwrap();
    assert_eq!(
        text,
        "[\n{\"s\":\"a\\\"b\\\\c\\n\\u0001é\",\"i\":-5,\"f\":null,\"g\":0.25,\"b\":true},\n\
         {\"s\":null,\"i\":null,\"f\":null,\"g\":1e-07,\"b\":null}\n]\n"
    );
    assert_eq!(Table::new().to_json_records_bytes(), b"[]\n");
    let dir = tmp_dir("json");
    let p = dir.join("t.json");
    t.write_json_records(&p).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), text.as_bytes());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn output_is_deterministic() {
    let a = sample();
    let b = sample();
    assert_eq!(a.to_parquet_bytes().unwrap(), b.to_parquet_bytes().unwrap());
    assert_eq!(a.to_csv_bytes().unwrap(), b.to_csv_bytes().unwrap());
    assert_eq!(a.to_json_records_bytes(), b.to_json_records_bytes());
    let dir = tmp_dir("det");
    let (p1, p2) = (dir.join("1.parquet"), dir.join("2.parquet"));
    a.write_parquet(&p1).unwrap();
    a.write_parquet(&p2).unwrap();
    assert_eq!(std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn parquet_layout_row_groups_types_created_by() {
    use parquet::basic::{Compression, LogicalType, Repetition, Type as Physical};
    use parquet::file::reader::FileReader;
    use parquet::file::serialized_reader::SerializedFileReader;

    let n = ROW_GROUP_ROWS + 5;
    let mut t = Table::new();
    t.push_column(
        "i",
        Column::I64((0..n as i64).map(|k| (k % 7 != 0).then_some(k)).collect()),
    )
    .unwrap();
    t.push_column(
        "b",
        Column::Bool((0..n).map(|k| Some(k % 2 == 0)).collect()),
    )
    .unwrap();
    let bytes = t.to_parquet_bytes().unwrap();
    let r = SerializedFileReader::new(bytes::Bytes::from(bytes.clone())).unwrap();
    let meta = r.metadata();
    assert_eq!(meta.file_metadata().created_by(), Some(CREATED_BY));
    assert_eq!(meta.file_metadata().num_rows(), n as i64);
    let rgs: Vec<i64> = meta.row_groups().iter().map(|g| g.num_rows()).collect();
    assert_eq!(rgs, [ROW_GROUP_ROWS as i64, 5]);
    assert_eq!(
        meta.row_group(0).column(0).compression(),
        Compression::SNAPPY
    );
    let schema = meta.file_metadata().schema_descr();
    for i in 0..2 {
        assert_eq!(
            schema.column(i).self_type().get_basic_info().repetition(),
            Repetition::OPTIONAL
        );
    }
    assert_eq!(schema.column(0).physical_type(), Physical::INT64);
    assert_eq!(schema.column(1).physical_type(), Physical::BOOLEAN);

    let back = Table::from_parquet_bytes(&bytes).unwrap();
    assert_same(&t, &back);

    // Strings carry the String logical type.
    let mut s = Table::new();
    s.push_column("s", Column::Str(vec![Some("x".into())]))
        .unwrap();
    s.push_column("f", Column::F64(vec![Some(1.0)])).unwrap();
    let r = SerializedFileReader::new(bytes::Bytes::from(s.to_parquet_bytes().unwrap())).unwrap();
    let sd = r.metadata().file_metadata().schema_descr();
    assert_eq!(sd.column(0).physical_type(), Physical::BYTE_ARRAY);
    assert_eq!(sd.column(0).logical_type_ref(), Some(&LogicalType::String));
    assert_eq!(sd.column(1).physical_type(), Physical::DOUBLE);
}

#[test]
fn empty_tables() {
    // Columns but no rows: Parquet keeps the types, CSV keeps the header.
    let mut t = Table::new();
    t.push_column("a", Column::F64(vec![])).unwrap();
    t.push_column("b", Column::Bool(vec![])).unwrap();
    let back = Table::from_parquet_bytes(&t.to_parquet_bytes().unwrap()).unwrap();
    assert_same(&t, &back);
    let csv = t.to_csv_bytes().unwrap();
    assert_eq!(csv, b"a,b\n");
    let back = Table::from_csv_bytes(&csv, true).unwrap();
    assert_eq!(back.names().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(back.n_rows(), 0);
    // No columns at all.
    let none = Table::new();
    assert!(none.to_csv_bytes().unwrap().is_empty());
    let back = Table::from_parquet_bytes(&none.to_parquet_bytes().unwrap()).unwrap();
    assert_eq!(back.n_columns(), 0);
}

#[test]
fn push_column_checks_length_and_names() {
    let mut t = Table::new();
    t.push_column("a", Column::I64(vec![Some(1), Some(2)]))
        .unwrap();
    let e = t.push_column("b", Column::I64(vec![Some(1)])).unwrap_err();
    assert!(matches!(
        e,
        TableError::LengthMismatch {
            expected: 2,
            got: 1,
            ..
        }
    ));
    let e = t
        .push_column("a", Column::Bool(vec![None, None]))
        .unwrap_err();
    assert_eq!(e.to_string(), "duplicate column name 'a'");
    let e = t.require("zz").unwrap_err();
    assert_eq!(e.to_string(), "missing column 'zz' (columns: a)");
    assert_eq!(t.require("a").unwrap().len(), 2);
}

#[test]
fn errors_name_the_file() {
    let dir = tmp_dir("err");
    let missing = dir.join("nope.csv");
    let e = Table::read_csv(&missing, true).unwrap_err();
    assert!(
        e.to_string().starts_with(&missing.display().to_string()),
        "{e}"
    );
    let bad = dir.join("bad.parquet");
    std::fs::write(&bad, b"not a parquet file at all").unwrap();
    let e = Table::read_parquet(&bad).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with(&bad.display().to_string()), "{msg}");
    assert!(matches!(e.kind(), TableError::Parquet(_)), "{msg}");
    let ragged = dir.join("ragged.csv");
    std::fs::write(&ragged, "a,b\n1,2\n3\n").unwrap();
    let e = Table::read_csv(&ragged, true).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: ragged CSV row at line 3: 1 fields, the header has 2",
            ragged.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
