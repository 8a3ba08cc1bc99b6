//! Manifests encoded straight from their entries.
//!
//! iceberg-rust's manifest writer turns each entry into a generic Avro value, resolves that
//! against the schema, then validates it again as it appends: about 0.13 ms per entry of this
//! table (six maps of per-column metrics each), which was a sixth of the CPU of an incremental run
//! that writes a file per item. Here each entry is serialized against the schema as it is. The
//! schema and the header metadata are taken from a manifest iceberg-rust itself writes (with no
//! entries, in memory), so they cannot drift from what iceberg writes; the manifest list's
//! entry (counts, sequence numbers, partition summaries) follows iceberg's writer's rules.
//! Readers cannot tell the two apart: a test decodes both with iceberg and compares them.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use apache_avro::Schema as AvroSchema;
use bytes::Bytes;
use iceberg::io::FileIO;
use iceberg::spec::{
    DataFile, Datum, FieldSummary, Literal, ManifestContentType, ManifestFile, ManifestStatus,
    ManifestWriter, ManifestWriterBuilder, PrimitiveLiteral, PrimitiveType, TableMetadata, Type,
};
use iceberg::{Error, ErrorKind};
use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};

/// The sequence number iceberg leaves in a new manifest's list entry, assigned at commit.
const UNASSIGNED_SEQUENCE_NUMBER: i64 = -1;

/// One entry to encode, with the status, snapshot id and sequence numbers it is written with.
#[derive(Debug, Clone, Copy)]
pub(super) struct EntryToWrite<'a> {
    /// Added, existing or deleted.
    pub status: ManifestStatus,
    /// The snapshot that added (or deleted) the file.
    pub snapshot_id: i64,
    /// Data sequence number; `None` for added files (inherited at commit).
    pub sequence_number: Option<i64>,
    /// File sequence number; `None` for added files.
    pub file_sequence_number: Option<i64>,
    /// The file.
    pub file: &'a DataFile,
}

impl EntryToWrite<'_> {
    /// Adds this entry to iceberg's own manifest writer, with the same status, snapshot id and
    /// sequence numbers the encoder writes (for tables the encoder leaves to iceberg).
    pub(super) fn add_to(&self, writer: &mut ManifestWriter) -> Result<(), Error> {
        let file = self.file.clone();
        let seq = self.sequence_number.unwrap_or_default();
        match self.status {
            // -1: no data sequence number of its own; it inherits the snapshot's at commit.
            ManifestStatus::Added => writer.add_file(file, -1),
            ManifestStatus::Existing => {
                writer.add_existing_file(file, self.snapshot_id, seq, self.file_sequence_number)
            }
            ManifestStatus::Deleted => writer.add_delete_file(file, seq, self.file_sequence_number),
        }
    }
}

/// How a table's data manifests are encoded: the Avro schema and header iceberg writes for its
/// current schema and default partition spec.
pub(super) struct ManifestFormat {
    schema: AvroSchema,
    header: Vec<(String, Vec<u8>)>,
    partition_names: Vec<&'static str>,
    partition_types: Vec<PrimitiveType>,
    spec_id: i32,
}

impl ManifestFormat {
    /// The format of `metadata`'s data manifests, or `None` when its partition type has a field
    /// this encoder does not write (nested, decimal, UUID or fixed values: left to iceberg).
    pub(super) async fn of(metadata: &TableMetadata) -> Result<Option<ManifestFormat>, Error> {
        let schema = metadata.current_schema();
        let spec = metadata.default_partition_spec();
        let partition_type = spec.partition_type(schema)?;
        let mut partition_names = Vec::new();
        let mut partition_types = Vec::new();
        for field in partition_type.fields() {
            match field.field_type.as_ref() {
                Type::Primitive(p) if supported(p) => {
                    partition_names.push(interned(&field.name));
                    partition_types.push(p.clone());
                }
                _ => return Ok(None),
            }
        }
        let io = FileIO::new_with_memory();
        let path = "memory:///earthcatalog/manifest-format.avro";
        let writer = ManifestWriterBuilder::new(
            io.new_output(path)?,
            None,
            schema.clone(),
            (**spec).clone(),
        )
        .build_v2_data();
        writer.write_manifest_file().await?;
        let written = io.new_input(path)?.read().await?;
        let reader = apache_avro::Reader::new(&written[..]).map_err(avro_error)?;
        let mut header: Vec<_> =
            reader.user_metadata().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        header.sort();
        Ok(Some(ManifestFormat {
            schema: reader.writer_schema().clone(),
            header,
            partition_names,
            partition_types,
            spec_id: spec.spec_id(),
        }))
    }

