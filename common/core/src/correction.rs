//! The opt-in humidity correction of a query's answer (`correction`).
//!
//! Optical sensors count water-swollen particles as dust: in humid air they
//! read high. κ-Köhler theory (Petters and Kreidenweis 2007, Atmos. Chem.
//! Phys. 7, 1961–1971) describes how much a particle of hygroscopicity κ
//! grows with the water activity a_w = RH/100; Crilley et al. 2018
//! ("Evaluation of a low-cost optical particle counter (Alphasense OPC-N2)
//! for ambient air monitoring", Atmos. Meas. Tech. 11, 709–720,
//! doi:10.5194/amt-11-709-2018) turned it into the mass correction factor
//!
//! ```text
//! C = 1 + (κ / 1.65) / (−1 + 1 / a_w)      PM_dry = PM / C
//! ```
//!
//! which is `PM / (1 + (κ / 1.65) / (100/RH − 1))` with RH in percent.
//! The factor grows without bound as RH nears 100 %, so RH is capped at
//! [`Correction::rh_max`] (95 % unless the query says otherwise: the
//! `humid` flag's threshold, where airq already calls a reading unreliable).
//!
//! κ depends on the aerosol and on the sensor, and no published calibration
//! of κ *for the SDS011* (most of the network) was found: so a query names
//! its κ (from a co-location of its own, or a published value for its
//! sensor type), and there is no default. The answer keeps the raw values
//! in their columns, adds the corrected ones and computes the indices from
//! them; a reading without its station's humidity has no corrected value
//! and no index.

use crate::aqi::Indices;
use serde_json::{Map, Value};

/// A humidity correction a query asked for: κ-Köhler with its parameters.
/// κ is held in thousandths so that a query names it exactly (and answers
/// to equal queries are equal, cacheable and hashable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Correction {
    kappa_milli: u16,
    rh_max: u8,
}

/// A row's corrected values and the indices computed from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrected {
    /// PM10, corrected, in hundredths of µg/m³; `None` without a value or
    /// without the station's humidity.
    pub p1: Option<Hundredths>,
    pub p2: Option<Hundredths>,
    /// The indices of the corrected values, undefined without them.
    pub indices: Indices,
}

/// A corrected value in hundredths of µg/m³, written with two decimals
/// (`1158` is `11.58`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hundredths(pub u64);

impl Hundredths {
    /// `value` rounded to hundredths, halves away from zero.
    fn of(value: f64) -> Hundredths {
        // The cast saturates; values are finite and at least 0.
        Hundredths((value * 100.0).round() as u64)
    }

    /// The value its text reads as: the nearest `f64` to the decimal, as
    /// parsing the text would give.
    pub fn value(self) -> f64 {
        self.0 as f64 / 100.0
    }

    /// Appends the value with two decimals.
    pub fn push_to(self, out: &mut Vec<u8>) {
        let mut digits = itoa::Buffer::new();
        out.extend_from_slice(digits.format(self.0 / 100).as_bytes());
        out.push(b'.');
        let cents = (self.0 % 100) as u8;
        out.extend_from_slice(&[b'0' + cents / 10, b'0' + cents % 10]);
    }
}

impl std::fmt::Display for Hundredths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl Correction {
    /// The method's name in a query and in answers.
    pub const METHOD: &'static str = "kappa-kohler";
    /// The value asking for no correction (the default).
    pub const NONE: &'static str = "none";
    /// The largest κ accepted, in thousandths: sodium chloride, the most
    /// hygroscopic aerosol Petters and Kreidenweis list, has κ ≈ 1.28.
    pub const MAX_KAPPA_MILLI: u16 = 1_500;
    /// The RH cap unless the query names one, in percent.
    pub const DEFAULT_RH_MAX: u8 = 95;
    /// The caps a query may name, in percent.
    pub const RH_MAX_RANGE: std::ops::RangeInclusive<u8> = 50..=99;
    /// The source of the formula, for the page and the docs.
    pub const SOURCE: &'static str = "https://doi.org/10.5194/amt-11-709-2018";
    /// The one-line explanation the page and `/api/meta` show.
    pub const SUMMARY: &'static str = "κ-Köhler: PM_dry = PM / (1 + (κ/1.65) / (100/RH − 1)), \
         RH capped; κ from a calibration of your sensors (no published SDS011 value is known)";

