//! One Parquet footer → one Iceberg [`DataFile`]: sizes, counts, bounds and partition values.
//!
//! iceberg-rust has no public "add files", so the manifest entry is built here. Columns are
//! matched to table fields by name (nested struct children as `parent.child`), as the name
//! mapping tells readers to do. Partition values come from the statistics: a file must hold one
//! value of every partition field (one cell, one year), otherwise it is refused, and those
//! statistics must be present and exact (a truncated bound names no partition).

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, DataFileFormat, Datum, Literal, NestedField,
    PartitionSpec, PrimitiveLiteral, PrimitiveType, Schema, Struct, Transform, Type,
};
use iceberg::transform::create_transform_function;
use parquet::basic::{ConvertedType, LogicalType, TimeUnit, Type as PhysicalType};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;
use parquet::schema::types::{ColumnDescriptor, TypePtr};

/// Length (in characters or bytes) of the string/binary bounds kept in manifests, as the
/// Iceberg default metrics mode `truncate(16)`: full JSON columns would bloat every manifest.
const BOUND_LENGTH: usize = 16;

/// Why a Parquet file cannot be registered.
#[derive(Debug, thiserror::Error)]
pub enum DataFileError {
    /// A column the table does not have.
    #[error("file {file} has column '{column}', which is not in the table schema")]
    UnknownColumn {
        /// The file URI.
        file: String,
        /// The column path.
        column: String,
    },
    /// A column whose Parquet type cannot hold the table field's type.
    #[error("file {file} column '{column}' is {physical}, which cannot be read as {expected}")]
    TypeMismatch {
        /// The file URI.
        file: String,
        /// The column path.
        column: String,
        /// The Parquet physical/logical type found.
        physical: String,
        /// The Iceberg type of the field.
        expected: String,
    },
    /// A partition source column with more than one partition value.
    #[error(
        "file {file} spans more than one partition: {field} has {low} and {high} (each file must hold one cell and one year)"
    )]
    SpansPartitions {
        /// The file URI.
        file: String,
        /// The partition source column.
        field: String,
        /// The partition value of the column's minimum.
        low: String,
        /// The partition value of the column's maximum.
        high: String,
    },
    /// A partition source column with both nulls and values (two partitions: null and a value).
    #[error(
        "file {file} spans more than one partition: {field} is null in {nulls} of {rows} rows and set in the others"
    )]
    MixedNulls {
        /// The file URI.
        file: String,
        /// The partition source column.
        field: String,
        /// Null rows.
        nulls: u64,
        /// All rows.
        rows: u64,
    },
    /// A partition source column without min/max statistics.
    #[error("file {file} has no min/max statistics for '{field}', so its partition is unknown")]
    NoStatistics {
        /// The file URI.
        file: String,
        /// The partition source column.
        field: String,
    },
    /// A partition source column whose min/max statistics are not exact values (truncated by
    /// the writer, or written without the exactness flags), so its partition is unknown.
    #[error(
        "file {file} has inexact min/max statistics for '{field}' (truncated, or not marked exact by its writer), so its partition is unknown; rewrite it with full statistics"
    )]
    InexactStatistics {
        /// The file URI.
        file: String,
        /// The partition source column.
        field: String,
    },
    /// iceberg refused the values (partition transform, builder).
    #[error("cannot describe file {file} for iceberg: {source}")]
    Iceberg {
        /// The file URI.
        file: String,
        /// iceberg's error.
        source: Box<iceberg::Error>,
    },
}

/// How a column's statistics are decoded into values of the table field's type.
#[derive(Debug, Clone, Copy)]
enum Decoder {
    Utf8,
    Binary,
    Int32AsLong,
    Int64AsLong,
    Int32,
    FloatAsDouble,
    Double,
    /// INT64 timestamp in the given unit, stored as microseconds.
    Timestamp(Unit),
}

#[derive(Debug, Clone, Copy)]
enum Unit {
    Millis,
    Micros,
    Nanos,
}

/// Which end of a range a value bounds (decides rounding and truncation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Lower,
    Upper,
}

fn timestamp_unit(col: &ColumnDescriptor) -> Option<Unit> {
    match col.logical_type_ref() {
        Some(LogicalType::Timestamp { unit, .. }) => Some(match unit {
            TimeUnit::MILLIS => Unit::Millis,
            TimeUnit::MICROS => Unit::Micros,
            TimeUnit::NANOS => Unit::Nanos,
        }),
        _ => match col.converted_type() {
            ConvertedType::TIMESTAMP_MILLIS => Some(Unit::Millis),
            ConvertedType::TIMESTAMP_MICROS => Some(Unit::Micros),
            _ => None,
        },
    }
}