    /// Encodes `entries` as one manifest to be stored at `path` by the snapshot `snapshot_id`;
    /// returns its bytes and its manifest list entry.
    pub(super) fn encode(
        &self,
        path: &str,
        snapshot_id: i64,
        entries: &[EntryToWrite<'_>],
    ) -> Result<(Bytes, ManifestFile), Error> {
        let mut writer = apache_avro::Writer::new(&self.schema, Vec::new());
        for (key, value) in &self.header {
            writer.add_user_metadata(key.clone(), value).map_err(avro_error)?;
        }
        let mut list = ListEntry::new(&self.partition_types);
        for entry in entries {
            list.count(entry)?;
            writer
                .append_ser(ManifestEntrySer::of(entry, &self.partition_names)?)
                .map_err(avro_error)?;
        }
        let content = writer.into_inner().map_err(avro_error)?;
        let manifest = list.finish(path, content.len(), self.spec_id, snapshot_id);
        Ok((Bytes::from(content), manifest))
    }
}

/// Whether partition values of this type are written here (decimals, UUIDs and fixed-length
/// values are left to iceberg's writer).
fn supported(p: &PrimitiveType) -> bool {
    !matches!(p, PrimitiveType::Decimal { .. } | PrimitiveType::Uuid | PrimitiveType::Fixed(_))
}

/// A partition value as a typed value (for its manifest list bounds), `None` when the literal does
/// not fit the type.
fn datum_of(ty: &PrimitiveType, value: &PrimitiveLiteral) -> Option<Datum> {
    use PrimitiveLiteral as L;
    use PrimitiveType as T;
    Some(match (ty, value) {
        (T::Boolean, L::Boolean(v)) => Datum::bool(*v),
        (T::Int, L::Int(v)) => Datum::int(*v),
        (T::Long, L::Long(v)) => Datum::long(*v),
        (T::Float, L::Float(v)) => Datum::float(v.0),
        (T::Double, L::Double(v)) => Datum::double(v.0),
        (T::Date, L::Int(v)) => Datum::date(*v),
        (T::Time, L::Long(v)) => Datum::time_micros(*v).ok()?,
        (T::Timestamp, L::Long(v)) => Datum::timestamp_micros(*v),
        (T::Timestamptz, L::Long(v)) => Datum::timestamptz_micros(*v),
        (T::TimestampNs, L::Long(v)) => Datum::timestamp_nanos(*v),
        (T::TimestamptzNs, L::Long(v)) => Datum::timestamptz_nanos(*v),
        (T::String, L::String(v)) => Datum::string(v),
        (T::Binary, L::Binary(v)) => Datum::binary(v.iter().copied()),
        _ => return None,
    })
}

/// A partition field's name as the `'static` string serde's struct fields need; a table has a
/// handful, kept for the process.
fn interned(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let mut names =
        NAMES.get_or_init(Mutex::default).lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(kept) = names.get(name) {
        return kept;
    }
    let kept: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(name.to_string(), kept);
    kept
}

fn avro_error(e: apache_avro::Error) -> Error {
    Error::new(ErrorKind::DataInvalid, "cannot encode a manifest").with_source(e)
}

/// Counts and partition ranges of a manifest's entries, for its manifest list entry.
struct ListEntry {
    added: (u32, u64),
    existing: (u32, u64),
    deleted: (u32, u64),
    min_sequence_number: Option<i64>,
    partitions: Vec<PartitionRange>,
}

impl ListEntry {
    fn new(types: &[PrimitiveType]) -> Self {
        ListEntry {
            added: (0, 0),
            existing: (0, 0),
            deleted: (0, 0),
            min_sequence_number: None,
            partitions: types.iter().cloned().map(PartitionRange::new).collect(),
        }
    }

    fn count(&mut self, entry: &EntryToWrite<'_>) -> Result<(), Error> {
        let rows = entry.file.record_count();
        let counter = match entry.status {
            ManifestStatus::Added => &mut self.added,
            ManifestStatus::Existing => &mut self.existing,
            ManifestStatus::Deleted => &mut self.deleted,
        };
        counter.0 += 1;
        counter.1 += rows;
        // As iceberg: the smallest data sequence number of the live entries.
        if entry.status != ManifestStatus::Deleted
            && let Some(seq) = entry.sequence_number
        {
            self.min_sequence_number = Some(self.min_sequence_number.map_or(seq, |m| m.min(seq)));
        }
        for (range, value) in self.partitions.iter_mut().zip(entry.file.partition().iter()) {
            range.update(value)?;
        }
        Ok(())
    }

