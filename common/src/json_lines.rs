//! Lists kept as JSON lines, one record per line: the incremental failures file, Phase 2's
//! failures files and the backfill's pending lists (item failures), and Phase 1's malformed
//! inventory rows. One writer and one reader, so every list is written and read the same way:
//! blank lines are skipped, and any other line that is not a record is an error naming the
//! object and the line (a list an operator retries from must never lose an entry silently).

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A record kept in such lists; `LIST` names a list of them in messages.
pub trait Listed {
    /// What a list of these is called (`failures file`, …).
    const LIST: &'static str;
}

use crate::location::Location;
use crate::stores::{ObjectError, Stores};

/// Why a list could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JsonLinesError {
    /// The object could not be read or written.
    #[error(transparent)]
    Io(#[from] ObjectError),
    /// A line is not a record of the list's kind.
    #[error("invalid {list} {object} at line {line}: {reason}")]
    BadLine {
        /// What the list is ([`Listed::LIST`]).
        list: &'static str,
        /// The list.
        object: String,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A record could not be encoded (a bug: records are plain data).
    #[error("cannot encode {object}: {reason}")]
    Encode {
        /// The list.
        object: String,
        /// The encoder's error.
        reason: String,
    },
}

impl JsonLinesError {
    /// Whether trying again may succeed (store and network errors may; a bad line will not).
    pub fn is_retryable(&self) -> bool {
        matches!(self, JsonLinesError::Io(e) if e.is_retryable())
    }
}

/// `records` as JSON lines, each ending in a newline.
pub fn encode<T: Serialize>(location: &Location, records: &[T]) -> Result<Vec<u8>, JsonLinesError> {
    let mut out = Vec::new();
    for r in records {
        serde_json::to_writer(&mut out, r).map_err(|e| JsonLinesError::Encode {
            object: location.to_string(),
            reason: e.to_string(),
        })?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The records of the JSON lines `bytes` read from `location`.
pub fn decode<T: DeserializeOwned + Listed>(
    location: &Location,
    bytes: &[u8],
) -> Result<Vec<T>, JsonLinesError> {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| JsonLinesError::BadLine {
                list: T::LIST,
                object: location.to_string(),
                line: i + 1,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Writes `records` as the list at `location` (replacing it).
pub async fn write<T: Serialize>(
    stores: &Stores,
    location: &Location,
    records: &[T],
) -> Result<(), JsonLinesError> {
    Ok(stores.put(location, encode(location, records)?).await?)
}

/// The records of the list at `location`, or `None` when there is no such object.
pub async fn read<T: DeserializeOwned + Listed>(
    stores: &Stores,
    location: &Location,
) -> Result<Option<Vec<T>>, JsonLinesError> {
    match stores.get(location).await? {
        Some(bytes) => decode(location, &bytes).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::S3Settings;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Rec {
        key: String,
    }

    impl Listed for Rec {
        const LIST: &'static str = "test list";
    }

    #[tokio::test]
    async fn a_list_reads_back_what_was_written() {
        let stores = Stores::new(S3Settings::default());
        let at = Location::parse("memory://lists/a.jsonl").unwrap();
        let recs = vec![Rec { key: "a".into() }, Rec { key: "b".into() }];
        write(&stores, &at, &recs).await.unwrap();
        assert_eq!(read::<Rec>(&stores, &at).await.unwrap(), Some(recs));
        assert_eq!(read::<Rec>(&stores, &at.join("none")).await.unwrap(), None);
    }

    #[test]
    fn a_bad_line_is_an_error_naming_the_object_and_the_line() {
        let at = Location::parse("memory://lists/b.jsonl").unwrap();
        let err = decode::<Rec>(&at, b"{\"key\":\"a\"}\n\n{\"nope\":1}\n").unwrap_err();
        assert!(matches!(&err, JsonLinesError::BadLine { line: 3, .. }), "{err}");
        assert!(
            err.to_string().starts_with("invalid test list memory://lists/b.jsonl at line 3"),
            "{err}"
        );
    }
}