fn decoder(expected: &PrimitiveType, col: &ColumnDescriptor) -> Option<Decoder> {
    let physical = col.physical_type();
    match (expected, physical) {
        (PrimitiveType::String, PhysicalType::BYTE_ARRAY) => Some(Decoder::Utf8),
        (PrimitiveType::Binary, PhysicalType::BYTE_ARRAY) => Some(Decoder::Binary),
        (PrimitiveType::Long, PhysicalType::INT32) => Some(Decoder::Int32AsLong),
        (PrimitiveType::Long, PhysicalType::INT64) if timestamp_unit(col).is_none() => {
            Some(Decoder::Int64AsLong)
        }
        (PrimitiveType::Int, PhysicalType::INT32) => Some(Decoder::Int32),
        (PrimitiveType::Double, PhysicalType::DOUBLE) => Some(Decoder::Double),
        (PrimitiveType::Double, PhysicalType::FLOAT) => Some(Decoder::FloatAsDouble),
        (PrimitiveType::Timestamptz | PrimitiveType::Timestamp, PhysicalType::INT64) => {
            timestamp_unit(col).map(Decoder::Timestamp)
        }
        _ => None,
    }
}

fn to_micros(value: i64, unit: Unit, end: End) -> Option<i64> {
    match unit {
        Unit::Micros => Some(value),
        Unit::Millis => value.checked_mul(1000),
        // Rounded outwards so the bound still contains the value.
        Unit::Nanos => Some(match end {
            End::Lower => value.div_euclid(1000),
            End::Upper => value.div_euclid(1000) + i64::from(value.rem_euclid(1000) != 0),
        }),
    }
}

fn decode(
    decoder: Decoder,
    expected: &PrimitiveType,
    stats: &Statistics,
    end: End,
) -> Option<Datum> {
    let pick = |lo: Option<Datum>, hi: Option<Datum>| if end == End::Lower { lo } else { hi };
    match (decoder, stats) {
        (Decoder::Utf8, Statistics::ByteArray(s)) => {
            let v = if end == End::Lower { s.min_opt() } else { s.max_opt() }?;
            std::str::from_utf8(v.data()).ok().map(Datum::string)
        }
        (Decoder::Binary, Statistics::ByteArray(s)) => {
            let v = if end == End::Lower { s.min_opt() } else { s.max_opt() }?;
            Some(Datum::binary(v.data().iter().copied()))
        }
        (Decoder::Int32AsLong, Statistics::Int32(s)) => {
            pick(s.min_opt().map(|v| Datum::long(*v)), s.max_opt().map(|v| Datum::long(*v)))
        }
        (Decoder::Int32, Statistics::Int32(s)) => {
            pick(s.min_opt().map(|v| Datum::int(*v)), s.max_opt().map(|v| Datum::int(*v)))
        }
        (Decoder::Int64AsLong, Statistics::Int64(s)) => {
            pick(s.min_opt().map(|v| Datum::long(*v)), s.max_opt().map(|v| Datum::long(*v)))
        }
        (Decoder::Double, Statistics::Double(s)) => {
            let v = *(if end == End::Lower { s.min_opt() } else { s.max_opt() })?;
            (!v.is_nan()).then(|| Datum::double(v))
        }
        (Decoder::FloatAsDouble, Statistics::Float(s)) => {
            let v = *(if end == End::Lower { s.min_opt() } else { s.max_opt() })?;
            (!v.is_nan()).then(|| Datum::double(f64::from(v)))
        }
        (Decoder::Timestamp(unit), Statistics::Int64(s)) => {
            let v = *(if end == End::Lower { s.min_opt() } else { s.max_opt() })?;
            let micros = to_micros(v, unit, end)?;
            Some(if *expected == PrimitiveType::Timestamp {
                Datum::timestamp_micros(micros)
            } else {
                Datum::timestamptz_micros(micros)
            })
        }
        _ => None,
    }
}

/// Per-field totals over the row groups.
#[derive(Debug, Default)]
struct ColumnTotals {
    size: u64,
    values: u64,
    nulls: u64,
    /// A row group without a null count: the file-wide null count is unknown.
    nulls_unknown: bool,
    min: Option<Datum>,
    max: Option<Datum>,
    /// A row group with values but without min/max: the file-wide bounds are unknown.
    bounds_unknown: bool,
    /// A row group whose min or max is not an exact value (a truncated bound): the bounds still
    /// bound the values but do not name them.
    bounds_inexact: bool,
}