    fn finish(self, path: &str, length: usize, spec_id: i32, snapshot_id: i64) -> ManifestFile {
        ManifestFile {
            manifest_path: path.to_string(),
            manifest_length: length as i64,
            partition_spec_id: spec_id,
            content: ManifestContentType::Data,
            sequence_number: UNASSIGNED_SEQUENCE_NUMBER,
            min_sequence_number: self.min_sequence_number.unwrap_or(UNASSIGNED_SEQUENCE_NUMBER),
            added_snapshot_id: snapshot_id,
            added_files_count: Some(self.added.0),
            existing_files_count: Some(self.existing.0),
            deleted_files_count: Some(self.deleted.0),
            added_rows_count: Some(self.added.1),
            existing_rows_count: Some(self.existing.1),
            deleted_rows_count: Some(self.deleted.1),
            partitions: Some(self.partitions.into_iter().map(PartitionRange::finish).collect()),
            key_metadata: None,
            first_row_id: None,
        }
    }
}

/// The range of one partition field's values over a manifest, as the manifest list records it.
struct PartitionRange {
    ty: PrimitiveType,
    contains_null: bool,
    contains_nan: bool,
    lower: Option<Datum>,
    upper: Option<Datum>,
}

impl PartitionRange {
    fn new(ty: PrimitiveType) -> Self {
        PartitionRange { ty, contains_null: false, contains_nan: false, lower: None, upper: None }
    }

    fn update(&mut self, value: Option<&Literal>) -> Result<(), Error> {
        let Some(value) = value else {
            self.contains_null = true;
            return Ok(());
        };
        let Literal::Primitive(p) = value else {
            return Err(Error::new(ErrorKind::DataInvalid, "a partition value is not primitive"));
        };
        let datum = datum_of(&self.ty, p).ok_or_else(|| {
            Error::new(
                ErrorKind::DataInvalid,
                format!("partition value {p:?} is not of the partition type {}", self.ty),
            )
        })?;
        if datum.is_nan() {
            self.contains_nan = true;
            return Ok(());
        }
        if self.lower.as_ref().is_none_or(|l| datum < *l) {
            self.lower = Some(datum.clone());
        }
        if self.upper.as_ref().is_none_or(|u| datum > *u) {
            self.upper = Some(datum);
        }
        Ok(())
    }

    fn finish(self) -> FieldSummary {
        // A bound that cannot be encoded is left out (readers then cannot skip by it).
        FieldSummary {
            contains_null: self.contains_null,
            contains_nan: Some(self.contains_nan),
            lower_bound: self.lower.and_then(|d| d.to_bytes().ok()),
            upper_bound: self.upper.and_then(|d| d.to_bytes().ok()),
        }
    }
}

/// A manifest entry as the v2 manifest schema has it.
#[derive(Serialize)]
struct ManifestEntrySer<'a> {
    status: i32,
    snapshot_id: Option<i64>,
    sequence_number: Option<i64>,
    file_sequence_number: Option<i64>,
    data_file: DataFileSer<'a>,
}

/// A data file as the v2 manifest schema has it (maps as arrays of key-value records).
#[derive(Serialize)]
struct DataFileSer<'a> {
    content: i32,
    file_path: &'a str,
    file_format: String,
    partition: PartitionSer<'a>,
    record_count: i64,
    file_size_in_bytes: i64,
    column_sizes: Option<Vec<Count>>,
    value_counts: Option<Vec<Count>>,
    null_value_counts: Option<Vec<Count>>,
    nan_value_counts: Option<Vec<Count>>,
    lower_bounds: Option<Vec<Bound>>,
    upper_bounds: Option<Vec<Bound>>,
    key_metadata: Option<&'a serde_bytes::Bytes>,
    split_offsets: Option<&'a [i64]>,
    equality_ids: Option<Vec<i32>>,
    sort_order_id: Option<i32>,
    first_row_id: Option<i64>,
    referenced_data_file: Option<String>,
    content_offset: Option<i64>,
    content_size_in_bytes: Option<i64>,
}