    /// κ-Köhler with κ in thousandths and an RH cap in percent; `None`
    /// outside their ranges.
    pub fn new(kappa_milli: u16, rh_max: u8) -> Option<Correction> {
        ((1..=Self::MAX_KAPPA_MILLI).contains(&kappa_milli) && Self::RH_MAX_RANGE.contains(&rh_max))
            .then_some(Correction {
                kappa_milli,
                rh_max,
            })
    }

    pub fn kappa(self) -> f64 {
        f64::from(self.kappa_milli) / 1000.0
    }

    /// The cap on RH, in percent.
    pub fn rh_max(self) -> u8 {
        self.rh_max
    }

    /// The factor a value measured at `rh` % is divided by: 1 at RH 0 %
    /// or below, the cap's factor at and above the cap.
    pub fn factor(self, rh: f64) -> f64 {
        if rh.is_nan() || rh <= 0.0 {
            return 1.0;
        }
        let rh = rh.min(f64::from(self.rh_max));
        1.0 + (self.kappa() / 1.65) / (100.0 / rh - 1.0)
    }

    /// A value (text as stored) corrected for `rh` (text as stored), with
    /// two decimals; `None` when either is missing or not a finite number
    /// (a value below zero is none either).
    pub fn dry(self, value: Option<&str>, rh: Option<&str>) -> Option<String> {
        let factor = self.factor(number(rh)?);
        dry(value, factor).map(|h| h.to_string())
    }

    /// A row's corrected values (PM10, PM2.5) for the station's humidity,
    /// and their indices (computed from the values as written, as
    /// ingestion computes a reading's from its text).
    pub fn apply(self, p1: Option<&str>, p2: Option<&str>, rh: Option<&str>) -> Corrected {
        let Some(rh) = number(rh) else {
            return Corrected {
                p1: None,
                p2: None,
                indices: Indices::undefined(),
            };
        };
        let factor = self.factor(rh);
        let (p1, p2) = (dry(p1, factor), dry(p2, factor));
        let indices = Indices::of(p1.map(Hundredths::value), p2.map(Hundredths::value))
            .unwrap_or_else(Indices::undefined);
        Corrected { p1, p2, indices }
    }

    /// A query's `correction`: `Ok(None)` for `"none"`, the correction for
    /// `{"method": "kappa-kohler", "kappa": κ, "rhMax": %}` (`rhMax`
    /// optional), a message naming what is wrong otherwise.
    pub fn from_value(value: &Value) -> Result<Option<Correction>, String> {
        let shape = format!(
            "must be \"{}\" or {{\"method\": \"{}\", \"kappa\": κ}} with an optional \"rhMax\"",
            Self::NONE,
            Self::METHOD
        );
        let map = match value {
            Value::String(s) if s == Self::NONE => return Ok(None),
            Value::String(s) if s == Self::METHOD => {
                return Err(format!(
                    "\"{}\" needs the κ of your sensors: {{\"method\": \"{}\", \"kappa\": 0.3}}; \
                     airq knows no published SDS011 calibration to take as a default",
                    Self::METHOD,
                    Self::METHOD
                ))
            }
            Value::String(s) => return Err(format!("unknown correction {s:?}; {shape}")),
            Value::Object(map) => map,
            _ => return Err(shape),
        };
        if let Some(key) = map
            .keys()
            .find(|k| !["method", "kappa", "rhMax"].contains(&k.as_str()))
        {
            return Err(format!(
                "unknown field {key:?}; a correction has method, kappa and rhMax"
            ));
        }
        match map.get("method") {
            Some(Value::String(m)) if m == Self::METHOD => {}
            Some(other) => {
                return Err(format!(
                    "unknown method {other}; the method is \"{}\"",
                    Self::METHOD
                ))
            }
            None => return Err(format!("method is missing; {shape}")),
        }
        let kappa = kappa_milli(map.get("kappa"))?;
        let rh_max = match map.get("rhMax") {
            None => Self::DEFAULT_RH_MAX,
            // A whole number, written `95` or `95.0` (JSON Schema's integer).
            Some(v) => v
                .as_f64()
                .filter(|v| v.fract() == 0.0 && *v >= 0.0 && *v <= 255.0)
                .map(|v| v as u8)
                .filter(|v| Self::RH_MAX_RANGE.contains(v))
                .ok_or_else(|| {
                    format!(
                        "rhMax must be a whole percentage from {} to {}, not {v}",
                        Self::RH_MAX_RANGE.start(),
                        Self::RH_MAX_RANGE.end()
                    )
                })?,
        };
        Ok(Correction::new(kappa, rh_max))
    }

