//! The station's air (issue 28): the relative humidity and temperature
//! that a station's other sensors (DHT22, BME280, SHT3x, …) measure beside
//! its PM sensor, which the `humid` and `no_humidity` flags
//! ([`crate::quality`]) and the humidity correction read.
//!
//! **Matching.** A station is a location id: the feed gives the PM sensor
//! and the T/RH sensor of one station the same `location.id` (63 of the
//! 140 PM readings of the shipped 2019 fragment share theirs with a T/RH
//! sensor). A PM reading takes the air of the measurement at its location,
//! in the same period, which has a humidity: the one nearest in
//! time, within one step of the series (both are means over a step that
//! ends at their timestamps, so they overlap when less than a step apart);
//! of two as near, the lower sensor id. Its humidity and temperature come
//! from that one sensor (relative humidity depends on the temperature it
//! was measured at). A station with temperature only gives a temperature.
//! The archive backfill's daily means match the same way, against each
//! T/RH sensor's mean air of the day ([`AirMean`]), stamped like them.
//!
//! **Values.** Kept as sent, like P1 and P2. A humidity is a plain decimal
//! in [0, 100] %, a temperature one in [−[`MAX_TEMPERATURE`],
//! [`MAX_TEMPERATURE`]] °C; any other text is not a measurement (the
//! entry's other value may still be).

use crate::feed::{decimal_within, RawDataValue};
use crate::reading::Timestamp;
use std::collections::HashMap;
use std::time::Duration;

/// The feed's value type of a relative humidity in %.
pub const HUMIDITY_TYPE: &str = "humidity";
/// The feed's value type of a temperature in °C.
pub const TEMPERATURE_TYPE: &str = "temperature";
/// The largest temperature magnitude taken as a measurement, in °C: the
/// DHT22 and BME280 measure −40 to 80 °C (their data sheets); beyond 100
/// a value is a fault.
pub const MAX_TEMPERATURE: u64 = 100;

/// A reading's air: the humidity and temperature measured at its station
/// in its period, as sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Air {
    /// Relative humidity in %.
    pub humidity: Option<String>,
    /// Temperature in °C.
    pub temperature: Option<String>,
}

impl Air {
    /// The air of an entry's values: its humidity and temperature, where
    /// they are measurements.
    pub fn of_values(values: &[RawDataValue<'_, impl Sized>]) -> Air {
        let mut air = Air::default();
        for v in values {
            let text = || v.value.and_then(crate::feed::scalar_text);
            match v.value_type.as_ref() {
                HUMIDITY_TYPE => air.humidity = text().filter(|t| humidity(t)).map(Into::into),
                TEMPERATURE_TYPE => {
                    air.temperature = text().filter(|t| temperature(t)).map(Into::into)
                }
                _ => {}
            }
        }
        air
    }

    /// Whether it holds neither value.
    pub fn is_empty(&self) -> bool {
        self.humidity.is_none() && self.temperature.is_none()
    }

    /// The relative humidity in %.
    pub fn humidity_percent(&self) -> Option<f64> {
        self.humidity
            .as_deref()
            .filter(|t| humidity(t))
            .and_then(|t| t.parse().ok())
    }
}

/// Whether `text` is a humidity measurement: a plain decimal in [0, 100].
pub fn humidity(text: &str) -> bool {
    !text.starts_with('-') && decimal_within(text, 100)
}

/// Whether `text` is a temperature measurement (see [`MAX_TEMPERATURE`]).
pub fn temperature(text: &str) -> bool {
    decimal_within(text, MAX_TEMPERATURE)
}

/// One T/RH sensor's measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    pub location: u64,
    pub sensor_id: u64,
    pub timestamp: Timestamp,
    pub air: Air,
}

/// The stations' measurements of a feed, by location.
#[derive(Debug, Default)]
pub struct Stations {
    by_location: HashMap<u64, Vec<Measured>>,
}

impl Stations {
    pub fn add(&mut self, m: Measured) {
        if !m.air.is_empty() {
            self.by_location.entry(m.location).or_default().push(m);
        }
    }

    /// Measurements held.
    pub fn len(&self) -> usize {
        self.by_location.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_location.is_empty()
    }

    /// The air at `location` for a reading at `at` of a series whose
    /// readings are `step` apart (see the module's matching rule); `None`
    /// when nothing was measured there in the period.
    pub fn air_at(&self, location: u64, at: Timestamp, step: Duration) -> Option<Air> {
        let step = step.as_secs();
        let near = |m: &&Measured| m.timestamp.0.abs_diff(at.0) < step;
        let nearest = |with: fn(&Air) -> bool| {
            self.by_location
                .get(&location)?
                .iter()
                .filter(near)
                .filter(|m| with(&m.air))
                .min_by_key(|m| (m.timestamp.0.abs_diff(at.0), m.sensor_id))
        };
        nearest(|a| a.humidity.is_some())
            .or_else(|| nearest(|a| a.temperature.is_some()))
            .map(|m| m.air.clone())
    }
}

/// The mean air of one sensor's measurements over a period (the archive
/// backfill's day): the exact mean of its humidities and that of its
/// temperatures, each over the measurements that had one, rounded to
/// hundredths like the backfill's means of P1 and P2
/// ([`crate::mean`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AirMean {
    humidity: crate::mean::ExactSum,
    temperature: crate::mean::SignedSum,
}

