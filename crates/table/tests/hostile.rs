//! Hostile and malformed inputs: one test per attack. Every case must return an error (or, for
//! CSV leniency, a value) and never panic or allocate by a forged size.

use std::sync::Arc;

use bytes::Bytes;
use convlens_table::{Column, Table, TableError};
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::metadata::ParquetMetaDataWriter;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

fn valid_parquet() -> Vec<u8> {
    let mut t = Table::new();
    t.push_column(
        "s",
        Column::Str(vec![Some("a".into()), None, Some("ccc".into())]),
    )
    .unwrap();
    t.push_column("i", Column::I64(vec![Some(1), Some(2), None]))
        .unwrap();
    t.push_column("f", Column::F64(vec![None, Some(0.5), Some(-1.0)]))
        .unwrap();
    t.push_column("b", Column::Bool(vec![Some(true), None, Some(false)]))
        .unwrap();
    t.to_parquet_bytes().unwrap()
}

/// A file with `schema` and, for a single BYTE_ARRAY column, the given values.
fn parquet_with_schema(schema: &str, byte_values: Option<&[&[u8]]>) -> Vec<u8> {
    let schema = Arc::new(parse_message_type(schema).unwrap());
    let props = Arc::new(WriterProperties::builder().build());
    let mut w = SerializedFileWriter::new(Vec::new(), schema, props).unwrap();
    if let Some(values) = byte_values {
        let mut rg = w.next_row_group().unwrap();
        let mut cw = rg.next_column().unwrap().unwrap();
        let vals: Vec<ByteArray> = values.iter().map(|v| ByteArray::from(v.to_vec())).collect();
        let defs = vec![1i16; vals.len()];
        cw.typed::<ByteArrayType>()
            .write_batch(&vals, Some(&defs), None)
            .unwrap();
        cw.close().unwrap();
        rg.close().unwrap();
    }
    w.into_inner().unwrap()
}

fn parquet_err(bytes: &[u8]) -> TableError {
    match Table::from_parquet_bytes(bytes) {
        Ok(t) => panic!("accepted hostile input: {t:?}"),
        Err(e) => e,
    }
}

/// Start of the footer (end of the data) of a file.
fn footer_start(bytes: &[u8]) -> usize {
    let n = bytes.len();
    let len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as usize;
    n - 8 - len
}

/// `bytes` with its footer replaced by `edit(metadata)`.
fn forge_footer(
    bytes: &[u8],
    edit: impl FnOnce(
        parquet::file::metadata::ParquetMetaData,
    ) -> parquet::file::metadata::ParquetMetaData,
) -> Vec<u8> {
    let md = SerializedFileReader::new(Bytes::from(bytes.to_vec()))
        .unwrap()
        .metadata()
        .clone();
    let md = edit(md);
    let mut out = bytes[..footer_start(bytes)].to_vec();
    ParquetMetaDataWriter::new(&mut out, &md).finish().unwrap();
    out
}

// ------------------------------------------------------------------------------------ CSV

#[test]
fn csv_ragged_row_after_multiline_field() {
    let e = Table::from_csv_bytes(b"a,b\n1,2\n\"x\ny\",3\n4,5,6\n", true).unwrap_err();
    assert!(
        matches!(
            e,
            TableError::RaggedRow {
                line: 5,
                expected: 2,
                got: 3
            }
        ),
        "{e}"
    );
}

#[test]
fn csv_invalid_utf8_cell() {
    let e = Table::from_csv_bytes(b"a,b\n1,2\n3,\xff\xfe\n", false).unwrap_err();
    assert!(
        matches!(e, TableError::InvalidUtf8 { line: 3, column: 2 }),
        "{e}"
    );
    let e = Table::from_csv_bytes(b"a,\xc3\n1,2\n", false).unwrap_err();
    assert!(
        matches!(e, TableError::InvalidUtf8 { line: 1, column: 2 }),
        "{e}"
    );
}

