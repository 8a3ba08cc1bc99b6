//! The H3 partitioner: every H3 cell a footprint touches, at one resolution.
//!
//! The footprint is read as plane figures in lon/lat ([`super::planar`]: straight edges, the
//! short way across ±180, winding rings close over a pole); the cells keep their true geodesic
//! edges ([`super::cell_shape`]). The cover is found by a flood: start from the cell of one
//! position of each part, keep a cell when its drawing touches the footprint, and look at the
//! neighbours of every kept cell. The cells touching a connected part are connected, so the
//! flood finds all of them, and it only ever tests the cover and its one-cell rim.
//!
//! h3o's `Tiler` (`ContainmentMode::Covers`) is not used: it tests cells as straight-edged
//! lon/lat hexagons (missing true cells within ~10 km of an edge at resolution 1, latitude
//! 60-80), and it splits the cell around each pole at ±180 into a strip that no longer
//! reaches the pole.

use std::collections::{HashSet, VecDeque};

use geo_types::{Coord, Geometry};
use h3o::{CellIndex, LatLng, Resolution};

use super::cell_shape::cell_shape;
use super::planar::Shape;
use super::{CoverError, GridError, GridSpec, Partitioner, check_positions};

/// Covers footprints with H3 cells of one resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H3Partitioner {
    resolution: Resolution,
}

impl H3Partitioner {
    /// A partitioner at `resolution` (0-15).
    pub fn new(resolution: u8) -> Result<H3Partitioner, GridError> {
        let resolution = Resolution::try_from(resolution)
            .map_err(|_| GridError::Resolution(resolution.to_string()))?;
        Ok(H3Partitioner { resolution })
    }

    /// The resolution of the cells.
    pub fn resolution(&self) -> u8 {
        u8::from(self.resolution)
    }

    /// Every cell the geometry touches, sorted by index.
    pub fn cover(&self, geometry: &Geometry<f64>) -> Result<Vec<CellIndex>, CoverError> {
        check_positions(geometry)?;
        let shape = Shape::of(geometry);
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
            let touches = touches(cell, &shape);
            if touches {
                cells.insert(cell);
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
