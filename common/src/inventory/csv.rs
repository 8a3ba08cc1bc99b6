//! CSV and CSV.gz inventories, read as a byte stream (never the whole object in memory).
//!
//! The first non-blank row is a header when any of its fields is `bucket` or `key` (quotes
//! stripped, any case); a header must then name both, or the file is refused naming the missing
//! column (a header like `key,size` read as a data row would silently list nothing). Columns are
//! found by name (`bucket`, `key`, optional `last_modified_date`,
//! any case; `_` and spaces ignored, so `LastModifiedDate` matches too) and keys are used as
//! they are. Otherwise the file is a headerless AWS inventory: its columns come from the
//! manifest's `fileSchema` (or are bucket, key in columns 0 and 1 with no date) and keys are
//! form-URL-decoded (`%XX`, and `+` for a space) as AWS writes them. When a `fileSchema` is
//! given the file is known to be headerless and no header is looked for.

use std::sync::Arc;

use async_compression::tokio::bufread::GzipDecoder;
use chrono::{DateTime, Utc};
use csv_async::{AsyncReader, AsyncReaderBuilder, ByteRecord};
use futures::TryStreamExt;
use percent_encoding::percent_decode_str;
use tokio::io::AsyncRead;
use tokio_util::io::StreamReader;

use super::dates::parse_datetime;
use super::{
    InventoryEntry, InventoryError, InventoryRecord, InventoryStream, MalformedReason,
    MalformedRow, OpenOptions, RowPosition, lazily, resolve,
};
use crate::location::Location;
use crate::stores::Stores;

type ByteSource = Box<dyn AsyncRead + Send + Unpin>;

/// Where the needed columns are in a CSV file, and how keys are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvLayout {
    /// Index of the bucket column.
    pub bucket: usize,
    /// Index of the key column.
    pub key: usize,
    /// Index and name of the last-modified column, if there is one.
    pub last_modified: Option<(usize, String)>,
    /// Whether keys are form-URL-encoded (headerless AWS files).
    pub url_encoded_keys: bool,
}

/// Column names compared without case, `_`, spaces or quotes.
fn normalize(name: &str) -> String {
    name.chars().filter(|c| !matches!(c, '_' | ' ' | '"')).flat_map(char::to_lowercase).collect()
}

impl CsvLayout {
    /// The layout of a file with a header row; `Err(column)` names a missing required column.
    pub fn from_names<'a>(
        names: impl IntoIterator<Item = &'a str>,
        url_encoded_keys: bool,
    ) -> Result<Self, &'static str> {
        let names: Vec<&str> = names.into_iter().map(|n| n.trim().trim_matches('"')).collect();
        let find = |wanted: &str| names.iter().position(|n| normalize(n) == wanted);
        let bucket = find("bucket").ok_or("bucket")?;
        let key = find("key").ok_or("key")?;
        let last_modified = find("lastmodifieddate").map(|i| (i, names[i].to_string()));
        Ok(CsvLayout { bucket, key, last_modified, url_encoded_keys })
    }

    /// The layout of a headerless AWS file described by a manifest's `fileSchema`, or bucket
    /// and key in columns 0 and 1 without one.
    pub fn headerless(file_schema: Option<&str>) -> Result<Self, &'static str> {
        match file_schema {
            Some(schema) => Self::from_names(schema.split(','), true),
            None => {
                Ok(CsvLayout { bucket: 0, key: 1, last_modified: None, url_encoded_keys: true })
            }
        }
    }

    fn fields_needed(&self) -> usize {
        self.bucket.max(self.key) + 1
    }
}

/// Decodes a form-URL-encoded key: `+` is a space and `%XX` a byte.
pub fn form_url_decode(key: &str) -> Result<String, std::str::Utf8Error> {
    let spaced = key.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8().map(|k| k.into_owned())
}

