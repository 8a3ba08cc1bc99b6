//! Deterministic ITS_LIVE-shaped STAC items, for benchmarks, the demo data set and tests.
//!
//! The shape follows the ITS_LIVE granule generator (see `docs/schema.md`): a 17-vertex polygon
//! (four corners plus three points per edge) of about 2°×1.5° of latitude, the granule
//! properties, three assets and projection/sat/version extensions. Footprints are spread over
//! the glaciated regions ITS_LIVE covers (Alaska, Greenland, Svalbard, the Andes, High Mountain
//! Asia, Antarctica), including some that cross the antimeridian.

use serde_json::{Value, json};

/// A small, fast, well-mixed hash (splitmix64), so item `i` is the same on every machine.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn unit(i: u64, salt: u64) -> f64 {
    (mix(i.wrapping_mul(31).wrapping_add(salt)) >> 11) as f64 / (1u64 << 53) as f64
}

/// Regions as (lon min, lon max, lat min, lat max) of footprint centres.
const REGIONS: &[(f64, f64, f64, f64)] = &[
    (-150.0, -135.0, 59.0, 63.0),  // Alaska
    (-55.0, -22.0, 62.0, 80.0),    // Greenland
    (10.0, 30.0, 77.0, 80.0),      // Svalbard
    (-74.0, -70.0, -52.0, -46.0),  // Patagonia
    (75.0, 95.0, 28.0, 36.0),      // High Mountain Asia
    (-120.0, 160.0, -80.0, -66.0), // Antarctica
    (178.0, 181.5, 64.0, 68.0),    // Chukotka, across the antimeridian
];

const PLATFORMS: &[&str] = &["LC08", "LC09", "LE07", "S1A", "S2A", "S2B"];

fn wrap_lon(lon: f64) -> f64 {
    let l = (lon + 180.0).rem_euclid(360.0) - 180.0;
    (l * 10_000.0).round() / 10_000.0
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// The 17-vertex, counter-clockwise footprint ring of item `i`.
fn ring(i: u64) -> (Vec<[f64; 2]>, f64, f64) {
    let (x0, x1, y0, y1) = REGIONS[(mix(i) % REGIONS.len() as u64) as usize];
    let cx = x0 + (x1 - x0) * unit(i, 1);
    let cy = y0 + (y1 - y0) * unit(i, 2);
    // About 185 km across, in degrees of longitude at this latitude (capped near the poles).
    let half_h = 0.8;
    let half_w = (0.9 / cy.to_radians().cos().max(0.2)).min(4.0);
    let corners = [
        (cx - half_w, cy - half_h),
        (cx + half_w, cy - half_h),
        (cx + half_w, cy + half_h),
        (cx - half_w, cy + half_h),
    ];
    let mut pts = Vec::with_capacity(17);
    for k in 0..4 {
        let (ax, ay) = corners[k];
        let (bx, by) = corners[(k + 1) % 4];
        for s in 0..4 {
            let t = s as f64 / 4.0;
            pts.push([wrap_lon(ax + (bx - ax) * t), round4(ay + (by - ay) * t)]);
        }
    }
    pts.push(pts[0]);
    (pts, wrap_lon(cx), round4(cy))
}

/// The days (since 1970) item dates are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateSpan {
    first_day: i64,
    days: u64,
}

impl DateSpan {
    /// 3,000 days from 2011-01-26 to 2019-04-14: items share (cell, year) partitions.
    pub const DEFAULT: DateSpan = DateSpan { first_day: 15_000, days: 3_000 };

    /// `years` years ending where [`DateSpan::DEFAULT`] ends; over decades nearly every item
    /// lands in a (cell, year) of its own, the case that measures the cost per written file.
    pub fn years(years: u32) -> DateSpan {
        let days = (u64::from(years) * 36_525 / 100).max(1);
        let end = DateSpan::DEFAULT.first_day + DateSpan::DEFAULT.days as i64;
        DateSpan { first_day: end - days as i64, days }
    }

    fn day(&self, i: u64) -> i64 {
        self.first_day + (mix(i ^ 7) % self.days) as i64
    }
}

impl Default for DateSpan {
    fn default() -> Self {
        DateSpan::DEFAULT
    }
}

/// The ITS_LIVE-shaped item number `i` (its id is unique per `i`), dated within 2011 .. 2019.
pub fn itslive_item(i: u64) -> Value {
    itslive_item_in(i, DateSpan::DEFAULT)
}

