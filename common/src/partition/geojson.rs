//! The GeoJSON partitioner: the features of a FeatureCollection a footprint touches.
//!
//! Keys are the text of one feature property (a string as is, a number as written). Features
//! are indexed by bounding box in an R-tree; the candidates are then checked with an exact
//! planar `intersects` (touching counts). Footprints are read with the antimeridian rules of
//! [`super::planar`] (an edge goes the short way, across ±180) and matched piece by piece;
//! boundaries are taken as given, in lon/lat, so boundary files must be split at ±180 (as
//! RFC 7946 asks).

use std::collections::HashMap;
use std::time::Instant;

use geo::{BoundingRect, Intersects};
use geo_types::Geometry;
use object_store::ObjectStoreExt;
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};
use serde_json::Value;

use super::planar::Shape;
use super::{CoverError, GridSpec, Partitioner, check_positions};
use crate::stores::ObjectLocation;

/// Why a boundaries file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BoundariesError {
    /// The object could not be read.
    #[error("cannot read boundaries '{location}': {source}")]
    Read {
        /// The boundaries location.
        location: String,
        /// The store error.
        source: object_store::Error,
    },
    /// The text is not GeoJSON.
    #[error("boundaries '{location}' are not valid GeoJSON: {reason}")]
    Parse {
        /// The boundaries location.
        location: String,
        /// The parser's message.
        reason: String,
    },
    /// GeoJSON, but not a FeatureCollection.
    #[error("boundaries '{location}' are a GeoJSON {found}, not a FeatureCollection")]
    NotFeatureCollection {
        /// The boundaries location.
        location: String,
        /// What was found instead.
        found: &'static str,
    },
    /// A feature without the key property (or with a null, object or array value).
    #[error(
        "feature {index} of '{location}' has no usable '{id_field}' property (a string or a number is required)"
    )]
    MissingKey {
        /// The boundaries location.
        location: String,
        /// Position of the feature in the collection (from 0).
        index: usize,
        /// The key property.
        id_field: String,
    },
    /// Two features with the same key.
    #[error("features {first} and {second} of '{location}' have the same key '{key}'")]
    DuplicateKey {
        /// The boundaries location.
        location: String,
        /// The key.
        key: String,
        /// The first feature with it.
        first: usize,
        /// The second feature with it.
        second: usize,
    },
    /// A feature without geometry, or with one that has no position or a bad one.
    #[error("feature {index} ('{key}') of '{location}' has an unusable geometry: {reason}")]
    Geometry {
        /// The boundaries location.
        location: String,
        /// Position of the feature in the collection.
        index: usize,
        /// Its key.
        key: String,
        /// Why.
        reason: String,
    },
}

type Entry = GeomWithData<Rectangle<[f64; 2]>, usize>;

/// Features of a FeatureCollection, keyed by one property and indexed by bounding box.
#[derive(Debug)]
pub struct GeoJsonPartitioner {
    boundaries: String,
    id_field: String,
    keys: Vec<String>,
    geometries: Vec<Geometry<f64>>,
    index: RTree<Entry>,
}

impl GeoJsonPartitioner {
    /// Reads the FeatureCollection at `object` (`boundaries` names it in errors and in the
    /// grid description).
    pub async fn load(
        object: &ObjectLocation,
        boundaries: &str,
        id_field: &str,
    ) -> Result<GeoJsonPartitioner, BoundariesError> {
        let read = |source| BoundariesError::Read { location: boundaries.to_string(), source };
        let bytes =
            object.store.get(&object.path).await.map_err(read)?.bytes().await.map_err(read)?;
        GeoJsonPartitioner::from_bytes(&bytes, boundaries, id_field)
    }

