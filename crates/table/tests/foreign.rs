//! Files written by pandas 3.1.1 / pyarrow 26.0.1 and polars 2.1.0 (see tests/data/README.md):
//! dictionary-encoded pages, snappy, INT32/FLOAT/uint8 columns, pyarrow's null type, nullable
//! Int64/boolean.

use convlens_table::{Column, Table};
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn check(t: &Table, with_nulls_column: bool) {
    assert_eq!(t.n_rows(), 3);
    assert_eq!(
        t.require("s").unwrap(),
        &Column::Str(vec![Some("a".into()), None, Some("é,\"x\"".into())])
    );
    assert_eq!(
        t.require("i").unwrap(),
        &Column::I64(vec![Some(1), Some(2), Some(3)])
    );
    // pyarrow stores pandas' NaN in a float column as null.
    assert_eq!(
        t.require("f").unwrap(),
        &Column::F64(vec![Some(0.5), None, Some(f64::INFINITY)])
    );
    assert_eq!(
        t.require("b").unwrap(),
        &Column::Bool(vec![Some(true), Some(false), Some(true)])
    );
    assert_eq!(
        t.require("i32").unwrap(),
        &Column::I64(vec![Some(1), Some(-2), Some(3)])
    );
    assert_eq!(
        t.require("f32").unwrap(),
        &Column::F64(vec![Some(0.5), Some(1.5), Some(2.5)])
    );
    assert_eq!(
        t.require("u8").unwrap(),
        &Column::I64(vec![Some(255), Some(0), Some(1)])
    );
    assert_eq!(
        t.require("ni").unwrap(),
        &Column::I64(vec![Some(1), None, Some(3)])
    );
    assert_eq!(
        t.require("nb").unwrap(),
        &Column::Bool(vec![Some(true), None, Some(false)])
    );
    if with_nulls_column {
        assert_eq!(
            t.require("nulls").unwrap(),
            &Column::Str(vec![None, None, None])
        );
    }
}

#[test]
fn pandas_pyarrow_parquet() {
    let t = Table::read_parquet(&data("pandas_pyarrow.parquet")).unwrap();
    assert_eq!(
        t.names().collect::<Vec<_>>(),
        ["s", "i", "f", "b", "i32", "f32", "nulls", "u8", "ni", "nb"]
    );
    check(&t, true);
}

#[test]
fn polars_snappy_parquet() {
    let t = Table::read_parquet(&data("polars_snappy.parquet")).unwrap();
    check(&t, false);
}
