//! The H3 partitioner: every H3 cell a footprint touches, at one resolution.
//!
//! The footprint is read as plane figures in lon/lat ([`super::planar`]: straight edges, the
//! short way across ±180, winding rings close over a pole); the cells keep their true geodesic
//! edges ([`super::cell_shape`]). The cover is found by a flood: start from the cell of one
//! position of each part, keep a cell when its drawing touches the footprint, and look at the
//! neighbours of every kept cell. The cells touching a connected part are connected, so the
//! flood finds all of them, and it only ever tests the cover and its one-cell rim.
//!
//! The flood stops past [`H3Partitioner::max_cells`] cells. Before it starts, the cover is
//! estimated (the footprint's area over the average cell area, plus its edges over the average
//! edge length); cells of one resolution differ in area by up to about a factor of two, so a
//! footprint estimated at more than twice the limit is refused without flooding at all: a 185 km
//! swath at resolution 15 would be some 4·10^10 cells.
//!
//! h3o's `Tiler` (`ContainmentMode::Covers`) is not used: it tests cells as straight-edged
//! lon/lat hexagons (missing true cells within ~10 km of an edge at resolution 1, latitude
//! 60-80), and it splits the cell around each pole at ±180 into a strip that no longer
//! reaches the pole.

use std::collections::{HashSet, VecDeque};

use geo::{ChamberlainDuquetteArea, Haversine, Length};
use geo_types::{Coord, Geometry};
use h3o::{CellIndex, LatLng, Resolution};

use super::cell_shape::cell_shape;
use super::planar::Shape;
use super::{CoverError, GridError, GridSpec, Partitioner, check_positions};

/// The most cells one footprint may cover unless the partitioner says otherwise: about 60 MB
/// of cell keys for one item, far beyond any real footprint at a sensible resolution.
pub const DEFAULT_MAX_CELLS: usize = 1_000_000;

/// How far off the estimate of a cover may be (cells of one resolution differ in area by up to
/// about this factor); only an estimate this many times over the limit refuses without a flood.
const ESTIMATE_SLACK: u64 = 2;

/// Covers footprints with H3 cells of one resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H3Partitioner {
    resolution: Resolution,
    max_cells: usize,
}

impl H3Partitioner {
    /// A partitioner at `resolution` (0-15), refusing covers above [`DEFAULT_MAX_CELLS`].
    pub fn new(resolution: u8) -> Result<H3Partitioner, GridError> {
        let resolution = Resolution::try_from(resolution)
            .map_err(|_| GridError::Resolution(resolution.to_string()))?;
        Ok(H3Partitioner { resolution, max_cells: DEFAULT_MAX_CELLS })
    }

    /// The same partitioner refusing covers of more than `max_cells` cells.
    pub fn with_max_cells(self, max_cells: usize) -> H3Partitioner {
        H3Partitioner { max_cells, ..self }
    }

    /// The resolution of the cells.
    pub fn resolution(&self) -> u8 {
        u8::from(self.resolution)
    }

    /// The most cells a cover may have; a footprint needing more is refused.
    pub fn max_cells(&self) -> usize {
        self.max_cells
    }

    /// About how many cells cover the geometry: its area over the average cell area plus the
    /// length of its edges and lines over the average cell edge, plus its points.
    pub fn estimate_cells(&self, geometry: &Geometry<f64>) -> Result<u64, CoverError> {
        check_positions(geometry)?;
        Ok(self.estimate(&Shape::of(geometry)))
    }

    fn estimate(&self, shape: &Shape) -> u64 {
        let (mut area, mut length) = (0.0_f64, 0.0_f64);
        for piece in shape.pieces() {
            match piece {
                Geometry::Polygon(p) => {
                    area += p.chamberlain_duquette_unsigned_area();
                    length += Haversine.length(p.exterior());
                    length += p.interiors().iter().map(|r| Haversine.length(r)).sum::<f64>();
                }
                Geometry::LineString(l) => length += Haversine.length(&l),
                _ => {}
            }
        }
        let cells = area / self.resolution.area_m2()
            + length / self.resolution.edge_length_m()
            + (shape.points.len() + shape.areas.len() + shape.lines.len()) as f64;
        // Saturates: a whole-globe footprint at resolution 15 is some 6e14 cells.
        cells.ceil() as u64
    }