fn merge(current: &mut Option<Datum>, new: Datum, keep: Ordering) {
    match current {
        Some(c) if new.partial_cmp(c) != Some(keep) => {}
        _ => *current = Some(new),
    }
}

impl ColumnTotals {
    fn add(
        &mut self,
        chunk_values: u64,
        size: u64,
        stats: Option<&Statistics>,
        lo: Option<Datum>,
        hi: Option<Datum>,
    ) {
        self.size += size;
        self.values += chunk_values;
        let chunk_nulls = stats.and_then(Statistics::null_count_opt);
        match chunk_nulls {
            Some(n) => self.nulls += n,
            None => self.nulls_unknown = true,
        }
        let all_null = chunk_nulls == Some(chunk_values);
        match (lo, hi) {
            (Some(lo), Some(hi)) => {
                if stats.is_some_and(|s| !s.min_is_exact() || !s.max_is_exact()) {
                    self.bounds_inexact = true;
                }
                merge(&mut self.min, lo, Ordering::Less);
                merge(&mut self.max, hi, Ordering::Greater);
            }
            _ if all_null => {}
            _ => self.bounds_unknown = true,
        }
    }

    fn nulls(&self) -> Option<u64> {
        (!self.nulls_unknown).then_some(self.nulls)
    }

    fn all_null(&self) -> bool {
        self.nulls() == Some(self.values)
    }
}

/// Truncates a string or binary bound to [`BOUND_LENGTH`]; an upper bound is then incremented
/// so it still bounds the values (`None` when no such bound exists).
fn truncate_bound(datum: Datum, end: End) -> Option<Datum> {
    match datum.literal() {
        PrimitiveLiteral::String(s) if s.chars().count() > BOUND_LENGTH => {
            let prefix: Vec<char> = s.chars().take(BOUND_LENGTH).collect();
            match end {
                End::Lower => Some(Datum::string(prefix.iter().collect::<String>())),
                End::Upper => increment_chars(prefix).map(Datum::string),
            }
        }
        PrimitiveLiteral::Binary(b) if b.len() > BOUND_LENGTH => {
            let prefix = &b[..BOUND_LENGTH];
            match end {
                End::Lower => Some(Datum::binary(prefix.iter().copied())),
                End::Upper => increment_bytes(prefix).map(Datum::binary),
            }
        }
        _ => Some(datum),
    }
}

