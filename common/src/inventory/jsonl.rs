//! JSON-lines item lists: one object per line with `bucket` and `key` (and optionally
//! `last_modified_date`); other fields are ignored.
//!
//! This is the format of the incremental pipeline's failures file, so the items a run could not
//! ingest can be retried by giving that file as the next run's inventory. Read as a byte stream,
//! a line at a time; a line that is not such an object is a malformed row with its line number.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::io::StreamReader;

use super::dates::parse_datetime;
use super::{
    InventoryEntry, InventoryError, InventoryRecord, InventoryStream, MalformedReason,
    MalformedRow, RowPosition, lazily, resolve,
};
use crate::location::Location;
use crate::stores::Stores;

const DATE_FIELD: &str = "last_modified_date";

/// Streams the entries of the JSON-lines object at `location`.
pub fn read(stores: Arc<Stores>, location: Location) -> InventoryStream {
    lazily(async move {
        let object = location.uri();
        let target = resolve(&stores, &location)?;
        let got =
            super::ranged::ranged_bytes(target.store.clone(), target.path.clone()).await.map_err(
                |source| InventoryError::Fetch { object: object.clone(), source: Box::new(source) },
            )?;
        let lines = BufReader::new(StreamReader::new(got.map_err(std::io::Error::other))).lines();
        let state = Some((lines, 0u64, object));
        let records = futures::stream::unfold(state, |state| async move {
            let (mut lines, mut line, object) = state?;
            loop {
                line += 1;
                let record = match lines.next_line().await {
                    Ok(None) => return None,
                    Ok(Some(text)) if text.trim().is_empty() => continue,
                    Ok(Some(text)) => Ok(match to_entry(&text) {
                        Ok(entry) => InventoryRecord::Entry(entry),
                        Err(reason) => InventoryRecord::Malformed(MalformedRow {
                            object: object.clone(),
                            position: RowPosition::Line(line),
                            reason,
                        }),
                    }),
                    Err(source) => {
                        // The stream is broken: report it and read no further.
                        let e = InventoryError::Read { object, line, source };
                        return Some((Err(e), None));
                    }
                };
                return Some((record, Some((lines, line, object))));
            }
        });
        Ok(records.boxed())
    })
}

/// The entry a line describes.
fn to_entry(line: &str) -> Result<InventoryEntry, MalformedReason> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| MalformedReason::NotAnObject { reason: e.to_string() })?;
    let Value::Object(fields) = value else {
        return Err(MalformedReason::NotAnObject { reason: "not a JSON object".into() });
    };
    let text = |name: &str| fields.get(name).and_then(Value::as_str).unwrap_or_default();
    let bucket = text("bucket");
    if bucket.is_empty() {
        // A failures file lists unreadable inventory rows without a bucket: keep their reason.
        return Err(match text("reason") {
            "" => MalformedReason::EmptyBucket,
            reason => MalformedReason::ListedUnreadable { reason: reason.into() },
        });
    }
    let key = text("key");
    if key.is_empty() {
        return Err(MalformedReason::EmptyKey);
    }
    let date = text(DATE_FIELD).trim();
    let last_modified = match date {
        "" => None,
        value => Some(parse_datetime(value).ok_or_else(|| MalformedReason::BadDate {
            column: DATE_FIELD.into(),
            value: value.into(),
        })?),
    };
    Ok(InventoryEntry { bucket: bucket.into(), key: key.into(), last_modified })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failures_line_is_an_entry_and_other_fields_are_ignored() {
        let line = r#"{"bucket":"b","key":"k/x.stac.json","kind":"not_found","reason":"gone"}"#;
        let entry = to_entry(line).unwrap();
        assert_eq!((entry.bucket.as_str(), entry.key.as_str()), ("b", "k/x.stac.json"));
        assert_eq!(entry.last_modified, None);
    }

    #[test]
    fn lines_that_are_not_entries_say_why() {
        assert!(matches!(to_entry("[1, 2]"), Err(MalformedReason::NotAnObject { .. })));
        assert!(matches!(to_entry("{bucket"), Err(MalformedReason::NotAnObject { .. })));
        assert_eq!(to_entry(r#"{"bucket":"","key":"k"}"#), Err(MalformedReason::EmptyBucket));
        let listed = to_entry(r#"{"bucket":"","key":"i.csv line 3","reason":"too few fields"}"#);
        assert_eq!(
            listed,
            Err(MalformedReason::ListedUnreadable { reason: "too few fields".into() })
        );
        assert_eq!(to_entry(r#"{"bucket":"b"}"#), Err(MalformedReason::EmptyKey));
        let bad = to_entry(r#"{"bucket":"b","key":"k","last_modified_date":"soon"}"#);
        assert_eq!(
            bad,
            Err(MalformedReason::BadDate { column: DATE_FIELD.into(), value: "soon".into() })
        );
    }
}