    fn too_many(&self, estimated: u64) -> CoverError {
        CoverError::TooManyCells {
            resolution: self.resolution(),
            estimated,
            limit: self.max_cells as u64,
        }
    }

    /// Every cell the geometry touches, sorted by index; [`CoverError::TooManyCells`] when
    /// they are more than [`H3Partitioner::max_cells`] (refused from the estimate when it is
    /// over twice the limit, counted during the flood otherwise).
    pub fn cover(&self, geometry: &Geometry<f64>) -> Result<Vec<CellIndex>, CoverError> {
        check_positions(geometry)?;
        let shape = Shape::of(geometry);
        let estimated = self.estimate(&shape);
        if estimated / ESTIMATE_SLACK > self.max_cells as u64 {
            return Err(self.too_many(estimated));
        }
        self.flood(&shape, estimated)
    }

    /// The flood of the module docs, stopping as soon as the cover passes the limit.
    fn flood(&self, shape: &Shape, estimated: u64) -> Result<Vec<CellIndex>, CoverError> {
        let mut cells: HashSet<CellIndex> =
            shape.points.iter().filter_map(|p| self.cell_of(*p)).collect();
        let seeds = shape
            .areas
            .iter()
            .map(|a| a.exterior.points[0])
            .chain(shape.lines.iter().map(|l| l.points[0]));
        let mut seen: HashSet<CellIndex> = HashSet::new();
        let mut queue: VecDeque<(CellIndex, bool)> = VecDeque::new();
        for cell in seeds.filter_map(|p| self.cell_of(p)) {
            if seen.insert(cell) {
                queue.push_back((cell, true));
            }
        }
        while let Some((cell, is_seed)) = queue.pop_front() {
            let touches = touches(cell, shape);
            if touches {
                cells.insert(cell);
                if cells.len() > self.max_cells {
                    return Err(self.too_many(estimated.max(cells.len() as u64)));
                }
            }
            // A seed's neighbours are always looked at, so that a seed on the very edge of its
            // cell cannot stop the flood.
            if touches || is_seed {
                for n in cell.grid_disk_safe(1) {
                    if seen.insert(n) {
                        queue.push_back((n, false));
                    }
                }
            }
        }
        let mut cells: Vec<CellIndex> = cells.into_iter().collect();
        cells.sort_unstable();
        Ok(cells)
    }

    /// The cell of a position; `None` only for non-finite positions, which were refused before.
    fn cell_of(&self, p: Coord) -> Option<CellIndex> {
        let lon = if p.x.abs() > 180.0 { p.x - 360.0 * (p.x / 360.0).round() } else { p.x };
        LatLng::new(p.y, lon).ok().map(|ll| ll.to_cell(self.resolution))
    }
}

fn touches(cell: CellIndex, footprint: &Shape) -> bool {
    let drawn = cell_shape(cell);
    drawn.shape.areas_touch(footprint, drawn.tolerance)
}

impl Partitioner for H3Partitioner {
    fn cells(&self, geometry: &Geometry<f64>) -> Result<Vec<String>, CoverError> {
        Ok(self.cover(geometry)?.into_iter().map(|c| c.to_string()).collect())
    }

    fn grid(&self) -> GridSpec {
        GridSpec::H3 { resolution: self.resolution() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo_types::{LineString, Polygon};

    #[test]
    fn the_flood_stops_at_the_limit_when_the_estimate_was_too_low() {
        let square = Polygon::new(
            LineString::from(vec![(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.0, 0.0)]),
            vec![],
        );
        let p = H3Partitioner::new(6).unwrap().with_max_cells(50);
        // Told the cover is small, the flood counts for itself and stops just past the limit.
        let err = p.flood(&Shape::of(&Geometry::Polygon(square)), 0).unwrap_err();
        assert_eq!(err, CoverError::TooManyCells { resolution: 6, estimated: 51, limit: 50 });
    }
}