/// Streams the CSV (gzip-compressed when `gzip`) at `location`.
pub fn read(
    stores: Arc<Stores>,
    location: Location,
    gzip: bool,
    options: OpenOptions,
) -> InventoryStream {
    lazily(async move {
        let reader = CsvReader::open(&stores, &location, gzip, &options).await?;
        Ok(super::records(reader))
    })
}

struct CsvReader {
    object: String,
    reader: AsyncReader<ByteSource>,
    headerless: CsvLayout,
    has_file_schema: bool,
    layout: Option<CsvLayout>,
    record: ByteRecord,
    line: u64,
    finished: bool,
}

impl super::RecordSource for CsvReader {
    fn next_record(
        &mut self,
    ) -> impl Future<Output = Option<Result<InventoryRecord, InventoryError>>> + Send {
        self.read_next()
    }
}

impl CsvReader {
    async fn open(
        stores: &Stores,
        location: &Location,
        gzip: bool,
        options: &OpenOptions,
    ) -> Result<Self, InventoryError> {
        let object = location.uri();
        let headerless =
            CsvLayout::headerless(options.csv_file_schema.as_deref()).map_err(|column| {
                InventoryError::MissingColumn {
                    object: object.clone(),
                    column: column.to_string(),
                    found: format!(
                        "fileSchema '{}'",
                        options.csv_file_schema.as_deref().unwrap_or("")
                    ),
                }
            })?;
        let target = resolve(stores, location)?;
        let got =
            super::ranged::ranged_bytes(target.store.clone(), target.path.clone()).await.map_err(
                |source| InventoryError::Fetch { object: object.clone(), source: Box::new(source) },
            )?;
        let bytes = StreamReader::new(got.map_err(std::io::Error::other));
        let source: ByteSource = if gzip {
            let mut decoder = GzipDecoder::new(bytes);
            // `gzip -c a b > ab.gz` and parallel compressors write several members.
            decoder.multiple_members(true);
            Box::new(decoder)
        } else {
            Box::new(bytes)
        };
        let reader =
            AsyncReaderBuilder::new().has_headers(false).flexible(true).create_reader(source);
        Ok(CsvReader {
            object,
            reader,
            headerless,
            has_file_schema: options.csv_file_schema.is_some(),
            layout: None,
            record: ByteRecord::new(),
            line: 0,
            finished: false,
        })
    }

    async fn read_next(&mut self) -> Option<Result<InventoryRecord, InventoryError>> {
        if self.finished {
            return None;
        }
        loop {
            match self.reader.read_byte_record(&mut self.record).await {
                Ok(true) => {}
                Ok(false) => {
                    self.finished = true;
                    return None;
                }
                Err(err) => {
                    self.finished = true;
                    return Some(Err(InventoryError::Read {
                        object: self.object.clone(),
                        line: self.line,
                        source: std::io::Error::other(err),
                    }));
                }
            }
            self.line = self.record.position().map_or(self.line + 1, |p| p.line());
            if is_blank(&self.record) {
                continue;
            }
            let layout = match &self.layout {
                Some(layout) => layout,
                None => match self.first_row_layout() {
                    Ok(Some(layout)) => {
                        self.layout = Some(layout);
                        continue;
                    }
                    Ok(None) => self.layout.insert(self.headerless.clone()),
                    Err(err) => {
                        self.finished = true;
                        return Some(Err(err));
                    }
                },
            };
            return Some(Ok(to_record(layout, &self.record, &self.object, self.line)));
        }
    }

