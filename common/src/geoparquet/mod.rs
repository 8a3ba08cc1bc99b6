//! GeoParquet 1.1 data files: the Arrow batch, the `geo` metadata, and the writer.
//!
//! Every file has every schema column with its fixed type, WKB geometry (ISO, little-endian),
//! a `geometry_bbox` covering column declared in `geo.covering`, zstd level 3 compression
//! (Snappy for files under 2,048 rows, see [`WriterOptions::zstd_min_rows`]), row groups of at
//! most 65,536 rows and column statistics (Iceberg bounds are taken from them).

mod batch;
mod footer;
mod metadata;
mod writer;

pub use batch::record_batch;
pub use footer::{Footer, FooterReadError, read_footer};
pub use metadata::{
    GEO_KEY, GeoSummary, STAC_GEOPARQUET_KEY, STAC_GEOPARQUET_VALUE, geo_metadata, wkb_type_name,
};
pub use writer::{
    FileNamer, WriteError, WriterOptions, WrittenFile, incremental_namer, is_incremental_output,
    write_batches, write_partition, write_rows,
};
