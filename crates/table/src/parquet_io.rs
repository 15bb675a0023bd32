//! Parquet reading and writing through the `parquet` crate's column API (no Arrow).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use parquet::basic::{Compression, ConvertedType, LogicalType, Repetition, Type as PhysicalType};
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{ByteArray, DataType};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, RowGroupReader};
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnDescriptor, Type};

use crate::{Column, Table, TableError, CREATED_BY, ROW_GROUP_ROWS};

/// Records decoded per call into the column reader (bounds the temporary buffers).
const READ_BATCH: usize = 1 << 16;

fn perr(e: ParquetError) -> TableError {
    TableError::Parquet(e.to_string())
}

// ---------------------------------------------------------------- writing

pub(crate) fn write(table: &Table) -> Result<Vec<u8>, TableError> {
    let mut fields = Vec::with_capacity(table.n_columns());
    for (name, col) in table.columns() {
        let (physical, logical, converted) = match col {
            Column::Str(_) => (
                PhysicalType::BYTE_ARRAY,
                Some(LogicalType::String),
                ConvertedType::UTF8,
            ),
            Column::I64(_) => (PhysicalType::INT64, None, ConvertedType::NONE),
            Column::F64(_) => (PhysicalType::DOUBLE, None, ConvertedType::NONE),
            Column::Bool(_) => (PhysicalType::BOOLEAN, None, ConvertedType::NONE),
        };
        let field = Type::primitive_type_builder(name, physical)
            .with_repetition(Repetition::OPTIONAL)
            .with_logical_type(logical)
            .with_converted_type(converted)
            .build()
            .map_err(perr)?;
        fields.push(Arc::new(field));
    }
    let schema = Type::group_type_builder("schema")
        .with_fields(fields)
        .build()
        .map_err(perr)?;
    let props = WriterProperties::builder()
        .set_created_by(CREATED_BY.to_string())
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer =
        SerializedFileWriter::new(Vec::new(), Arc::new(schema), Arc::new(props)).map_err(perr)?;
    let cols: Vec<&Column> = table.columns().map(|(_, c)| c).collect();
    let n = table.n_rows();
    let mut start = 0;
    while start < n {
        let end = start.saturating_add(ROW_GROUP_ROWS).min(n);
        let mut rg = writer.next_row_group().map_err(perr)?;
        for col in &cols {
            let mut cw = match rg.next_column().map_err(perr)? {
                Some(cw) => cw,
                None => return Err(TableError::Parquet("writer ran out of columns".into())),
            };
            match col {
                Column::Str(v) => write_chunk::<parquet::data_type::ByteArrayType, _, _>(
                    &mut cw,
                    v.get(start..end).unwrap_or(&[]),
                    |s: &String| ByteArray::from(s.as_bytes().to_vec()),
                )?,
                Column::I64(v) => write_chunk::<parquet::data_type::Int64Type, _, _>(
                    &mut cw,
                    v.get(start..end).unwrap_or(&[]),
                    |x: &i64| *x,
                )?,
                Column::F64(v) => write_chunk::<parquet::data_type::DoubleType, _, _>(
                    &mut cw,
                    v.get(start..end).unwrap_or(&[]),
                    |x: &f64| *x,
                )?,
                Column::Bool(v) => write_chunk::<parquet::data_type::BoolType, _, _>(
                    &mut cw,
                    v.get(start..end).unwrap_or(&[]),
                    |x: &bool| *x,
                )?,
            }
            cw.close().map_err(perr)?;
        }
        rg.close().map_err(perr)?;
        start = end;
    }
    writer.into_inner().map_err(perr)
}

fn write_chunk<T, S, F>(
    cw: &mut parquet::file::writer::SerializedColumnWriter<'_>,
    cells: &[Option<S>],
    to_value: F,
) -> Result<(), TableError>
where
    T: DataType,
    F: Fn(&S) -> T::T,
{
    let defs: Vec<i16> = cells.iter().map(|c| i16::from(c.is_some())).collect();
    let values: Vec<T::T> = cells.iter().flatten().map(to_value).collect();
    cw.typed::<T>()
        .write_batch(&values, Some(&defs), None)
        .map_err(perr)?;
    Ok(())
}