#[derive(Serialize)]
struct Count {
    key: i32,
    value: i64,
}

#[derive(Serialize)]
struct Bound {
    key: i32,
    value: serde_bytes::ByteBuf,
}

/// A file's partition values, one optional field per partition field.
struct PartitionSer<'a> {
    names: &'a [&'static str],
    values: Vec<Option<&'a PrimitiveLiteral>>,
}

impl Serialize for PartitionSer<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut record = serializer.serialize_struct("r102", self.names.len())?;
        for (name, value) in self.names.iter().zip(&self.values) {
            match value {
                None => record.serialize_field(name, &None::<()>)?,
                Some(PrimitiveLiteral::Boolean(v)) => record.serialize_field(name, &Some(v))?,
                Some(PrimitiveLiteral::Int(v)) => record.serialize_field(name, &Some(v))?,
                Some(PrimitiveLiteral::Long(v)) => record.serialize_field(name, &Some(v))?,
                Some(PrimitiveLiteral::Float(v)) => record.serialize_field(name, &Some(v.0))?,
                Some(PrimitiveLiteral::Double(v)) => record.serialize_field(name, &Some(v.0))?,
                Some(PrimitiveLiteral::String(v)) => record.serialize_field(name, &Some(v))?,
                Some(PrimitiveLiteral::Binary(v)) => {
                    record.serialize_field(name, &Some(serde_bytes::Bytes::new(v)))?
                }
                Some(other) => {
                    return Err(serde::ser::Error::custom(format!(
                        "partition field {name} holds {other:?}, which is not written here"
                    )));
                }
            }
        }
        record.end()
    }
}

