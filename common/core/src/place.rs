//! Place filters (`bbox`, `near`) and the grid both backends index
//! readings by, so that a small place reads few rows.
//!
//! [`Place::contains`] is the reference semantics: a store may narrow what
//! it reads with [`Place::cells`] however it likes, but the readings it
//! returns are exactly those this function accepts.

use std::hash::{Hash, Hasher};

/// Mean Earth radius (IUGG), km: the sphere great-circle distances use.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Largest `near` radius a query may ask for, km.
pub const MAX_RADIUS_KM: f64 = 100.0;

/// How much farther than its radius a point may be and still be "near":
/// one micrometre, so that a point computed to lie exactly on the circle
/// is inside whatever the last bit of floating-point rounding says.
pub const RADIUS_TOLERANCE_KM: f64 = 1e-9;

/// Size of a grid cell, degrees of latitude and of longitude.
pub const CELL_DEGREES: f64 = 0.25;
/// Cells per row of the grid (360° of longitude).
const CELLS_PER_ROW: u32 = (360.0 / CELL_DEGREES) as u32;
/// Rows of the grid (180° of latitude).
const CELL_ROWS: u32 = (180.0 / CELL_DEGREES) as u32;

/// Most cells a place may cover for a store to read it cell by cell; a
/// larger place is read by time (and country) and filtered, which is then
/// cheaper than this many lookups. 64 cells of 0.25° hold a 100 km circle
/// at the equator (9 × 9 = 81 would not) but not above ~40° N, where the
/// cells are narrower; the choice is about lookups, not correctness.
pub const MAX_CELLS: usize = 64;

/// A bounding box in degrees, GeoJSON order; bounds inclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bbox {
    pub min_lon: f64,
    pub min_lat: f64,
    pub max_lon: f64,
    pub max_lat: f64,
}

/// A circle: points whose great-circle distance from `(lat, lon)` is at
/// most `radius_km`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Near {
    pub lat: f64,
    pub lon: f64,
    pub radius_km: f64,
}

/// Where readings must be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Place {
    Bbox(Bbox),
    Near(Near),
}

// Queries are map keys (the answer cache): their coordinates compare and
// hash by bits. Validation rejects NaN, so bit equality is value equality
// (but for -0.0, which is then merely a different key).
impl Eq for Place {}

impl Hash for Place {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let bits: [f64; 4] = match *self {
            Place::Bbox(b) => [b.min_lon, b.min_lat, b.max_lon, b.max_lat],
            Place::Near(n) => [n.lat, n.lon, n.radius_km, f64::NAN],
        };
        std::mem::discriminant(self).hash(state);
        for v in bits {
            v.to_bits().hash(state);
        }
    }
}

/// Great-circle distance in km between two points given in degrees
/// (haversine formula on a sphere of [`EARTH_RADIUS_KM`]).
pub fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// A reading's position from its stored text, `(lat, lon)` in degrees.
pub fn position(lat: &str, lon: &str) -> Option<(f64, f64)> {
    let lat: f64 = lat.trim().parse().ok()?;
    let lon: f64 = lon.trim().parse().ok()?;
    (lat.is_finite() && lon.is_finite()).then_some((lat, lon))
}

/// The grid cell of a position: rows of [`CELL_DEGREES`] from the south
/// pole, columns from the antimeridian; the poles and 180° E fall in the
/// last row and column.
pub fn cell(lat: f64, lon: f64) -> u32 {
    let row = (((lat + 90.0) / CELL_DEGREES).floor().max(0.0) as u32).min(CELL_ROWS - 1);
    let col = (((lon + 180.0) / CELL_DEGREES).floor().max(0.0) as u32).min(CELLS_PER_ROW - 1);
    row * CELLS_PER_ROW + col
}

/// The bounds of grid cell `cell` (see [`cell`]).
pub fn cell_bounds(cell: u32) -> Bbox {
    let (row, col) = (cell / CELLS_PER_ROW, cell % CELLS_PER_ROW);
    let min_lat = f64::from(row) * CELL_DEGREES - 90.0;
    let min_lon = f64::from(col) * CELL_DEGREES - 180.0;
    Bbox {
        min_lon,
        min_lat,
        max_lon: min_lon + CELL_DEGREES,
        max_lat: min_lat + CELL_DEGREES,
    }
}

/// The cell of a reading's stored coordinates; readings whose text is not
/// a number (none are ingested) are in cell 0, which no place asks for
/// unless it covers the south pole's first cell.
pub fn cell_of_text(lat: &str, lon: &str) -> u32 {
    position(lat, lon).map_or(0, |(lat, lon)| cell(lat, lon))
}