/// The ITS_LIVE-shaped item number `i`, dated within `span`.
pub fn itslive_item_in(i: u64, span: DateSpan) -> Value {
    let (coords, lon, lat) = ring(i);
    let platform = PLATFORMS[(mix(i ^ 0xABCD) % PLATFORMS.len() as u64) as usize];
    let day = span.day(i);
    let dt_days = 16 * (1 + (mix(i ^ 11) % 20) as i64);
    let date = |d: i64| {
        chrono::DateTime::from_timestamp(d * 86_400 + 43_200, 0)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S.%6fZ").to_string())
            .unwrap_or_default()
    };
    let mid = date(day);
    let id = format!(
        "{platform}_L1TP_{:06}_{}_X_{platform}_{:08}_G0120V02_P{:03}",
        mix(i) % 1_000_000,
        day,
        i,
        mix(i ^ 3) % 100
    );
    let (mut xmin, mut xmax) = (f64::MAX, f64::MIN);
    let (mut ymin, mut ymax) = (f64::MAX, f64::MIN);
    for p in &coords {
        xmin = xmin.min(p[0]);
        xmax = xmax.max(p[0]);
        ymin = ymin.min(p[1]);
        ymax = ymax.max(p[1]);
    }
    let base = format!(
        "https://its-live-data.s3.amazonaws.com/velocity_image_pair/landsatOLI/v02/N60W040/{id}"
    );
    json!({
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
            "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json",
            "https://stac-extensions.github.io/version/v1.2.0/schema.json",
            "https://stac-extensions.github.io/sat/v1.1.0/schema.json"
        ],
        "id": id,
        "collection": "itslive-granules",
        "bbox": [xmin, ymin, xmax, ymax],
        "geometry": {"type": "Polygon", "coordinates": [coords]},
        "properties": {
            "datetime": mid,
            "start_datetime": date(day - dt_days / 2),
            "mid_datetime": mid,
            "end_datetime": date(day + dt_days / 2),
            "created": date(19_000),
            "updated": date(19_000),
            "platform": platform,
            "version": "002",
            "percent_valid_pixels": (mix(i ^ 5) % 101) as i64,
            "date_dt": dt_days as f64,
            "latitude": lat,
            "longitude": lon,
            "proj:code": "EPSG:3413",
            "sat:orbit_state": if i.is_multiple_of(2) { "ascending" } else { "descending" },
            "scene_1_id": format!("{platform}_L1TP_{:06}_A", mix(i) % 1_000_000),
            "scene_2_id": format!("{platform}_L1TP_{:06}_B", mix(i) % 1_000_000),
            "scene_1_frame": format!("{:06}", mix(i) % 1_000_000),
            "scene_2_frame": format!("{:06}", mix(i) % 1_000_000)
        },
        "links": [],
        "assets": {
            "data": {
                "href": format!("{base}.nc"),
                "type": "application/netcdf",
                "roles": ["data"],
                "alternate": {"s3": {"href": format!("s3://its-live-data/velocity_image_pair/{id}.nc"), "alternate:name": "S3"}}
            },
            "overview": {"href": format!("{base}.png"), "type": "image/png", "roles": ["overview"]},
            "thumbnail": {"href": format!("{base}_thumb.png"), "type": "image/png", "roles": ["thumbnail"]}
        }
    })
}

/// The S3 key under which item `i` is stored in the sample layout.
pub fn itslive_key(i: u64) -> String {
    itslive_key_in(i, DateSpan::DEFAULT)
}

/// The S3 key of item `i` dated within `span` (the id names the day).
pub fn itslive_key_in(i: u64, span: DateSpan) -> String {
    let item = itslive_item_in(i, span);
    let id = item["id"].as_str().unwrap_or_default().to_string();
    format!("velocity_image_pair/v02/{id}.stac.json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stac::parse_item_value;

    #[test]
    fn sample_items_are_deterministic_valid_and_distinct() {
        assert_eq!(itslive_item(42), itslive_item(42));
        assert_ne!(itslive_item(1)["id"], itslive_item(2)["id"]);
        for i in 0..500 {
            let item = itslive_item(i);
            let parsed = parse_item_value(&item).unwrap_or_else(|e| panic!("item {i}: {e}"));
            assert_eq!(parsed.row.get_by_name("extra_properties"), Some(&crate::stac::Value::Null));
            let ring = item["geometry"]["coordinates"][0].as_array().map(Vec::len);
            assert_eq!(ring, Some(17));
        }
    }

    #[test]
    fn items_spread_over_decades_fall_in_as_many_years_and_the_default_span_is_unchanged() {
        assert_eq!(itslive_item_in(7, DateSpan::DEFAULT), itslive_item(7));
        let years: std::collections::BTreeSet<String> = (0..2_000)
            .map(|i| itslive_item_in(i, DateSpan::years(40))["properties"]["datetime"].to_string())
            .map(|d| d[1..5].to_string())
            .collect();
        assert_eq!(years.len(), 41, "{years:?}");
        assert_eq!(years.first().map(String::as_str), Some("1979"));
        assert_eq!(years.last().map(String::as_str), Some("2019"));
    }
}