    /// The header's layout when the first non-blank row is a header, else `None`.
    ///
    /// Files described by a manifest schema are AWS data files, which never have a header: their
    /// first row may well be in a bucket named `bucket`.
    fn first_row_layout(&self) -> Result<Option<CsvLayout>, InventoryError> {
        if self.has_file_schema {
            return Ok(None);
        }
        let names: Vec<String> =
            self.record.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
        let normalized: Vec<String> = names.iter().map(|n| normalize(n.trim())).collect();
        // A data row whose bucket or key is literally `bucket` or `key` is taken for a header
        // and refused loudly; far better than a header taken for data and nothing listed.
        let is_header = normalized.iter().any(|n| n == "bucket" || n == "key");
        if !is_header {
            return Ok(None);
        }
        CsvLayout::from_names(names.iter().map(String::as_str), false).map(Some).map_err(|column| {
            InventoryError::MissingColumn {
                object: self.object.clone(),
                column: column.to_string(),
                found: names.join(", "),
            }
        })
    }
}

fn is_blank(record: &ByteRecord) -> bool {
    record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace))
}

fn field<'r>(
    record: &'r ByteRecord,
    index: usize,
    column: &str,
) -> Result<&'r str, MalformedReason> {
    let raw = record.get(index).unwrap_or_default();
    std::str::from_utf8(raw)
        .map(|s| s.trim_matches('"'))
        .map_err(|_| MalformedReason::BadUtf8 { column: column.to_string() })
}

fn to_record(layout: &CsvLayout, record: &ByteRecord, object: &str, line: u64) -> InventoryRecord {
    match to_entry(layout, record) {
        Ok(entry) => InventoryRecord::Entry(entry),
        Err(reason) => InventoryRecord::Malformed(MalformedRow {
            object: object.to_string(),
            position: RowPosition::Line(line),
            reason,
        }),
    }
}

fn to_entry(layout: &CsvLayout, record: &ByteRecord) -> Result<InventoryEntry, MalformedReason> {
    let needed = layout.fields_needed();
    if record.len() < needed {
        return Err(MalformedReason::TooFewFields { found: record.len(), needed });
    }
    let bucket = field(record, layout.bucket, "bucket")?;
    if bucket.is_empty() {
        return Err(MalformedReason::EmptyBucket);
    }
    let raw_key = field(record, layout.key, "key")?;
    let key = if layout.url_encoded_keys {
        form_url_decode(raw_key).map_err(|_| MalformedReason::BadUtf8 { column: "key".into() })?
    } else {
        raw_key.to_string()
    };
    if key.is_empty() {
        return Err(MalformedReason::EmptyKey);
    }
    let last_modified = match &layout.last_modified {
        Some((index, column)) if *index < record.len() => date_field(record, *index, column)?,
        _ => None,
    };
    Ok(InventoryEntry { bucket: bucket.to_string(), key, last_modified })
}

fn date_field(
    record: &ByteRecord,
    index: usize,
    column: &str,
) -> Result<Option<DateTime<Utc>>, MalformedReason> {
    let value = field(record, index, column)?.trim();
    if value.is_empty() {
        return Ok(None);
    }
    parse_datetime(value).map(Some).ok_or_else(|| MalformedReason::BadDate {
        column: column.to_string(),
        value: value.to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn form_encoded_keys_decode_plus_as_space_and_percent_escapes() {
        assert_eq!(
            form_url_decode("AWS+SKO+2015/2015+AWS+Sales+Kickoff+Agenda.pdf").unwrap(),
            "AWS SKO 2015/2015 AWS Sales Kickoff Agenda.pdf"
        );
        assert_eq!(form_url_decode("a%2Bb%20c%C3%A9").unwrap(), "a+b cé");
        assert!(form_url_decode("bad%FF").is_err());
    }

    #[test]
    fn manifest_file_schemas_give_column_positions() {
        let layout =
            CsvLayout::headerless(Some("Bucket, Key, Size, LastModifiedDate, ETag, StorageClass"))
                .unwrap();
        assert_eq!(layout.bucket, 0);
        assert_eq!(layout.key, 1);
        assert_eq!(layout.last_modified, Some((3, "LastModifiedDate".to_string())));
        assert!(layout.url_encoded_keys);
        assert_eq!(CsvLayout::headerless(Some("Bucket, Size")), Err("key"));
    }
}
