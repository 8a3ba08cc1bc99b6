//! A written file's footer, kept decoded (without page indexes) until registration reads it.
//!
//! Registration needs each file's row groups and column statistics. The writer returns them
//! decoded, so they are kept as they are: encoding them for keeping and decoding them again to
//! register cost more CPU than writing a file of a few rows. Page indexes are dropped (they took
//! most of a footer's memory, ~48 KB per file, and registration does not read them); what is
//! left is a few KB per file (`Footer::memory_bytes`), and a chunk keeps at most
//! `--chunk-files` footers before it registers them.

use std::sync::Arc;

use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataBuilder};

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