// ---------------------------------------------------------------- reading

/// How a Parquet leaf maps to a [`Column`].
#[derive(Clone, Copy)]
enum Target {
    Str,
    /// An all-null column (pyarrow's `null` type).
    Null,
    I64,
    I32 {
        unsigned: bool,
    },
    F64,
    F32,
    Bool,
}

fn target_for(descr: &ColumnDescriptor) -> Result<Target, TableError> {
    let unsupported = |what: String| TableError::UnsupportedParquet {
        column: descr.path().string(),
        what,
    };
    let logical = descr.logical_type_ref();
    if let Some(LogicalType::Unknown) = logical {
        return Ok(Target::Null);
    }
    let int_annotation = match logical {
        None => match descr.converted_type() {
            ConvertedType::NONE => None,
            ConvertedType::INT_8 | ConvertedType::INT_16 | ConvertedType::INT_32 => Some(false),
            ConvertedType::UINT_8 | ConvertedType::UINT_16 | ConvertedType::UINT_32 => Some(true),
            ConvertedType::INT_64 => Some(false),
            ConvertedType::UTF8 | ConvertedType::ENUM | ConvertedType::JSON => None,
            other => return Err(unsupported(format!("converted type {other}"))),
        },
        Some(LogicalType::Integer(it)) => Some(!it.is_signed),
        Some(LogicalType::String | LogicalType::Enum | LogicalType::Json) => None,
        Some(other) => return Err(unsupported(format!("logical type {other:?}"))),
    };
    let t = match (descr.physical_type(), int_annotation) {
        (PhysicalType::BYTE_ARRAY, None) => Target::Str,
        (PhysicalType::INT64, None | Some(false)) => Target::I64,
        (PhysicalType::INT64, Some(true)) => {
            return Err(unsupported("unsigned 64-bit integers".into()))
        }
        (PhysicalType::INT32, None) => Target::I32 { unsigned: false },
        (PhysicalType::INT32, Some(unsigned)) => Target::I32 { unsigned },
        (PhysicalType::DOUBLE, None) => Target::F64,
        (PhysicalType::FLOAT, None) => Target::F32,
        (PhysicalType::BOOLEAN, None) => Target::Bool,
        (p, _) => return Err(unsupported(format!("physical type {p}"))),
    };
    Ok(t)
}

pub(crate) fn read(bytes: bytes::Bytes, max_cells: u64) -> Result<Table, TableError> {
    // The parquet crate is not guaranteed panic-free on corrupt input; turn a panic into an error.
    match catch_unwind(AssertUnwindSafe(|| read_inner(bytes, max_cells))) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "decoder panicked".to_string());
            Err(TableError::Parquet(format!("corrupt file ({msg})")))
        }
    }
}

