//! Partitioners: which grid cells a footprint touches.
//!
//! A [`Partitioner`] maps a geometry (lon/lat degrees, GeoJSON axis order) to the sorted keys of
//! every cell it touches; touching the boundary counts. The grid is described by a [`GridSpec`],
//! which round-trips through the table properties `earthcatalog.grid.*`, and
//! [`open_partitioner`] builds the partitioner a spec names.

mod bbox_reading;
mod cell_shape;
pub mod geojson;
pub mod h3;
mod planar;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use geo_types::Geometry;

use crate::location::{Location, LocationError};
use crate::stores::{StoreError, Stores};

pub use self::bbox_reading::read_with_bbox;
pub use self::geojson::GeoJsonPartitioner;
pub use self::h3::{DEFAULT_MAX_CELLS, H3Partitioner};

/// The partition key of an item whose partitioner returned no cell.
pub const NO_CELL: &str = "__none__";

/// Table property naming the grid type (`h3` or `geojson`).
pub const PROP_GRID_TYPE: &str = "earthcatalog.grid.type";
/// Table property holding the H3 resolution.
pub const PROP_GRID_RESOLUTION: &str = "earthcatalog.grid.resolution";
/// Table property holding the GeoJSON boundaries location.
pub const PROP_GRID_BOUNDARIES: &str = "earthcatalog.grid.boundaries_path";
/// Table property holding the GeoJSON feature property used as the key.
pub const PROP_GRID_ID_FIELD: &str = "earthcatalog.grid.id_field";

/// The H3 resolution used when none is given (production value of the original).
pub const DEFAULT_H3_RESOLUTION: u8 = 1;
/// The GeoJSON feature property used as key when none is given.
pub const DEFAULT_ID_FIELD: &str = "id";

/// Why a geometry has no cover.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoverError {
    /// The geometry has no position at all.
    #[error("the geometry is empty (it has no position)")]
    Empty,
    /// A coordinate is NaN or infinite.
    #[error("position ({lon}, {lat}) is not a finite number")]
    NotFinite {
        /// Longitude as given.
        lon: f64,
        /// Latitude as given.
        lat: f64,
    },
    /// A latitude outside [-90, 90] or a longitude outside [-360, 360].
    #[error(
        "position ({lon}, {lat}) is out of range (latitude must be within ±90, longitude within ±360)"
    )]
    OutOfRange {
        /// Longitude as given.
        lon: f64,
        /// Latitude as given.
        lat: f64,
    },
    /// The footprint covers more cells than the partitioner allows (a huge footprint at a fine
    /// resolution would exhaust time and memory).
    #[error(
        "the footprint covers about {estimated} H3 cells at resolution {resolution}, more than the limit of {limit}"
    )]
    TooManyCells {
        /// The H3 resolution.
        resolution: u8,
        /// The estimated (or, when the flood stopped, the counted) number of cells.
        estimated: u64,
        /// The partitioner's limit.
        limit: u64,
    },
}

/// Why a grid could not be described or built.
#[derive(Debug, thiserror::Error)]
pub enum GridError {
    /// The H3 resolution is not an integer in 0..=15.
    #[error("H3 resolution '{0}' is invalid (expected an integer from 0 to 15)")]
    Resolution(String),
    /// A GeoJSON grid without boundaries.
    #[error("{PROP_GRID_BOUNDARIES} is required for grid type 'geojson'")]
    MissingBoundaries,
    /// The S2 grid exists in the original's configuration but was never implemented.
    #[error("the S2 grid is not implemented")]
    S2NotImplemented,
    /// Any other grid type.
    #[error("unknown grid type '{0}' (expected 'h3' or 'geojson')")]
    UnknownType(String),
    /// The boundaries location is not a location.
    #[error("invalid boundaries location '{location}': {source}")]
    Location {
        /// The location string.
        location: String,
        /// Why it is invalid.
        source: LocationError,
    },
    /// The boundaries could not be loaded.
    #[error(transparent)]
    Boundaries(#[from] Box<geojson::BoundariesError>),
    /// The store of the boundaries could not be opened.
    #[error("cannot open the store of '{location}': {source}")]
    Store {
        /// The location.
        location: String,
        /// Why.
        source: Box<StoreError>,
    },
}

/// The grid of a table, as recorded in its properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GridSpec {
    /// H3 cells at one resolution (0-15).
    H3 {
        /// The resolution.
        resolution: u8,
    },
    /// Features of a GeoJSON FeatureCollection, keyed by one of their properties.
    GeoJson {
        /// Where the FeatureCollection is (a location string: path, `file://`, `s3://`).
        boundaries: String,
        /// The feature property whose value is the key.
        id_field: String,
    },
}

impl Default for GridSpec {
    fn default() -> Self {
        GridSpec::H3 { resolution: DEFAULT_H3_RESOLUTION }
    }
}