    /// Builds the partitioner from the bytes of a FeatureCollection.
    pub fn from_bytes(
        bytes: &[u8],
        boundaries: &str,
        id_field: &str,
    ) -> Result<GeoJsonPartitioner, BoundariesError> {
        let started = Instant::now();
        let location = || boundaries.to_string();
        let parse = |reason: String| BoundariesError::Parse { location: location(), reason };
        let text = std::str::from_utf8(bytes).map_err(|e| parse(e.to_string()))?;
        let collection = match text.parse::<geojson::GeoJson>().map_err(|e| parse(e.to_string()))? {
            geojson::GeoJson::FeatureCollection(fc) => fc,
            geojson::GeoJson::Feature(_) => {
                return Err(BoundariesError::NotFeatureCollection {
                    location: location(),
                    found: "Feature",
                });
            }
            geojson::GeoJson::Geometry(_) => {
                return Err(BoundariesError::NotFeatureCollection {
                    location: location(),
                    found: "Geometry",
                });
            }
        };
        let mut keys = Vec::with_capacity(collection.features.len());
        let mut geometries = Vec::with_capacity(collection.features.len());
        let mut entries = Vec::with_capacity(collection.features.len());
        let mut first_of: HashMap<String, usize> = HashMap::new();
        for (index, feature) in collection.features.into_iter().enumerate() {
            let key =
                feature_key(&feature, id_field).ok_or_else(|| BoundariesError::MissingKey {
                    location: location(),
                    index,
                    id_field: id_field.to_string(),
                })?;
            if let Some(&first) = first_of.get(&key) {
                return Err(BoundariesError::DuplicateKey {
                    location: location(),
                    key,
                    first,
                    second: index,
                });
            }
            let bad = |reason: String| BoundariesError::Geometry {
                location: location(),
                index,
                key: key.clone(),
                reason,
            };
            let geometry = feature.geometry.ok_or_else(|| bad("no geometry".to_string()))?;
            let geometry = Geometry::<f64>::try_from(geometry).map_err(|e| bad(e.to_string()))?;
            check_positions(&geometry).map_err(|e| bad(e.to_string()))?;
            let rect = geometry.bounding_rect().ok_or_else(|| bad("no position".to_string()))?;
            let (min, max) = (rect.min(), rect.max());
            entries.push(GeomWithData::new(
                Rectangle::from_corners([min.x, min.y], [max.x, max.y]),
                keys.len(),
            ));
            first_of.insert(key.clone(), index);
            keys.push(key);
            geometries.push(geometry);
        }
        let index = RTree::bulk_load(entries);
        tracing::info!(
            boundaries,
            features = keys.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded GeoJSON grid boundaries"
        );
        Ok(GeoJsonPartitioner {
            boundaries: boundaries.to_string(),
            id_field: id_field.to_string(),
            keys,
            geometries,
            index,
        })
    }

    /// How many features the grid has.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the grid has no feature.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The key of a feature: a string property as is, a number as written in the file.
fn feature_key(feature: &geojson::Feature, id_field: &str) -> Option<String> {
    match feature.properties.as_ref()?.get(id_field)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Partitioner for GeoJsonPartitioner {
    fn cells(&self, geometry: &Geometry<f64>) -> Result<Vec<String>, CoverError> {
        check_positions(geometry)?;
        geometry.bounding_rect().ok_or(CoverError::Empty)?;
        // A footprint crossing the antimeridian is matched piece by piece on either side of
        // it; taken as given, its edges would run the long way round through longitude 0.
        let mut keys: Vec<String> = Vec::new();
        for piece in Shape::of(geometry).pieces() {
            let Some(rect) = piece.bounding_rect() else { continue };
            let envelope =
                AABB::from_corners([rect.min().x, rect.min().y], [rect.max().x, rect.max().y]);
            keys.extend(
                self.index
                    .locate_in_envelope_intersecting(&envelope)
                    .filter(|e| self.geometries[e.data].intersects(&piece))
                    .map(|e| self.keys[e.data].clone()),
            );
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    fn grid(&self) -> GridSpec {
        GridSpec::GeoJson { boundaries: self.boundaries.clone(), id_field: self.id_field.clone() }
    }
}
