//! Cross-check helper: `table_tool write DIR` writes an awkward sample table as
//! `sample.parquet`, `sample.csv` and `sample.json` into DIR (to load with pandas/polars);
//! `table_tool read FILE` reads a `.parquet` or `.csv` file and prints each column's type and
//! values (to check files written by pandas/polars).

use convlens_table::{Column, Table};
use std::path::Path;

fn sample() -> Result<Table, convlens_table::TableError> {
    let s = |x: &str| Some(x.to_string());
    let mut t = Table::new();
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
        ]),
    )?;
    t.push_column(
        "count",
        Column::I64(vec![
            Some(0),
            Some(-1),
            None,
            Some(i64::MAX),
            Some(i64::MIN),
            Some(42),
            Some(7),
        ]),
    )?;
    t.push_column(
        "full_int",
        Column::I64(vec![
            Some(1),
            Some(2),
            Some(3),
            Some(4),
            Some(5),
            Some(6),
            Some(1 << 40),
        ]),
    )?;
    t.push_column(
        "Clean Accuracy",
        Column::F64(vec![
            Some(0.1),
            Some(f64::NAN),
            None,
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
            Some(-0.0),
            Some(1e300),
        ]),
    )?;
    t.push_column(
        "Robust",
        Column::Bool(vec![
            Some(true),
            Some(false),
            None,
            Some(true),
            Some(true),
            Some(false),
            Some(false),
        ]),
    )?;
    t.push_column("all_true", Column::Bool(vec![Some(true); 7]))?;
    Ok(t)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("write"), Some(dir)) => {
            let dir = Path::new(dir);
            let t = sample()?;
            t.write_parquet(&dir.join("sample.parquet"))?;
            t.write_csv(&dir.join("sample.csv"))?;
            t.write_json_records(&dir.join("sample.json"))?;
        }
        (Some("read"), Some(file)) => {
            let p = Path::new(file);
            let t = if file.ends_with(".csv") {
                Table::read_csv(p, true)?
            } else {
                Table::read_parquet(p)?
            };
            println!("{} rows", t.n_rows());
            for (name, c) in t.columns() {
                let values = match c {
                    Column::Str(v) => format!("{v:?}"),
                    Column::I64(v) => format!("{v:?}"),
                    Column::F64(v) => format!("{v:?}"),
                    Column::Bool(v) => format!("{v:?}"),
                };
                println!("{name:?}: {} {values}", c.type_name());
            }
        }
        _ => return Err("usage: table_tool write DIR | table_tool read FILE".into()),
    }
    Ok(())
}