impl GridSpec {
    /// An H3 grid, checking the resolution.
    pub fn h3(resolution: u8) -> Result<GridSpec, GridError> {
        h3o::Resolution::try_from(resolution)
            .map_err(|_| GridError::Resolution(resolution.to_string()))?;
        Ok(GridSpec::H3 { resolution })
    }

    /// The table properties describing this grid.
    pub fn to_properties(&self) -> Vec<(String, String)> {
        let p = |k: &str, v: &str| (k.to_string(), v.to_string());
        match self {
            GridSpec::H3 { resolution } => {
                vec![p(PROP_GRID_TYPE, "h3"), p(PROP_GRID_RESOLUTION, &resolution.to_string())]
            }
            GridSpec::GeoJson { boundaries, id_field } => vec![
                p(PROP_GRID_TYPE, "geojson"),
                p(PROP_GRID_BOUNDARIES, boundaries),
                p(PROP_GRID_ID_FIELD, id_field),
            ],
        }
    }

    /// The grid described by table properties; no type means the default H3 grid, an H3 grid
    /// without resolution has resolution 1, a GeoJSON grid without id field uses `id`.
    pub fn from_properties(props: &HashMap<String, String>) -> Result<GridSpec, GridError> {
        let kind = props.get(PROP_GRID_TYPE).map(|s| s.trim().to_ascii_lowercase());
        match kind.as_deref() {
            None | Some("h3") => match props.get(PROP_GRID_RESOLUTION) {
                None => Ok(GridSpec::default()),
                Some(r) => {
                    let r = r.trim();
                    r.parse::<u8>()
                        .ok()
                        .filter(|r| *r <= 15)
                        .map(|resolution| GridSpec::H3 { resolution })
                        .ok_or_else(|| GridError::Resolution(r.to_string()))
                }
            },
            Some("geojson") => {
                let boundaries = props
                    .get(PROP_GRID_BOUNDARIES)
                    .filter(|b| !b.trim().is_empty())
                    .ok_or(GridError::MissingBoundaries)?;
                let id_field = props
                    .get(PROP_GRID_ID_FIELD)
                    .filter(|f| !f.is_empty())
                    .map_or(DEFAULT_ID_FIELD, String::as_str);
                Ok(GridSpec::GeoJson {
                    boundaries: boundaries.clone(),
                    id_field: id_field.to_string(),
                })
            }
            Some("s2") => Err(GridError::S2NotImplemented),
            Some(other) => Err(GridError::UnknownType(other.to_string())),
        }
    }
}

/// Maps footprints to the keys of the cells they touch.
pub trait Partitioner: Send + Sync + Debug {
    /// Every cell key the geometry touches (boundary included), sorted, without duplicates.
    /// An empty list means the geometry touches no cell (possible with GeoJSON boundaries;
    /// callers use [`NO_CELL`]).
    fn cells(&self, geometry: &Geometry<f64>) -> Result<Vec<String>, CoverError>;

    /// The grid this partitioner implements, for the table properties.
    fn grid(&self) -> GridSpec;
}

/// Builds the partitioner of a grid; GeoJSON boundaries are read through `stores`.
pub async fn open_partitioner(
    spec: &GridSpec,
    stores: &Stores,
) -> Result<Arc<dyn Partitioner>, GridError> {
    match spec {
        GridSpec::H3 { resolution } => Ok(Arc::new(H3Partitioner::new(*resolution)?)),
        GridSpec::GeoJson { boundaries, id_field } => {
            let location = Location::parse(boundaries)
                .map_err(|source| GridError::Location { location: boundaries.clone(), source })?;
            let object = stores.resolve(&location).map_err(|source| GridError::Store {
                location: boundaries.clone(),
                source: Box::new(source),
            })?;
            let p =
                GeoJsonPartitioner::load(&object, boundaries, id_field).await.map_err(Box::new)?;
            Ok(Arc::new(p))
        }
    }
}

/// The geometry read with the partitioner's rules (edges the short way across ±180, rings round
/// a pole), as plain pieces inside `[-180, 180] × [-90, 90]`: what a query tests exactly.
pub(crate) fn plane_pieces(geometry: &Geometry<f64>) -> Vec<Geometry<f64>> {
    planar::Shape::of(geometry).pieces()
}

/// Checks every position of a geometry; `Empty` when it has none.
pub(crate) fn check_positions(geometry: &Geometry<f64>) -> Result<(), CoverError> {
    use geo::CoordsIter;
    let mut any = false;
    for c in geometry.coords_iter() {
        any = true;
        if !c.x.is_finite() || !c.y.is_finite() {
            return Err(CoverError::NotFinite { lon: c.x, lat: c.y });
        }
        if c.y.abs() > 90.0 || c.x.abs() > 360.0 {
            return Err(CoverError::OutOfRange { lon: c.x, lat: c.y });
        }
    }
    if any { Ok(()) } else { Err(CoverError::Empty) }
}