impl<'a> ManifestEntrySer<'a> {
    fn of(entry: &EntryToWrite<'a>, names: &'a [&'static str]) -> Result<Self, Error> {
        let f = entry.file;
        let counts = |m: &HashMap<i32, u64>| -> Result<Option<Vec<Count>>, Error> {
            let mut v = m
                .iter()
                .map(|(k, n)| Ok(Count { key: *k, value: i64::try_from(*n)? }))
                .collect::<Result<Vec<_>, Error>>()?;
            v.sort_unstable_by_key(|c| c.key);
            Ok(Some(v))
        };
        let bounds = |m: &HashMap<i32, Datum>| -> Result<Option<Vec<Bound>>, Error> {
            let mut v = m
                .iter()
                .map(|(k, d)| Ok(Bound { key: *k, value: d.to_bytes()? }))
                .collect::<Result<Vec<_>, Error>>()?;
            v.sort_unstable_by_key(|b| b.key);
            Ok(Some(v))
        };
        let values = f
            .partition()
            .iter()
            .map(|v| match v {
                None => Ok(None),
                Some(Literal::Primitive(p)) => Ok(Some(p)),
                Some(_) => {
                    Err(Error::new(ErrorKind::DataInvalid, "a partition value is not primitive"))
                }
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(ManifestEntrySer {
            status: entry.status as i32,
            snapshot_id: Some(entry.snapshot_id),
            sequence_number: entry.sequence_number,
            file_sequence_number: entry.file_sequence_number,
            data_file: DataFileSer {
                content: f.content_type() as i32,
                file_path: f.file_path(),
                file_format: f.file_format().to_string().to_ascii_uppercase(),
                partition: PartitionSer { names, values },
                record_count: i64::try_from(f.record_count())?,
                file_size_in_bytes: i64::try_from(f.file_size_in_bytes())?,
                column_sizes: counts(f.column_sizes())?,
                value_counts: counts(f.value_counts())?,
                null_value_counts: counts(f.null_value_counts())?,
                nan_value_counts: counts(f.nan_value_counts())?,
                lower_bounds: bounds(f.lower_bounds())?,
                upper_bounds: bounds(f.upper_bounds())?,
                key_metadata: f.key_metadata().map(serde_bytes::Bytes::new),
                split_offsets: f.split_offsets(),
                equality_ids: f.equality_ids(),
                sort_order_id: f.sort_order_id(),
                first_row_id: f.first_row_id(),
                referenced_data_file: f.referenced_data_file(),
                content_offset: f.content_offset(),
                content_size_in_bytes: f.content_size_in_bytes(),
            },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use iceberg::spec::{
        DataContentType, DataFileBuilder, DataFileFormat, FormatVersion, Manifest, NestedField,
        Schema, SortOrder, Struct, TableMetadataBuilder, Transform, UnboundPartitionSpec,
    };

    use super::*;
    use crate::catalog::table::{iceberg_schema, partition_spec};

    fn metadata(schema: Schema, spec: UnboundPartitionSpec) -> TableMetadata {
        TableMetadataBuilder::new(
            schema,
            spec,
            SortOrder::unsorted_order(),
            "memory:///tables/t".to_string(),
            FormatVersion::V2,
            HashMap::new(),
        )
        .unwrap()
        .build()
        .unwrap()
        .metadata
    }

    fn cell_year(cell: Option<&str>, year: Option<i32>) -> Struct {
        Struct::from_iter([cell.map(Literal::string), year.map(Literal::int)])
    }

    /// A data file of `partition` with metrics of several kinds, as registration
    /// makes them (strings, longs, timestamps, doubles, binary; empty NaN counts or not).
    fn file(n: u64, partition: Struct) -> DataFile {
        let n_i = n as i64;
        DataFileBuilder::default()
            .content(DataContentType::Data)
            .file_path(format!("memory:///tables/t/data/f{n}.parquet"))
            .file_format(DataFileFormat::Parquet)
            .partition(partition)
            .record_count(10 + n)
            .file_size_in_bytes(1_000 + n)
            .column_sizes(HashMap::from([(1, 100 + n), (4, 7)]))
            .value_counts(HashMap::from([(1, 10 + n), (4, 10 + n)]))
            .null_value_counts(HashMap::from([(1, 0), (4, n % 3)]))
            .nan_value_counts(if n.is_multiple_of(2) {
                HashMap::new()
            } else {
                HashMap::from([(26, 0)])
            })
            .lower_bounds(HashMap::from([
                (1, Datum::string(format!("item-{n:04}"))),
                (3, Datum::binary([0u8, 1, 2])),
                (4, Datum::timestamptz_micros(1_600_000_000_000_000 + n_i)),
                (6, Datum::long(-n_i)),
                (26, Datum::double(-1.5 - n as f64)),
            ]))
            .upper_bounds(HashMap::from([
                (1, Datum::string(format!("item-{n:04}z"))),
                (4, Datum::timestamptz_micros(1_700_000_000_000_000 + n_i)),
                (26, Datum::double(2.5 + n as f64)),
            ]))
            .split_offsets(Some(vec![4]))
            .sort_order_id(0)
            .build()
            .unwrap()
    }

    /// The `avro.schema` text of an Avro container file's header, parsed as JSON.
    fn schema_json(file: &[u8]) -> serde_json::Value {
        let key = b"avro.schema";
        let at = file.windows(key.len()).position(|w| w == key).unwrap() + key.len();
        // The value's length as a zig-zag varint, then the JSON text.
        let (mut len, mut shift, mut i) = (0u64, 0, at);
        loop {
            let b = file[i];
            len |= u64::from(b & 0x7f) << shift;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let text = &file[i..i + (len >> 1) as usize];
        assert!(String::from_utf8_lossy(text).contains("\"field-id\""), "no field ids");
        serde_json::from_slice(text).unwrap()
    }

    /// The same entries written by iceberg's writer and by the encoder, both decoded by iceberg.
    async fn both(
        metadata: &TableMetadata,
        entries: &[EntryToWrite<'_>],
    ) -> ((Manifest, ManifestFile), (Manifest, ManifestFile)) {
        let snapshot_id = 77;
        let io = FileIO::new_with_memory();
        let theirs_path = "memory:///tables/t/metadata/theirs.avro";
        let mut writer = ManifestWriterBuilder::new(
            io.new_output(theirs_path).unwrap(),
            Some(snapshot_id),
            metadata.current_schema().clone(),
            (**metadata.default_partition_spec()).clone(),
        )
        .build_v2_data();
        for e in entries {
            e.add_to(&mut writer).unwrap();
        }
        let theirs_list = writer.write_manifest_file().await.unwrap();
        let theirs_bytes = io.new_input(theirs_path).unwrap().read().await.unwrap();
        let theirs = Manifest::parse_avro(&theirs_bytes).unwrap();

        let format = ManifestFormat::of(metadata).await.unwrap().unwrap();
        let ours_path = "memory:///tables/t/metadata/ours.avro";
        let (bytes, ours_list) = format.encode(ours_path, snapshot_id, entries).unwrap();
        assert_eq!(ours_list.manifest_length as usize, bytes.len());
        let ours = Manifest::parse_avro(&bytes).unwrap();
        // The Avro schema text itself, field ids included: other readers (PyIceberg, Java)
        // resolve manifest fields by those ids, which iceberg-rust's own reader ignores.
        assert_eq!(schema_json(&bytes), schema_json(&theirs_bytes));
        ((theirs, theirs_list), (ours, ours_list))
    }

    #[tokio::test]
    async fn a_manifest_decodes_to_what_iceberg_s_writer_writes() {
        let metadata = metadata(iceberg_schema().unwrap(), partition_spec().unwrap());
        let files: Vec<DataFile> = (0..12)
            .map(|n| match n {
                3 => file(n, cell_year(Some("8a1fb46622dffff"), None)),
                5 => file(n, cell_year(None, Some(2020))),
                _ => {
                    file(n, cell_year(Some(&format!("81{n:02}fffffffffff")), Some(2000 + n as i32)))
                }
            })
            .collect();
        let entries: Vec<EntryToWrite<'_>> = files
            .iter()
            .enumerate()
            .map(|(i, f)| match i % 3 {
                0 => EntryToWrite {
                    status: ManifestStatus::Added,
                    snapshot_id: 77,
                    sequence_number: None,
                    file_sequence_number: None,
                    file: f,
                },
                1 => EntryToWrite {
                    status: ManifestStatus::Existing,
                    snapshot_id: 5 + i as i64,
                    sequence_number: Some(i as i64),
                    file_sequence_number: Some(i as i64 + 1),
                    file: f,
                },
                _ => EntryToWrite {
                    status: ManifestStatus::Deleted,
                    snapshot_id: 77,
                    sequence_number: Some(2),
                    file_sequence_number: Some(3),
                    file: f,
                },
            })
            .collect();
        let ((theirs, theirs_list), (ours, mut ours_list)) = both(&metadata, &entries).await;
        assert_eq!(ours.entries().len(), 12);
        assert_eq!(ours.entries(), theirs.entries());
        assert_eq!(ours.metadata(), theirs.metadata());
        ours_list.manifest_path = theirs_list.manifest_path.clone();
        ours_list.manifest_length = theirs_list.manifest_length;
        assert_eq!(ours_list, theirs_list);
        // The ranges hold both nulls and values, and the real extremes.
        let cells = &ours_list.partitions.as_ref().unwrap()[0];
        assert!(cells.contains_null);
        assert_eq!(
            cells.lower_bound.as_ref().map(|b| b.to_vec()),
            Some(b"8100fffffffffff".to_vec())
        );
        assert_eq!(
            cells.upper_bound.as_ref().map(|b| b.to_vec()),
            Some(b"8a1fb46622dffff".to_vec())
        );
    }

    #[tokio::test]
    async fn an_empty_manifest_and_a_table_without_partitions_decode_alike() {
        let unpartitioned = metadata(iceberg_schema().unwrap(), UnboundPartitionSpec::default());
        let files: Vec<DataFile> = (0..2).map(|n| file(n, Struct::empty())).collect();
        let entries: Vec<EntryToWrite<'_>> = files
            .iter()
            .map(|f| EntryToWrite {
                status: ManifestStatus::Added,
                snapshot_id: 77,
                sequence_number: None,
                file_sequence_number: None,
                file: f,
            })
            .collect();
        for entries in [&entries[..0], &entries[..]] {
            let ((theirs, theirs_list), (ours, mut ours_list)) =
                both(&unpartitioned, entries).await;
            assert_eq!(ours.entries(), theirs.entries());
            ours_list.manifest_path = theirs_list.manifest_path.clone();
            ours_list.manifest_length = theirs_list.manifest_length;
            assert_eq!(ours_list, theirs_list);
        }
    }

    #[tokio::test]
    async fn a_partition_type_the_encoder_does_not_write_is_left_to_iceberg() {
        let schema = Schema::builder()
            .with_fields(vec![Arc::new(NestedField::optional(
                1,
                "price",
                Type::Primitive(PrimitiveType::Decimal { precision: 10, scale: 2 }),
            ))])
            .build()
            .unwrap();
        let spec = UnboundPartitionSpec::builder()
            .add_partition_field(1, "price", Transform::Identity)
            .unwrap()
            .build();
        assert!(ManifestFormat::of(&metadata(schema, spec)).await.unwrap().is_none());
    }
}