#[test]
fn csv_empty_input_and_lone_bom() {
    assert!(matches!(
        Table::from_csv_bytes(b"", true),
        Err(TableError::EmptyCsv)
    ));
    assert!(matches!(
        Table::from_csv_bytes(b"\xEF\xBB\xBF", true),
        Err(TableError::EmptyCsv)
    ));
    assert!(matches!(
        Table::from_csv_bytes(b"\n\n\r\n", true),
        Err(TableError::EmptyCsv)
    ));
}

#[test]
fn csv_unterminated_quote_does_not_panic() {
    // The CSV parser is lenient: the open field runs to the end of the input.
    let t = Table::from_csv_bytes(b"a,b\n1,\"never closed\n2,3\n", true).unwrap();
    assert_eq!(t.n_rows(), 1);
    assert_eq!(
        t.require("b").unwrap().as_str().unwrap()[0].as_deref(),
        Some("never closed\n2,3\n")
    );
}

#[test]
fn csv_nul_and_control_bytes_are_text() {
    let t = Table::from_csv_bytes(b"a\n\x00\x01\n", true).unwrap();
    assert_eq!(
        t.require("a").unwrap(),
        &Column::Str(vec![Some("\0\u{1}".into())])
    );
}

#[test]
fn csv_many_duplicate_headers() {
    let header = vec!["x"; 500].join(",");
    let t = Table::from_csv_bytes(format!("{header}\n").as_bytes(), true).unwrap();
    assert_eq!(t.n_columns(), 500);
    assert_eq!(t.names().last(), Some("x.499"));
}

// -------------------------------------------------------------------------------- Parquet

#[test]
fn parquet_empty_short_and_garbage() {
    for bytes in [
        &b""[..],
        b"PAR1",
        b"PAR1PAR1",
        b"PAR1\0\0\0\0PAR1",
        b"hello, world, this is csv\n",
    ] {
        assert!(matches!(parquet_err(bytes), TableError::Parquet(_)));
    }
}

#[test]
fn parquet_bad_trailing_magic() {
    let mut b = valid_parquet();
    let n = b.len();
    b[n - 1] = b'X';
    assert!(matches!(parquet_err(&b), TableError::Parquet(_)));
}

#[test]
fn parquet_footer_length_beyond_file() {
    let mut b = valid_parquet();
    let n = b.len();
    b[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(parquet_err(&b), TableError::Parquet(_)));
    b[n - 8..n - 4].copy_from_slice(&((n as u32) - 7).to_le_bytes());
    assert!(matches!(parquet_err(&b), TableError::Parquet(_)));
}

#[test]
fn parquet_every_truncation_is_an_error() {
    let b = valid_parquet();
    for cut in 0..b.len() {
        assert!(Table::from_parquet_bytes(&b[..cut]).is_err(), "cut {cut}");
    }
}

#[test]
fn parquet_every_corrupted_byte_returns() {
    // Flipping any single byte must yield Ok or Err, never a panic escaping the reader.
    let b = valid_parquet();
    let mut errors = 0;
    for pos in 0..b.len() {
        let mut c = b.clone();
        c[pos] ^= 0xFF;
        if Table::from_parquet_bytes(&c).is_err() {
            errors += 1;
        }
    }
    assert!(errors > 0);
}