fn read_inner(bytes: bytes::Bytes, max_cells: u64) -> Result<Table, TableError> {
    let file_len = bytes.len() as u64;
    let reader = SerializedFileReader::new(bytes).map_err(perr)?;
    let meta = reader.metadata();
    let schema = meta.file_metadata().schema_descr();
    let root = schema.root_schema();
    let n_cols = schema.num_columns();
    if root.get_fields().len() != n_cols {
        let nested = root
            .get_fields()
            .iter()
            .find(|f| f.is_group())
            .map_or_else(|| "?".to_string(), |f| f.name().to_string());
        return Err(TableError::UnsupportedParquet {
            column: nested,
            what: "nested (group) column".into(),
        });
    }
    let mut targets = Vec::with_capacity(n_cols);
    for i in 0..n_cols {
        let d = schema.column(i);
        if d.max_rep_level() != 0 {
            return Err(TableError::UnsupportedParquet {
                column: d.path().string(),
                what: "repeated (list) column".into(),
            });
        }
        if d.path().parts().len() != 1 || d.max_def_level() > 1 {
            return Err(TableError::UnsupportedParquet {
                column: d.path().string(),
                what: "nested column".into(),
            });
        }
        targets.push(target_for(&d)?);
    }
    for (g, rg) in meta.row_groups().iter().enumerate() {
        if rg.num_columns() != n_cols {
            return Err(TableError::Parquet(format!(
                "row group {g} has {} column chunks, the schema has {n_cols} columns",
                rg.num_columns()
            )));
        }
        for cc in rg.columns() {
            check_chunk_range(cc, file_len).map_err(|m| {
                TableError::Parquet(format!(
                    "column '{}', row group {g}: {m}",
                    cc.column_path().string()
                ))
            })?;
            match cc.compression() {
                Compression::UNCOMPRESSED | Compression::SNAPPY => {}
                other => {
                    let codec = other.to_string();
                    let codec = codec.split('(').next().unwrap_or_default();
                    return Err(TableError::UnsupportedParquet {
                        column: cc.column_path().string(),
                        what: format!(
                            "compression {codec} (supported: UNCOMPRESSED, SNAPPY; \
                             write with compression='snappy')"
                        ),
                    });
                }
            }
        }
    }
    // Check the declared size before decoding anything.
    let declared = meta.file_metadata().num_rows();
    let mut rows_total: u64 = 0;
    for rg in meta.row_groups() {
        let r = u64::try_from(rg.num_rows())
            .map_err(|_| TableError::Parquet(format!("negative row count {}", rg.num_rows())))?;
        rows_total = rows_total.saturating_add(r);
    }
    let cols_u64 = n_cols as u64;
    let too_many = |rows: u64| TableError::TooManyCells {
        rows,
        columns: cols_u64,
        cap: max_cells,
    };
    if rows_total.saturating_mul(cols_u64.max(1)) > max_cells {
        return Err(too_many(rows_total));
    }
    if u64::try_from(declared).ok() != Some(rows_total) {
        return Err(TableError::Parquet(format!(
            "footer declares {declared} rows but the row groups hold {rows_total}"
        )));
    }

    let mut columns: Vec<Column> = targets
        .iter()
        .map(|t| match t {
            Target::Str | Target::Null => Column::Str(Vec::new()),
            Target::I64 | Target::I32 { .. } => Column::I64(Vec::new()),
            Target::F64 | Target::F32 => Column::F64(Vec::new()),
            Target::Bool => Column::Bool(Vec::new()),
        })
        .collect();
    for g in 0..reader.num_row_groups() {
        let rg = reader.get_row_group(g).map_err(perr)?;
        let want = usize::try_from(rg.metadata().num_rows())
            .map_err(|_| TableError::Parquet("row group size out of range".into()))?;
        for (i, (target, out)) in targets.iter().zip(columns.iter_mut()).enumerate() {
            let name = schema.column(i).path().string();
            read_column_chunk(rg.as_ref(), i, *target, want, out)
                .map_err(|e| annotate(e, &name, g))?;
        }
    }
    let named = columns
        .into_iter()
        .enumerate()
        .map(|(i, col)| (schema.column(i).name().to_string(), col))
        .collect();
    Table::from_columns(named)
}

/// Checks that a column chunk's declared byte range lies inside the file (the parquet crate
/// asserts on negative values).
fn check_chunk_range(
    cc: &parquet::file::metadata::ColumnChunkMetaData,
    file_len: u64,
) -> Result<(), String> {
    let start = cc.dictionary_page_offset().unwrap_or(cc.data_page_offset());
    let len = cc.compressed_size();
    let (Ok(s), Ok(l)) = (u64::try_from(start), u64::try_from(len)) else {
        return Err(format!(
            "negative byte range (offset {start}, length {len})"
        ));
    };
    match s.checked_add(l) {
        Some(end) if end <= file_len => Ok(()),
        _ => Err(format!(
            "byte range {s}+{l} lies outside the {file_len}-byte file"
        )),
    }
}

fn annotate(e: TableError, column: &str, rg: usize) -> TableError {
    match e {
        TableError::Parquet(m) => {
            TableError::Parquet(format!("column '{column}', row group {rg}: {m}"))
        }
        other => other,
    }
}

