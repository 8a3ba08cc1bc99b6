//! A written file's footer, kept as compact Thrift bytes until registration reads it.
//!
//! Registration needs each file's row groups and column statistics, but a run at a fine H3
//! resolution writes tens of thousands of files per chunk: their decoded footers, page indexes
//! included, took ~48 KB each in memory; the encoded footer without page indexes is ~10 KB.

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    ParquetMetaData, ParquetMetaDataBuilder, ParquetMetaDataReader, ParquetMetaDataWriter,
};

/// The footer of a written file (without page indexes, which registration does not read).
#[derive(Debug, Clone)]
pub struct Footer(Bytes);

impl Footer {
    /// Encodes `metadata` without its page indexes.
    pub fn keep(metadata: ParquetMetaData) -> Result<Footer, ParquetError> {
        let slim = ParquetMetaDataBuilder::new_from_metadata(metadata)
            .set_column_index(None)
            .set_offset_index(None)
            .build();
        let mut buf = Vec::new();
        ParquetMetaDataWriter::new(&mut buf, &slim).finish()?;
        Ok(Footer(Bytes::from(buf)))
    }

    /// The footer decoded: row groups, column chunks and their statistics.
    pub fn metadata(&self) -> Result<ParquetMetaData, ParquetError> {
        ParquetMetaDataReader::new().parse_and_finish(&self.0)
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty (never, for a footer that was kept).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