    /// The canonical JSON value, read back by [`Correction::from_value`].
    pub fn to_value(self) -> Value {
        let mut m = Map::new();
        m.insert("method".into(), Self::METHOD.into());
        m.insert("kappa".into(), self.kappa_json());
        m.insert("rhMax".into(), self.rh_max.into());
        Value::Object(m)
    }

    /// κ as a JSON number with no more decimals than it has (`0.3`).
    fn kappa_json(self) -> Value {
        serde_json::from_str(&self.kappa_text()).unwrap_or(Value::Null)
    }

    /// κ as text, with no trailing zeros: `0.3`, `0.125`, `1`.
    pub fn kappa_text(self) -> String {
        let whole = self.kappa_milli / 1000;
        let milli = self.kappa_milli % 1000;
        if milli == 0 {
            return whole.to_string();
        }
        let frac = format!("{milli:03}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
    }

    /// The `X-Airq-Correction` header's value:
    /// `kappa-kohler; kappa=0.3; rh-max=95`.
    pub fn header_value(self) -> String {
        format!(
            "{}; kappa={}; rh-max={}",
            Self::METHOD,
            self.kappa_text(),
            self.rh_max
        )
    }

    /// The `correction` member of a JSON row:
    /// `{"method":"kappa-kohler","kappa":0.3,"rhMax":95}`.
    pub fn json_member(self) -> String {
        format!(
            r#"{{"method":"{}","kappa":{},"rhMax":{}}}"#,
            Self::METHOD,
            self.kappa_text(),
            self.rh_max
        )
    }
}

/// A stored text's finite number, if it is one.
fn number(text: Option<&str>) -> Option<f64> {
    text.and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
}

/// A value (text as stored) divided by `factor`, in hundredths; `None`
/// without a finite value at least 0, or one too large to write in
/// hundredths (no reading the feed's rules accept is).
fn dry(value: Option<&str>, factor: f64) -> Option<Hundredths> {
    number(value)
        .map(|v| v / factor)
        .filter(|v| *v >= 0.0 && *v * 100.0 < u64::MAX as f64)
        .map(Hundredths::of)
}

/// κ in thousandths from a query, or why not.
fn kappa_milli(value: Option<&Value>) -> Result<u16, String> {
    let range = format!(
        "kappa must be a number above 0 and at most {} with at most 3 decimals",
        f64::from(Correction::MAX_KAPPA_MILLI) / 1000.0
    );
    let Some(value) = value else {
        return Err(format!("kappa is missing; {range}"));
    };
    let Some(k) = value.as_f64() else {
        return Err(format!("{range}, not {value}"));
    };
    let milli = (k * 1000.0).round();
    if (k * 1000.0 - milli).abs() > 1e-6
        || milli < 1.0
        || milli > f64::from(Correction::MAX_KAPPA_MILLI)
    {
        return Err(format!("{range}, not {value}"));
    }
    Ok(milli as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aqi::Index;
    use serde_json::json;

    fn kk(kappa_milli: u16, rh_max: u8) -> Correction {
        Correction::new(kappa_milli, rh_max).unwrap()
    }

    // Reference values worked by hand from the formula,
    // C = 1 + (κ/1.65) / (100/RH − 1):
    // κ = 0.3, RH = 80 %: κ/1.65 = 0.181818…, 100/80 − 1 = 0.25,
    //   C = 1 + 0.727272… = 1.727272…; 20 / C = 11.5789… → 11.58.
    // κ = 0.3, RH = 99 % capped to 95 %: 100/95 − 1 = 0.0526315…,
    //   C = 1 + 0.181818…/0.0526315… = 1 + 3.454545… = 4.454545…;
    //   20 / C = 4.4897… → 4.49.
    // κ = 0.3, RH = 50 %: 100/50 − 1 = 1, C = 1.181818…;
    //   20 / C = 16.9230… → 16.92; 35 / C = 29.6153… → 29.62.
    // κ = 0.165, RH = 90 %: κ/1.65 = 0.1, 100/90 − 1 = 0.1111…,
    //   C = 1.9; 38 / C = 20 exactly → 20.00.
    #[test]
    fn values_match_the_formula_worked_by_hand() {
        assert_eq!(
            kk(300, 95).dry(Some("20"), Some("80")).as_deref(),
            Some("11.58")
        );
        assert_eq!(
            kk(300, 95).dry(Some("20.00"), Some("99")).as_deref(),
            Some("4.49")
        );
        assert_eq!(
            kk(300, 95).dry(Some("20"), Some("50")).as_deref(),
            Some("16.92")
        );
        assert_eq!(
            kk(300, 95).dry(Some("35"), Some("50")).as_deref(),
            Some("29.62")
        );
        assert_eq!(
            kk(165, 95).dry(Some("38"), Some("90")).as_deref(),
            Some("20.00")
        );
        assert!((kk(165, 95).factor(90.0) - 1.9).abs() < 1e-12);
        assert!((kk(300, 95).factor(80.0) - 1.727_272_727_272_727).abs() < 1e-12);
    }

    #[test]
    fn the_cap_holds_at_and_above_it_and_a_lower_cap_bites_earlier() {
        let c = kk(300, 95);
        assert_eq!(c.factor(95.0), c.factor(100.0));
        assert_eq!(c.factor(95.0), c.factor(140.0));
        assert!(c.factor(94.9) < c.factor(95.0));
        // rhMax 80: RH 90 is read as 80 → C = 1.727272…, 20 / C → 11.58.
        assert_eq!(
            kk(300, 80).dry(Some("20"), Some("90")).as_deref(),
            Some("11.58")
        );
    }

    #[test]
    fn dry_air_and_missing_humidity() {
        let c = kk(300, 95);
        // RH 0 or below: no water, nothing to take off.
        assert_eq!(c.dry(Some("20"), Some("0")).as_deref(), Some("20.00"));
        assert_eq!(c.dry(Some("20"), Some("-3")).as_deref(), Some("20.00"));
        assert_eq!(c.dry(Some("20"), None), None);
        assert_eq!(c.dry(Some("20"), Some("")), None);
        assert_eq!(c.dry(Some("20"), Some("wet")), None);
        assert_eq!(c.dry(None, Some("80")), None);
        assert_eq!(c.dry(Some("-1"), Some("80")), None);
        assert_eq!(c.dry(Some("1e300"), Some("80")), None);
        assert_eq!(c.factor(f64::NAN), 1.0);
    }

    #[test]
    fn indices_come_from_the_corrected_values() {
        // PM10 20 and PM2.5 40, κ 0.3. DAQI (Defra's bands, whole µg/m³
        // rounded half up): raw PM2.5 40 is band 4 (36–41), PM10 20 band 2
        // (17–33): DAQI 4.
        // RH 80 %: C = 1.727272…, 20/C = 11.58 → 12, band 1 (0–16);
        //   40/C = 23.157… → 23.16 → 23, band 2 (12–23): DAQI 2.
        // RH 50 %: C = 1.181818…, 20/C = 16.92 → 17, band 2 (17–33);
        //   40/C = 33.846… → 33.85 → 34, band 3 (24–35): DAQI 3.
        let c = kk(300, 95).apply(Some("20"), Some("40"), Some("80"));
        assert_eq!(c.p1, Some(Hundredths(1158)));
        assert_eq!(c.p2, Some(Hundredths(2316)));
        assert_eq!(c.indices.defined(Index::Daqi), Some(2));
        let c = kk(300, 95).apply(Some("20"), Some("40"), Some("50"));
        assert_eq!(c.p1.map(|h| h.to_string()).as_deref(), Some("16.92"));
        assert_eq!(c.p2.map(|h| h.to_string()).as_deref(), Some("33.85"));
        assert_eq!(c.indices.defined(Index::Daqi), Some(3));
        let none = kk(300, 95).apply(Some("20"), Some("40"), None);
        assert_eq!((none.p1, none.p2), (None, None));
        assert_eq!(none.indices.defined(Index::Daqi), None);
    }

    #[test]
    fn hundredths_are_written_with_two_decimals_and_read_back_as_their_text() {
        for (h, text) in [
            (0, "0.00"),
            (5, "0.05"),
            (1158, "11.58"),
            (100_000, "1000.00"),
        ] {
            let mut out = Vec::new();
            Hundredths(h).push_to(&mut out);
            assert_eq!(out, text.as_bytes());
            assert_eq!(Hundredths(h).to_string(), text);
            assert_eq!(Hundredths(h).value(), text.parse::<f64>().unwrap());
        }
    }

    #[test]
    fn the_query_field_reads_back_and_refuses_what_it_cannot_do() {
        assert_eq!(Correction::from_value(&json!("none")), Ok(None));
        let c = Correction::from_value(&json!({"method": "kappa-kohler", "kappa": 0.3}))
            .unwrap()
            .unwrap();
        assert_eq!((c.kappa_text().as_str(), c.rh_max()), ("0.3", 95));
        assert_eq!(Correction::from_value(&c.to_value()), Ok(Some(c)));
        assert_eq!(c.header_value(), "kappa-kohler; kappa=0.3; rh-max=95");
        assert_eq!(
            c.json_member(),
            r#"{"method":"kappa-kohler","kappa":0.3,"rhMax":95}"#
        );
        let c = Correction::from_value(&json!({"method": "kappa-kohler", "kappa": 1, "rhMax": 90}))
            .unwrap()
            .unwrap();
        assert_eq!((c.kappa_text().as_str(), c.rh_max()), ("1", 90));
        assert_eq!(kk(125, 95).kappa_text(), "0.125");
        let c =
            Correction::from_value(&json!({"method": "kappa-kohler", "kappa": 0.3, "rhMax": 90.0}))
                .unwrap()
                .unwrap();
        assert_eq!(c.rh_max(), 90);
        for bad in [
            json!("kappa-kohler"),
            json!("dry"),
            json!(3),
            json!({"kappa": 0.3}),
            json!({"method": "epa", "kappa": 0.3}),
            json!({"method": "kappa-kohler"}),
            json!({"method": "kappa-kohler", "kappa": 0}),
            json!({"method": "kappa-kohler", "kappa": -0.2}),
            json!({"method": "kappa-kohler", "kappa": 1.6}),
            json!({"method": "kappa-kohler", "kappa": 0.1234}),
            json!({"method": "kappa-kohler", "kappa": "0.3"}),
            json!({"method": "kappa-kohler", "kappa": 0.3, "rhMax": 100}),
            json!({"method": "kappa-kohler", "kappa": 0.3, "rhMax": 49}),
            json!({"method": "kappa-kohler", "kappa": 0.3, "rhMax": 90.5}),
            json!({"method": "kappa-kohler", "kappa": 0.3, "rhMax": null}),
            json!({"method": "none", "kappa": "junk"}),
            json!({"method": "kappa-kohler", "kappa": 0.3, "rh": 90}),
        ] {
            assert!(Correction::from_value(&bad).is_err(), "{bad} accepted");
        }
    }
}