/// Reads `want` records of one column chunk and appends them to `out`.
fn read_column_chunk(
    rg: &dyn RowGroupReader,
    i: usize,
    target: Target,
    want: usize,
    out: &mut Column,
) -> Result<(), TableError> {
    let reader = rg.get_column_reader(i).map_err(perr)?;
    let nullable = rg.metadata().schema_descr().column(i).max_def_level() == 1;
    match (reader, target, out) {
        (ColumnReader::ByteArrayColumnReader(r), Target::Str, Column::Str(v)) => {
            read_typed(r, nullable, want, v, |b: ByteArray| {
                String::from_utf8(b.data().to_vec())
                    .map_err(|_| TableError::Parquet("string value is not valid UTF-8".into()))
            })
        }
        (ColumnReader::Int32ColumnReader(r), Target::Null, Column::Str(v)) => {
            read_typed(r, nullable, want, v, |_: i32| {
                Err(TableError::Parquet(
                    "null-typed column holds a value".into(),
                ))
            })
        }
        (ColumnReader::BoolColumnReader(r), Target::Null, Column::Str(v)) => {
            read_typed(r, nullable, want, v, |_: bool| {
                Err(TableError::Parquet(
                    "null-typed column holds a value".into(),
                ))
            })
        }
        (ColumnReader::Int64ColumnReader(r), Target::I64, Column::I64(v)) => {
            read_typed(r, nullable, want, v, Ok)
        }
        (ColumnReader::Int32ColumnReader(r), Target::I32 { unsigned }, Column::I64(v)) => {
            read_typed(r, nullable, want, v, |x: i32| {
                Ok(if unsigned {
                    i64::from(x as u32)
                } else {
                    i64::from(x)
                })
            })
        }
        (ColumnReader::DoubleColumnReader(r), Target::F64, Column::F64(v)) => {
            read_typed(r, nullable, want, v, Ok)
        }
        (ColumnReader::FloatColumnReader(r), Target::F32, Column::F64(v)) => {
            read_typed(r, nullable, want, v, |x: f32| Ok(f64::from(x)))
        }
        (ColumnReader::BoolColumnReader(r), Target::Bool, Column::Bool(v)) => {
            read_typed(r, nullable, want, v, Ok)
        }
        _ => Err(TableError::Parquet(
            "physical type does not match the annotated type".into(),
        )),
    }
}

fn read_typed<T, O, F>(
    mut r: ColumnReaderImpl<T>,
    nullable: bool,
    want: usize,
    out: &mut Vec<Option<O>>,
    convert: F,
) -> Result<(), TableError>
where
    T: DataType,
    F: Fn(T::T) -> Result<O, TableError>,
{
    let mut defs: Vec<i16> = Vec::new();
    let mut values: Vec<T::T> = Vec::new();
    let mut done = 0usize;
    while done < want {
        let batch = (want - done).min(READ_BATCH);
        defs.clear();
        values.clear();
        let (records, n_values, n_levels) = r
            .read_records(batch, Some(&mut defs), None, &mut values)
            .map_err(perr)?;
        if records == 0 {
            return Err(TableError::Parquet(format!(
                "truncated column chunk: {done} of {want} rows"
            )));
        }
        let consistent = values.len() == n_values
            && records <= batch
            && if nullable {
                defs.len() == records && n_levels == records
            } else {
                n_values == records
            };
        if !consistent {
            return Err(TableError::Parquet("inconsistent value count".into()));
        }
        let mut vals = values.drain(..);
        if nullable {
            for &d in &defs {
                if d == 1 {
                    let x = vals.next().ok_or_else(|| {
                        TableError::Parquet("fewer values than definition levels".into())
                    })?;
                    out.push(Some(convert(x)?));
                } else {
                    out.push(None);
                }
            }
        } else {
            for x in vals.by_ref().take(records) {
                out.push(Some(convert(x)?));
            }
        }
        if vals.next().is_some() {
            return Err(TableError::Parquet(
                "more values than definition levels".into(),
            ));
        }
        done += records;
    }
    Ok(())
}
