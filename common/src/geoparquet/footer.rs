//! A written file's footer, kept decoded (without page indexes) until registration reads it.
//!
//! Registration needs each file's row groups and column statistics. The writer returns them
//! decoded, so they are kept as they are: encoding them for keeping and decoding them again to
//! register cost more CPU than writing a file of a few rows. Page indexes are dropped (they took
//! most of a footer's memory, ~48 KB per file, and registration does not read them); what is
//! left is a few KB per file (`Footer::memory_bytes`), and a chunk keeps at most
//! `--chunk-files` footers before it registers them.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataBuilder, ParquetMetaDataReader};

/// The footer of a written file (without page indexes, which registration does not read).
#[derive(Debug, Clone)]
pub struct Footer(Arc<ParquetMetaData>);

impl Footer {
    /// Keeps `metadata` without its page indexes (never fails; a `Result` for callers that
    /// treat keeping a footer as part of writing a file).
    pub fn keep(metadata: ParquetMetaData) -> Result<Footer, ParquetError> {
        let slim = ParquetMetaDataBuilder::new_from_metadata(metadata)
            .set_column_index(None)
            .set_offset_index(None)
            .build();
        Ok(Footer(Arc::new(slim)))
    }

    /// The footer: row groups, column chunks and their statistics.
    pub fn metadata(&self) -> &ParquetMetaData {
        &self.0
    }

    /// Bytes it holds in memory.
    pub fn memory_bytes(&self) -> usize {
        self.0.memory_size()
    }
}

/// Bytes read from a file's end by the first request: a data file's footer (without page
/// indexes) is a few KB to a few tens of KB, so one request usually holds all of it.
const FOOTER_READ_BYTES: u64 = 64 * 1024;

/// Why a file's footer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FooterReadError {
    /// The store could not read the object.
    #[error(transparent)]
    Store(#[from] object_store::Error),
    /// Not a Parquet file, or a damaged one.
    #[error(transparent)]
    Parquet(#[from] ParquetError),
}

/// A Parquet file's footer (without page indexes) and the file's size: the size, then the
/// file's last 64 KB, which usually hold the whole footer (a third read when not). Where each
/// request waits a round trip (S3), this saves one of the three a footer-length read and a
/// footer read after the size took. (A suffix read would also save the size lookup, but some
/// S3-compatible servers fail a suffix longer than the object, s3s-fs among them.)
pub async fn read_footer(
    store: &dyn ObjectStore,
    path: &Path,
) -> Result<(Arc<ParquetMetaData>, u64), FooterReadError> {
    let size = store.head(path).await?.size;
    let tail = read_range(store, path, tail_range(size, FOOTER_READ_BYTES)).await?;
    let mut reader = ParquetMetaDataReader::new();
    match reader.try_parse_sized(&tail, size) {
        Ok(()) => {}
        Err(ParquetError::NeedMoreData(needed)) => {
            let tail = read_range(store, path, tail_range(size, needed as u64)).await?;
            reader.try_parse_sized(&tail, size)?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok((Arc::new(reader.finish()?), size))
}

/// The last `bytes` of an object of `size` bytes, as a bounded range.
fn tail_range(size: u64, bytes: u64) -> GetRange {
    GetRange::Bounded(size.saturating_sub(bytes)..size)
}

/// The bytes of `range`.
async fn read_range(
    store: &dyn ObjectStore,
    path: &Path,
    range: GetRange,
) -> Result<bytes::Bytes, object_store::Error> {
    let options = GetOptions { range: Some(range), ..GetOptions::default() };
    store.get_opts(path, options).await?.bytes().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fanout::fan_out;
    use crate::geoparquet::{WriterOptions, write_rows};
    use crate::location::Location;
    use crate::sample::itslive_item;
    use crate::stac::parse_item_value;
    use crate::stores::{S3Settings, Stores};

    /// Writes `items` sample items in row groups of `row_group_rows`; returns where, the
    /// writer's footer and the file's size.
    async fn written(
        stores: &Stores,
        name: &str,
        items: u64,
        row_group_rows: usize,
    ) -> (Location, ParquetMetaData, u64) {
        let rows: Vec<_> = (0..items)
            .flat_map(|i| {
                fan_out(
                    parse_item_value(&itslive_item(i)).unwrap().row,
                    &["8106fffffffffff".into()],
                )
            })
            .collect();
        let at = Location::parse(&format!("memory://footers/{name}.parquet")).unwrap();
        let options = WriterOptions { row_group_rows, ..WriterOptions::default() };
        let (metadata, size) = write_rows(stores, &at, &rows, &options).await.unwrap();
        (at, metadata, size)
    }

    async fn read_back(stores: &Stores, at: &Location) -> (Arc<ParquetMetaData>, u64) {
        let target = stores.resolve(at).unwrap();
        read_footer(target.store.as_ref(), &target.path).await.unwrap()
    }

    #[tokio::test]
    async fn a_small_file_s_footer_and_size_are_read_whole() {
        let stores = Stores::new(S3Settings::default());
        let (at, written, size) = written(&stores, "small", 20, 65_536).await;
        assert!(size < FOOTER_READ_BYTES, "the file is {size} bytes, meant to be smaller");
        let (footer, read_size) = read_back(&stores, &at).await;
        assert_eq!(read_size, size);
        assert_eq!(footer.file_metadata().num_rows(), written.file_metadata().num_rows());
        assert_eq!(footer.num_row_groups(), 1);
    }

    #[tokio::test]
    async fn a_footer_larger_than_the_first_read_is_read_with_a_second() {
        let stores = Stores::new(S3Settings::default());
        // One row group per row: each adds the statistics of every column to the footer.
        let (at, written, size) = written(&stores, "many-groups", 400, 1).await;
        let (footer, read_size) = read_back(&stores, &at).await;
        assert_eq!(read_size, size);
        assert_eq!(footer.num_row_groups(), written.num_row_groups());
        assert!(footer.num_row_groups() >= 400);
        let footer_bytes = footer.memory_size() as u64;
        assert!(
            footer_bytes > FOOTER_READ_BYTES,
            "the footer ({footer_bytes} bytes in memory) was meant to exceed the first read"
        );
    }

    #[tokio::test]
    async fn a_file_that_is_not_parquet_is_refused() {
        let stores = Stores::new(S3Settings::default());
        let at = Location::parse("memory://footers/not.parquet").unwrap();
        stores.put(&at, bytes::Bytes::from_static(b"{\"type\": \"Feature\"}")).await.unwrap();
        let target = stores.resolve(&at).unwrap();
        let err = read_footer(target.store.as_ref(), &target.path).await.unwrap_err();
        assert!(matches!(err, FooterReadError::Parquet(_)), "{err:?}");
    }
}