fn increment_chars(mut chars: Vec<char>) -> Option<String> {
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn increment_bytes(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut bytes = prefix.to_vec();
    while let Some(last) = bytes.pop() {
        if last < u8::MAX {
            bytes.push(last + 1);
            return Some(bytes);
        }
    }
    None
}

fn primitive(field: &NestedField) -> Option<&PrimitiveType> {
    match field.field_type.as_ref() {
        Type::Primitive(p) => Some(p),
        _ => None,
    }
}

/// How each column of a footer is read: the table field it fills (id and type) and its decoder.
type ColumnDecoders = Vec<(i32, PrimitiveType, Decoder)>;

/// The footer schema and table schema the decoders of this thread were last made for: a run
/// describes thousands of files of one schema, and matching each file's columns to fields again
/// (joining column paths, looking names up) took over a hundredth of a small-file run's CPU.
struct LastDecoders {
    footer: TypePtr,
    table: Schema,
    decoders: Arc<ColumnDecoders>,
}

thread_local! {
    static LAST_DECODERS: RefCell<Option<LastDecoders>> = const { RefCell::new(None) };
}

/// The decoders of `meta`'s columns into `schema`'s fields, reused while both schemas repeat.
fn column_decoders(
    file: &str,
    schema: &Schema,
    meta: &ParquetMetaData,
) -> Result<Arc<ColumnDecoders>, DataFileError> {
    let descr = meta.file_metadata().schema_descr();
    let cached = LAST_DECODERS.with_borrow(|last| {
        last.as_ref()
            .filter(|l| *l.footer == *descr.root_schema() && l.table == *schema)
            .map(|l| l.decoders.clone())
    });
    if let Some(decoders) = cached {
        return Ok(decoders);
    }
    let mut decoders = Vec::with_capacity(descr.num_columns());
    for col in descr.columns() {
        let name = col.path().string();
        let field = schema.field_by_name(&name).ok_or_else(|| DataFileError::UnknownColumn {
            file: file.to_string(),
            column: name.clone(),
        })?;
        let mismatch = || DataFileError::TypeMismatch {
            file: file.to_string(),
            column: name.clone(),
            physical: match col.logical_type_ref() {
                Some(l) => format!("{} ({l:?})", col.physical_type()),
                None => col.physical_type().to_string(),
            },
            expected: field.field_type.to_string(),
        };
        let expected = primitive(field).ok_or_else(mismatch)?;
        let decoder = decoder(expected, col).ok_or_else(mismatch)?;
        decoders.push((field.id, expected.clone(), decoder));
    }
    let decoders = Arc::new(decoders);
    LAST_DECODERS.set(Some(LastDecoders {
        footer: descr.root_schema_ptr(),
        table: schema.clone(),
        decoders: decoders.clone(),
    }));
    Ok(decoders)
}

fn totals_by_field(
    file: &str,
    schema: &Schema,
    meta: &ParquetMetaData,
) -> Result<HashMap<i32, ColumnTotals>, DataFileError> {
    let decoders = column_decoders(file, schema, meta)?;
    for (i, (_, _, decoder)) in decoders.iter().enumerate() {
        if matches!(decoder, Decoder::Timestamp(Unit::Millis)) {
            // PyIceberg reads these; iceberg-rust 0.10's scan refuses millisecond columns.
            let column = meta.file_metadata().schema_descr().column(i).path().string();
            tracing::warn!(file, column, "registering a millisecond timestamp column");
        }
    }
    let mut totals: HashMap<i32, ColumnTotals> = HashMap::new();
    for rg in meta.row_groups() {
        for (chunk, (id, expected, decoder)) in rg.columns().iter().zip(decoders.iter()) {
            let stats = chunk.statistics();
            let (lo, hi) = match stats {
                Some(s) => (
                    decode(*decoder, expected, s, End::Lower),
                    decode(*decoder, expected, s, End::Upper),
                ),
                None => (None, None),
            };
            let size = u64::try_from(chunk.compressed_size()).unwrap_or(0);
            let values = u64::try_from(chunk.num_values()).unwrap_or(0);
            totals.entry(*id).or_default().add(values, size, stats, lo, hi);
        }
    }
    Ok(totals)
}

/// A partition value for display in errors (`'cell'`, `year 2019`).
fn show_partition_value(transform: &Transform, value: &Datum) -> String {
    match (transform, value.literal()) {
        (Transform::Year, PrimitiveLiteral::Int(y)) => format!("year {}", 1970 + i64::from(*y)),
        (Transform::Identity, PrimitiveLiteral::String(s)) => format!("'{s}'"),
        _ => value.to_string(),
    }
}

fn partition_values(
    file: &str,
    schema: &Schema,
    spec: &PartitionSpec,
    totals: &HashMap<i32, ColumnTotals>,
    rows: u64,
) -> Result<Struct, DataFileError> {
    let iceberg =
        |source| DataFileError::Iceberg { file: file.to_string(), source: Box::new(source) };
    let mut values = Vec::with_capacity(spec.fields().len());
    for pf in spec.fields() {
        let field_name =
            schema.name_by_field_id(pf.source_id).unwrap_or(pf.name.as_str()).to_string();
        let Some(t) = totals.get(&pf.source_id).filter(|t| !t.all_null() && t.values > 0) else {
            // A column absent from the file, or null in every row: the null partition.
            values.push(None);
            continue;
        };
        if let Some(nulls) = t.nulls().filter(|n| *n > 0) {
            return Err(DataFileError::MixedNulls {
                file: file.to_string(),
                field: field_name,
                nulls,
                rows,
            });
        }
        let (Some(min), Some(max), false) = (&t.min, &t.max, t.bounds_unknown) else {
            return Err(DataFileError::NoStatistics { file: file.to_string(), field: field_name });
        };
        if t.bounds_inexact {
            return Err(DataFileError::InexactStatistics {
                file: file.to_string(),
                field: field_name,
            });
        }
        let f = create_transform_function(&pf.transform).map_err(iceberg)?;
        let low = f.transform_literal_result(min).map_err(iceberg)?;
        let high = f.transform_literal_result(max).map_err(iceberg)?;
        if low != high {
            return Err(DataFileError::SpansPartitions {
                file: file.to_string(),
                field: field_name,
                low: show_partition_value(&pf.transform, &low),
                high: show_partition_value(&pf.transform, &high),
            });
        }
        values.push(Some(Literal::from(low)));
    }
    Ok(Struct::from_iter(values))
}

/// Describes the Parquet file at `file` (its absolute URI, `size` bytes, footer `meta`) as a
/// data file of a table with `schema` and partition `spec`.
pub fn data_file_from_footer(
    file: &str,
    size: u64,
    meta: &ParquetMetaData,
    schema: &Schema,
    spec: &PartitionSpec,
) -> Result<DataFile, DataFileError> {
    let rows = u64::try_from(meta.file_metadata().num_rows()).unwrap_or(0);
    let totals = totals_by_field(file, schema, meta)?;
    let partition = partition_values(file, schema, spec, &totals, rows)?;
    let mut column_sizes = HashMap::new();
    let mut value_counts = HashMap::new();
    let mut null_counts = HashMap::new();
    let mut lower = HashMap::new();
    let mut upper = HashMap::new();
    for (id, t) in totals {
        column_sizes.insert(id, t.size);
        value_counts.insert(id, t.values);
        if let Some(n) = t.nulls() {
            null_counts.insert(id, n);
        }
        if t.bounds_unknown {
            continue;
        }
        if let Some(lo) = t.min.and_then(|d| truncate_bound(d, End::Lower)) {
            lower.insert(id, lo);
        }
        if let Some(hi) = t.max.and_then(|d| truncate_bound(d, End::Upper)) {
            upper.insert(id, hi);
        }
    }
    let offsets: Option<Vec<i64>> = meta.row_groups().iter().map(|rg| rg.file_offset()).collect();
    DataFileBuilder::default()
        .content(DataContentType::Data)
        .file_path(file.to_string())
        .file_format(DataFileFormat::Parquet)
        .partition(partition)
        .partition_spec_id(spec.spec_id())
        .record_count(rows)
        .file_size_in_bytes(size)
        .column_sizes(column_sizes)
        .value_counts(value_counts)
        .null_value_counts(null_counts)
        .lower_bounds(lower)
        .upper_bounds(upper)
        .split_offsets(offsets.filter(|o| o.is_sorted()))
        .build()
        .map_err(|e| DataFileError::Iceberg {
            file: file.to_string(),
            source: Box::new(iceberg::Error::new(iceberg::ErrorKind::DataInvalid, e.to_string())),
        })
}

/// The partition a data file of this project's table belongs to by its footer, as registration
/// would record it: the `grid_partition` value and the UTC year of `datetime` (each `None` when
/// null). The coordinator compares it with the task's before accepting a result, so a file
/// holding another partition's rows is refused instead of registered.
pub fn footer_cell_year(
    file: &str,
    meta: &ParquetMetaData,
) -> Result<(Option<String>, Option<i32>), DataFileError> {
    let iceberg =
        |source| DataFileError::Iceberg { file: file.to_string(), source: Box::new(source) };
    let schema = super::table::iceberg_schema().map_err(iceberg)?;
    let spec =
        super::table::partition_spec().and_then(|s| s.bind(schema.clone())).map_err(iceberg)?;
    let rows = u64::try_from(meta.file_metadata().num_rows()).unwrap_or(0);
    let totals = totals_by_field(file, &schema, meta)?;
    let values = partition_values(file, &schema, &spec, &totals, rows)?;
    let mut cell = None;
    let mut year = None;
    for (pf, value) in spec.fields().iter().zip(values.iter()) {
        match (&pf.transform, value) {
            (Transform::Identity, Some(Literal::Primitive(PrimitiveLiteral::String(s)))) => {
                cell = Some(s.clone());
            }
            // Iceberg's year transform counts years from 1970.
            (Transform::Year, Some(Literal::Primitive(PrimitiveLiteral::Int(y)))) => {
                year = Some(1970 + y);
            }
            _ => {}
        }
    }
    Ok((cell, year))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn long_string_bounds_are_truncated_and_the_upper_one_still_bounds() {
        let long = "abcdefghijklmnopqrstuvwxyz";
        let lo = truncate_bound(Datum::string(long), End::Lower).unwrap();
        let hi = truncate_bound(Datum::string(long), End::Upper).unwrap();
        assert_eq!(lo, Datum::string("abcdefghijklmnop"));
        assert_eq!(hi, Datum::string("abcdefghijklmnoq"));
        assert!(hi > Datum::string(long));
        let short = Datum::string("8a1fb46622dffff");
        assert_eq!(truncate_bound(short.clone(), End::Upper), Some(short));
        assert_eq!(increment_bytes(&[1, 0xff]), Some(vec![2]));
        assert_eq!(increment_bytes(&[0xff, 0xff]), None);
    }

    #[test]
    fn nanosecond_bounds_round_outwards_and_millis_scale_up() {
        assert_eq!(to_micros(1_500, Unit::Nanos, End::Lower), Some(1));
        assert_eq!(to_micros(1_500, Unit::Nanos, End::Upper), Some(2));
        assert_eq!(to_micros(-1_500, Unit::Nanos, End::Lower), Some(-2));
        assert_eq!(to_micros(7, Unit::Millis, End::Lower), Some(7_000));
        assert_eq!(to_micros(i64::MAX, Unit::Millis, End::Upper), None);
    }
}
