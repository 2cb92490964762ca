//! The country of a position, offline: the archive's rows have coordinates
//! but no country, and one `country` filter must find live and backfilled
//! readings alike.
//!
//! The boundaries are the `country-boundaries` crate's, compiled into the
//! binary (OpenStreetMap data, ODbL 1.0, © OpenStreetMap contributors; see
//! `master/tests/data/archive/SOURCES.md`). It answers ISO 3166-1 alpha-2
//! codes (and ISO 3166-2 subdivisions, which are passed over); the live
//! feed's own convention differs for the United Kingdom, which it calls
//! `UK` (ISO: `GB`). Kosovo is `XK` in both. The data is simplified around
//! coasts and has no sea borders: a point at sea, or a little off a
//! coastline, is in no country.

use country_boundaries::{CountryBoundaries, LatLon, BOUNDARIES_ODBL_360X180};

/// Codes the boundaries answer that the live feed writes otherwise, as
/// `(boundaries, feed)`: the United Kingdom, which the feed calls `UK`, and
/// the exceptionally reserved codes the boundaries give parts of a country
/// (the Canary Islands, Ceuta and Melilla, Ascension, Tristan da Cunha,
/// Diego Garcia, Clipperton), which the feed files under the country
/// (a Ceuta sensor of the shipped snapshot says `ES`).
const FEED_CODES: &[(&str, &str)] = &[
    ("GB", "UK"),
    ("IC", "ES"),
    ("EA", "ES"),
    ("AC", "SH"),
    ("TA", "SH"),
    ("DG", "IO"),
    ("CP", "FR"),
];

/// The boundaries, loaded once per run (about 1 MB, a few milliseconds).
pub struct Countries {
    boundaries: CountryBoundaries,
}

impl Countries {
    pub fn load() -> anyhow::Result<Countries> {
        // The raster of 1° cells: the fastest lookups of the three rasters
        // the crate ships, for about 1 MB of binary.
        let boundaries = CountryBoundaries::from_reader(BOUNDARIES_ODBL_360X180)
            .map_err(|e| anyhow::anyhow!("cannot load the country boundaries: {e}"))?;
        Ok(Countries { boundaries })
    }

    /// The country at `lat`, `lon` in the live feed's convention, or `None`
    /// at sea (and at 0/0, which is sea).
    pub fn at(&self, lat: f64, lon: f64) -> Option<&str> {
        let position = LatLon::new(lat, lon).ok()?;
        // Smallest area first: a subdivision (`GB-ENG`), then its country.
        // The first plain two-letter code is the country.
        let iso = self
            .boundaries
            .ids(position)
            .into_iter()
            .find(|id| id.len() == 2 && id.bytes().all(|b| b.is_ascii_uppercase()))?;
        Some(
            FEED_CODES
                .iter()
                .find(|(from, _)| *from == iso)
                .map_or(iso, |(_, to)| to),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_in_the_feeds_convention() {
        let c = Countries::load().expect("the boundaries load");
        // The archive sample's site, near Apatity on the Kola peninsula.
        assert_eq!(c.at(67.555_035_2, 33.439_936), Some("RU"));
        assert_eq!(c.at(51.5074, -0.1278), Some("UK"), "London");
        assert_eq!(c.at(55.9533, -3.1883), Some("UK"), "Edinburgh");
        assert_eq!(c.at(54.5973, -5.9301), Some("UK"), "Belfast");
        assert_eq!(c.at(42.6629, 21.1655), Some("XK"), "Pristina");
        assert_eq!(c.at(48.7758, 9.1829), Some("DE"), "Stuttgart");
        assert_eq!(c.at(53.3498, -6.2603), Some("IE"), "Dublin");
        assert_eq!(c.at(42.6977, 23.3219), Some("BG"), "Sofia");
        assert_eq!(c.at(28.1235, -15.4363), Some("ES"), "Las Palmas");
        assert_eq!(c.at(35.8894, -5.3213), Some("ES"), "Ceuta");
        assert_eq!(c.at(0.0, 0.0), None, "0/0, the Gulf of Guinea");
        assert_eq!(c.at(45.0, -30.0), None, "the North Atlantic");
        assert_eq!(c.at(91.0, 0.0), None, "not a latitude");
    }
}

#[cfg(test)]
mod sample {
    use super::*;

    /// The live feed's own countries against the derived ones, over the
    /// shipped snapshot's 4,928 readings: all but four agree.
    #[test]
    fn derived_countries_agree_with_the_live_feed() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../data/sample/201806032249_data.dust.min.json"
        );
        let doc = std::fs::read(path).expect("the shipped sample");
        let c = Countries::load().expect("boundaries");
        let mut differ = std::collections::BTreeMap::<(String, String), u32>::new();
        let mut total = 0;
        airq_core::feed::parse_feed(&doc, |r| {
            if let Ok(r) = r {
                total += 1;
                let (lat, lon) = r.position().expect("stored coordinates are numbers");
                let got = c.at(lat, lon).unwrap_or("-").to_owned();
                if got != r.loc_country {
                    *differ.entry((r.loc_country.clone(), got)).or_default() += 1;
                }
            }
        })
        .expect("parses");
        // The snapshot's three `DE` sensors that sit in Brussels, Sofia and
        // on Gotland (see shared/data/sensor-community/SOURCES.md), and one
        // by the Swiss border.
        let n: u32 = differ.values().sum();
        assert_eq!((n, total), (4, 4928), "{differ:?}");
    }
}