impl Place {
    /// Whether a position is in the place.
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        match *self {
            Place::Bbox(b) => {
                (b.min_lat..=b.max_lat).contains(&lat) && (b.min_lon..=b.max_lon).contains(&lon)
            }
            Place::Near(n) => {
                distance_km(n.lat, n.lon, lat, lon) <= n.radius_km + RADIUS_TOLERANCE_KM
            }
        }
    }

    /// Whether a reading's stored coordinates are in the place.
    pub fn contains_text(&self, lat: &str, lon: &str) -> bool {
        position(lat, lon).is_some_and(|(lat, lon)| self.contains(lat, lon))
    }

    /// A box holding the whole place: `[min_lon, min_lat, max_lon, max_lat]`.
    /// For a circle: the latitudes its radius spans and, unless it reaches
    /// a pole or crosses the antimeridian (then every longitude), the
    /// longitudes at the latitude where it is widest.
    pub fn bounds(&self) -> Bbox {
        match *self {
            Place::Bbox(b) => b,
            Place::Near(n) => {
                // Angular radius, with the tolerance and a little margin
                // for rounding in the trigonometry.
                let ang = (n.radius_km + 1e-6) / EARTH_RADIUS_KM;
                let dlat = ang.to_degrees();
                let (min_lat, max_lat) = (n.lat - dlat, n.lat + dlat);
                if min_lat <= -90.0 || max_lat >= 90.0 {
                    return Bbox {
                        min_lon: -180.0,
                        min_lat: min_lat.max(-90.0),
                        max_lon: 180.0,
                        max_lat: max_lat.min(90.0),
                    };
                }
                // The widest longitude offset of a spherical cap.
                let s = ang.sin() / n.lat.to_radians().cos();
                let dlon = if s >= 1.0 {
                    180.0
                } else {
                    s.asin().to_degrees()
                };
                // A circle across the antimeridian holds longitudes at both
                // ends of their range: only all of them hold it in one box
                // (cut at ±180°, the cells would miss its other side).
                let (west, east) = (n.lon - dlon, n.lon + dlon);
                if west <= -180.0 || east >= 180.0 {
                    return Bbox {
                        min_lon: -180.0,
                        min_lat,
                        max_lon: 180.0,
                        max_lat,
                    };
                }
                Bbox {
                    min_lon: west,
                    min_lat,
                    max_lon: east,
                    max_lat,
                }
            }
        }
    }

    /// The grid cells that hold every point of the place, in ascending
    /// order, or `None` when they are more than [`MAX_CELLS`].
    pub fn cells(&self) -> Option<Vec<u32>> {
        let b = self.bounds();
        let (lo, hi) = (cell(b.min_lat, b.min_lon), cell(b.max_lat, b.max_lon));
        let (row_lo, col_lo) = (lo / CELLS_PER_ROW, lo % CELLS_PER_ROW);
        let (row_hi, col_hi) = (hi / CELLS_PER_ROW, hi % CELLS_PER_ROW);
        let rows = (row_hi - row_lo + 1) as usize;
        let cols = (col_hi - col_lo + 1) as usize;
        if rows.saturating_mul(cols) > MAX_CELLS {
            return None;
        }
        Some(
            (row_lo..=row_hi)
                .flat_map(|r| (col_lo..=col_hi).map(move |c| r * CELLS_PER_ROW + c))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        // Berlin to Paris, about 878 km.
        let d = distance_km(52.5200, 13.4050, 48.8566, 2.3522);
        assert!((d - 877.5).abs() < 2.0, "{d}");
        assert_eq!(distance_km(10.0, 20.0, 10.0, 20.0), 0.0);
        // One degree of latitude is R·π/180.
        let one = distance_km(0.0, 0.0, 1.0, 0.0);
        assert!((one - EARTH_RADIUS_KM.to_radians()).abs() < 1e-9);
    }

    #[test]
    fn cells_are_a_grid() {
        assert_eq!(cell(-90.0, -180.0), 0);
        assert_eq!(cell(-90.0, -179.8), 0);
        assert_eq!(cell(-90.0, -179.75), 1);
        assert_eq!(cell(90.0, 180.0), CELL_ROWS * CELLS_PER_ROW - 1);
        assert_eq!(cell(-89.75, -180.0), CELLS_PER_ROW);
    }

    #[test]
    fn a_city_circle_is_a_few_cells_and_a_continent_is_not() {
        let stuttgart = Place::Near(Near {
            lat: 48.78,
            lon: 9.18,
            radius_km: 10.0,
        });
        let cells = stuttgart.cells().unwrap();
        assert!(cells.len() <= 6, "{cells:?}");
        assert!(cells.contains(&cell(48.78, 9.18)));
        let europe = Place::Bbox(Bbox {
            min_lon: -10.0,
            min_lat: 35.0,
            max_lon: 30.0,
            max_lat: 60.0,
        });
        assert_eq!(europe.cells(), None);
    }

    #[test]
    fn every_point_of_a_circle_is_in_its_cells() {
        for (lat, lon, r) in [
            (48.78, 9.18, 10.0),
            (0.0, 0.0, 100.0),
            (-33.9, 151.2, 37.5),
            (64.1, -21.9, 20.0),
            // Across the antimeridian: every longitude, so no cells.
            (-17.0, 179.95, 25.0),
            (65.0, -179.9, 40.0),
        ] {
            let place = Place::Near(Near {
                lat,
                lon,
                radius_km: r,
            });
            let b = place.bounds();
            let cells = place.cells();
            for i in 0..360 {
                let bearing = f64::from(i).to_radians();
                // The point at distance r along `bearing` (direct problem
                // on the sphere).
                let (p1, l1, d) = (lat.to_radians(), lon.to_radians(), r / EARTH_RADIUS_KM);
                let p2 = (p1.sin() * d.cos() + p1.cos() * d.sin() * bearing.cos()).asin();
                let l2 =
                    l1 + (bearing.sin() * d.sin() * p1.cos()).atan2(d.cos() - p1.sin() * p2.sin());
                // The longitude a sensor there sends, in [-180, 180].
                let plon = match l2.to_degrees() {
                    l if l > 180.0 => l - 360.0,
                    l if l < -180.0 => l + 360.0,
                    l => l,
                };
                let plat = p2.to_degrees();
                assert!(place.contains(plat, plon), "{plat},{plon} on the circle");
                assert!(
                    (b.min_lat..=b.max_lat).contains(&plat)
                        && (b.min_lon..=b.max_lon).contains(&plon),
                    "{plat},{plon} outside the bounds {b:?}"
                );
                if let Some(cells) = &cells {
                    assert!(cells.contains(&cell(plat, plon)));
                }
            }
        }
    }
}