#[test]
fn parquet_forged_huge_row_count() {
    let b = valid_parquet();
    let forged = forge_footer(&b, |md| {
        let rg = md
            .row_group(0)
            .clone()
            .into_builder()
            .set_num_rows(1 << 40)
            .build()
            .unwrap();
        md.into_builder().set_row_groups(vec![rg]).build()
    });
    let e = parquet_err(&forged);
    assert!(
        matches!(
            e,
            TableError::TooManyCells {
                rows: 1_099_511_627_776,
                columns: 4,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn parquet_forged_negative_row_count() {
    let b = valid_parquet();
    let forged = forge_footer(&b, |md| {
        let rg = md
            .row_group(0)
            .clone()
            .into_builder()
            .set_num_rows(-5)
            .build()
            .unwrap();
        md.into_builder().set_row_groups(vec![rg]).build()
    });
    assert!(matches!(parquet_err(&forged), TableError::Parquet(_)));
}

#[test]
fn parquet_forged_row_count_larger_than_data() {
    // The footer claims 1000 rows; the pages hold 3.
    let b = valid_parquet();
    let forged = forge_footer(&b, |md| {
        let rg = md
            .row_group(0)
            .clone()
            .into_builder()
            .set_num_rows(1000)
            .build()
            .unwrap();
        md.into_builder().set_row_groups(vec![rg]).build()
    });
    let e = parquet_err(&forged);
    assert!(e.to_string().contains("column 's'"), "{e}");
}

#[test]
fn parquet_forged_chunk_offset_out_of_range() {
    let b = valid_parquet();
    for (offset, size) in [(1i64 << 40, 100i64), (4, 1 << 40), (-10, 100)] {
        let forged = forge_footer(&b, |md| {
            let rg0 = md.row_group(0).clone();
            let cols: Vec<_> = rg0
                .columns()
                .iter()
                .map(|c| {
                    c.clone()
                        .into_builder()
                        .set_data_page_offset(offset)
                        .set_dictionary_page_offset(None)
                        .set_total_compressed_size(size)
                        .build()
                        .unwrap()
                })
                .collect();
            let rg = rg0
                .into_builder()
                .set_column_metadata(cols)
                .build()
                .unwrap();
            md.into_builder().set_row_groups(vec![rg]).build()
        });
        let e = parquet_err(&forged);
        // Rejected by the range check, before the parquet crate's own assertion.
        assert!(
            matches!(&e, TableError::Parquet(m) if m.contains("outside") || m.contains("negative")),
            "offset {offset} size {size}: {e}"
        );
    }
}

#[test]
fn parquet_nested_group_column() {
    let b = parquet_with_schema(
        "message schema { optional group g { optional int32 a; } }",
        None,
    );
    let e = parquet_err(&b);
    assert!(
        matches!(&e, TableError::UnsupportedParquet { column, what } if column == "g.a" && what.contains("nested")),
        "{e}"
    );
}

#[test]
fn parquet_repeated_column() {
    let b = parquet_with_schema("message schema { repeated int32 a; }", None);
    let e = parquet_err(&b);
    assert!(
        matches!(&e, TableError::UnsupportedParquet { what, .. } if what.contains("repeated")),
        "{e}"
    );
}

#[test]
fn parquet_unsupported_types() {
    for schema in [
        "message schema { optional int64 t (TIMESTAMP(MILLIS,true)); }",
        "message schema { optional int96 t; }",
        "message schema { optional int32 d (DATE); }",
        "message schema { optional fixed_len_byte_array(16) u (UUID); }",
        "message schema { optional int64 u (INTEGER(64,false)); }",
        "message schema { optional int32 d (DECIMAL(5,2)); }",
    ] {
        let e = parquet_err(&parquet_with_schema(schema, None));
        assert!(
            matches!(&e, TableError::UnsupportedParquet { .. }),
            "{schema}: {e}"
        );
    }
}

#[test]
fn parquet_string_column_with_invalid_utf8() {
    let b = parquet_with_schema(
        "message schema { optional binary s (UTF8); }",
        Some(&[b"ok", b"\xff\xfe"]),
    );
    let e = parquet_err(&b);
    assert!(e.to_string().contains("UTF-8"), "{e}");
}

#[test]
fn parquet_unsupported_compression_is_named() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/polars_zstd.parquet");
    let e = Table::read_parquet(&p).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("polars_zstd.parquet"), "{msg}");
    assert!(msg.contains("compression ZSTD"), "{msg}");
}

#[test]
fn csv_huge_header_of_identical_names_is_linear() {
    // 200k empty names: a quadratic renaming or duplicate check would take minutes.
    let header = ",".repeat(199_999);
    let t = Table::from_csv_bytes(format!("{header}\n").as_bytes(), true).unwrap();
    assert_eq!(t.n_columns(), 200_000);
    assert_eq!(t.names().nth(1), Some(".1"));
    assert_eq!(t.names().last(), Some(".199999"));
}

#[test]
fn parquet_duplicate_column_names() {
    let b = parquet_with_schema(
        "message schema { optional int32 a; optional int64 a; }",
        None,
    );
    assert!(matches!(parquet_err(&b), TableError::DuplicateColumn(n) if n == "a"));
}
