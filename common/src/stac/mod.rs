//! STAC item JSON → one typed table row (before fan-out to cells).
//!
//! Every column has one fixed type ([`crate::schema`]); values are converted by the rules in
//! `docs/schema.md`. An item that cannot be used comes back as an [`ItemRejection`] that says
//! why — never a panic and never a silent drop.

pub(crate) mod columns;
pub mod datetime;
mod geometry;
mod item;
mod rebuild;
mod row;
mod spelling;

pub use columns::typed_properties;
pub use item::{ParsedItem, parse_item, parse_item_value};
pub use rebuild::{ItemColumns, RebuildError, format_timestamp};
pub use row::{ItemRow, Value};

/// Why an item could not become a row.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ItemRejection {
    /// The bytes are not JSON.
    #[error("not valid JSON: {0}")]
    InvalidJson(String),
    /// JSON, but not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// An object whose `type` is not `Feature` (e.g. a FeatureCollection).
    #[error("not a STAC item: type is '{0}', expected 'Feature'")]
    NotAFeature(String),
    /// No usable `id`.
    #[error("missing or empty 'id'")]
    MissingId,
    /// `geometry` absent or null.
    #[error("item has no geometry")]
    MissingGeometry,
    /// `geometry` present but unusable.
    #[error("invalid geometry: {0}")]
    InvalidGeometry(String),
    /// A timestamp field that does not parse.
    #[error("'{field}' is not a valid timestamp: {value}")]
    BadTimestamp {
        /// Field name.
        field: &'static str,
        /// The value as found (JSON text).
        value: String,
    },
    /// A value that does not fit its column's type.
    #[error("'{field}' does not fit its {expected} column: {value}")]
    BadValue {
        /// Field name.
        field: &'static str,
        /// The column's type.
        expected: &'static str,
        /// The value as found (JSON text, truncated).
        value: String,
    },
    /// The partitioner could not place the footprint.
    #[error("cannot partition the footprint: {0}")]
    Partition(String),
}

impl ItemRejection {
    /// The failure category for summaries and failures files.
    pub fn kind(&self) -> crate::pipeline::FailureKind {
        use crate::pipeline::FailureKind as K;
        match self {
            ItemRejection::InvalidJson(_) => K::InvalidJson,
            ItemRejection::NotAnObject => K::NotAnObject,
            ItemRejection::NotAFeature(_) => K::NotAFeature,
            ItemRejection::MissingId => K::MissingId,
            ItemRejection::MissingGeometry => K::MissingGeometry,
            ItemRejection::InvalidGeometry(_) => K::InvalidGeometry,
            ItemRejection::BadTimestamp { .. } => K::BadTimestamp,
            ItemRejection::BadValue { .. } => K::BadValue,
            ItemRejection::Partition(_) => K::Partition,
        }
    }
}