impl AirMean {
    /// Adds one measurement's texts: a humidity or temperature that is
    /// not a measurement ([`humidity`], [`temperature`]) is left out.
    /// Whether either was one.
    pub fn add(&mut self, humidity_text: Option<&str>, temperature_text: Option<&str>) -> bool {
        let mut added = false;
        if let Some(h) = humidity_text.filter(|t| humidity(t)) {
            let before = self.humidity.count();
            self.humidity.add(crate::mean::value_of(Some(h)));
            added |= self.humidity.count() > before;
        }
        if let Some(t) = temperature_text.filter(|t| temperature(t)) {
            added |= self.temperature.add_text(t);
        }
        added
    }

    /// Takes back what [`AirMean::add`] added of the same texts (a
    /// replaced reading's air).
    pub fn remove(&mut self, humidity_text: Option<&str>, temperature_text: Option<&str>) {
        if let Some(h) = humidity_text.filter(|t| humidity(t)) {
            self.humidity.remove(crate::mean::value_of(Some(h)));
        }
        if let Some(t) = temperature_text.filter(|t| temperature(t)) {
            self.temperature.remove_text(t);
        }
    }

    /// The sums, for keeping them: the humidities', then the positive
    /// and the negative temperatures'.
    pub fn parts(&self) -> [crate::mean::ExactSum; 3] {
        let [positive, negative] = self.temperature.parts();
        [self.humidity, positive, negative]
    }

    /// A mean kept elsewhere, from [`AirMean::parts`].
    pub fn from_parts([humidity, positive, negative]: [crate::mean::ExactSum; 3]) -> AirMean {
        AirMean {
            humidity,
            temperature: crate::mean::SignedSum::from_parts([positive, negative]),
        }
    }

    /// The mean air; empty when nothing was measured.
    pub fn mean(&self) -> Air {
        Air {
            humidity: self.humidity.mean().map(|m| m.0),
            temperature: self.temperature.mean_text(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(
        location: u64,
        sensor_id: u64,
        t: i64,
        rh: Option<&str>,
        temp: Option<&str>,
    ) -> Measured {
        Measured {
            location,
            sensor_id,
            timestamp: Timestamp(t),
            air: Air {
                humidity: rh.map(Into::into),
                temperature: temp.map(Into::into),
            },
        }
    }

    #[test]
    fn values_are_measurements_within_their_ranges() {
        for ok in ["0", "1", "1.00", "55.5", "99.90", "100", "100.0"] {
            assert!(humidity(ok), "{ok}");
        }
        for bad in ["-1", "-0.5", "100.01", "", "NaN", "1e2", "fifty"] {
            assert!(!humidity(bad), "{bad}");
        }
        for ok in ["-40.0", "0", "21.70", "100"] {
            assert!(temperature(ok), "{ok}");
        }
        for bad in ["-100.1", "150", "warm", ""] {
            assert!(!temperature(bad), "{bad}");
        }
    }

    #[test]
    fn the_nearest_humidity_within_a_step_wins() {
        let five = Duration::from_secs(300);
        let mut s = Stations::default();
        s.add(measured(1, 20, 1_000, Some("60.00"), Some("10.00")));
        s.add(measured(1, 10, 1_100, Some("70.00"), Some("11.00")));
        s.add(measured(1, 30, 1_050, None, Some("12.00")));
        s.add(measured(2, 40, 1_000, None, None)); // nothing measured: dropped
        assert_eq!(s.len(), 3);
        // 50 s from sensor 20, 50 s from sensor 10: the lower id.
        let air = s.air_at(1, Timestamp(1_050), five).expect("air");
        assert_eq!(air.humidity.as_deref(), Some("70.00"));
        assert_eq!(
            air.temperature.as_deref(),
            Some("11.00"),
            "the same sensor's"
        );
        // Nearer to sensor 20.
        let air = s.air_at(1, Timestamp(990), five).expect("air");
        assert_eq!(air.humidity.as_deref(), Some("60.00"));
        // 299 s is within the step, 300 s is not.
        assert!(s.air_at(1, Timestamp(1_399), five).is_some());
        assert_eq!(
            s.air_at(1, Timestamp(1_400), five),
            None,
            "300 s from sensor 10, 350 s from sensor 30"
        );
        // Only a temperature in reach: that temperature alone.
        let mut t = Stations::default();
        t.add(measured(3, 50, 0, None, Some("-3.10")));
        let air = t.air_at(3, Timestamp(100), five).expect("air");
        assert_eq!(
            (air.humidity, air.temperature.as_deref()),
            (None, Some("-3.10"))
        );
        assert_eq!(s.air_at(9, Timestamp(1_000), five), None, "another station");
    }

    #[test]
    fn a_mean_air_leaves_out_what_is_no_measurement() {
        let mut m = AirMean::default();
        assert!(m.mean().is_empty());
        assert!(m.add(Some("80.00"), Some("-1.50")));
        assert!(m.add(Some("81.01"), None));
        assert!(
            m.add(Some("101.00"), Some("2.00")),
            "over 100 %: no humidity"
        );
        assert!(!m.add(Some("wet"), Some("hot")));
        assert!(!m.add(None, None));
        // Humidity (80.00 + 81.01) / 2 = 80.505 → 80.51; temperature
        // (−1.50 + 2.00) / 2 = 0.25.
        assert_eq!(
            m.mean(),
            Air {
                humidity: Some("80.51".into()),
                temperature: Some("0.25".into()),
            }
        );
    }
}
