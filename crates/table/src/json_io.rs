//! JSON records writer.

use crate::{format_f64, Column, Table};
use std::fmt::Write as _;

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_value(out: &mut String, c: &Column, r: usize) {
    match c {
        Column::Str(v) => match v.get(r).and_then(|x| x.as_deref()) {
            Some(s) => push_json_string(out, s),
            None => out.push_str("null"),
        },
        Column::I64(v) => match v.get(r).copied().flatten() {
            Some(x) => {
                let _ = write!(out, "{x}");
            }
            None => out.push_str("null"),
        },
        Column::F64(v) => match v.get(r).copied().flatten() {
            Some(x) if x.is_finite() => out.push_str(&format_f64(x).unwrap_or_default()),
            _ => out.push_str("null"),
        },
        Column::Bool(v) => match v.get(r).copied().flatten() {
            Some(true) => out.push_str("true"),
            Some(false) => out.push_str("false"),
            None => out.push_str("null"),
        },
    }
}

pub(crate) fn write_records(table: &Table) -> Vec<u8> {
    let cols: Vec<(&str, &Column)> = table.columns().collect();
    let mut out = String::from("[");
    for r in 0..table.n_rows() {
        out.push_str(if r == 0 { "\n{" } else { ",\n{" });
        for (i, (name, c)) in cols.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(&mut out, name);
            out.push(':');
            push_value(&mut out, c, r);
        }
        out.push('}');
    }
    out.push_str(if table.n_rows() == 0 { "]\n" } else { "\n]\n" });
    out.into_bytes()
}
