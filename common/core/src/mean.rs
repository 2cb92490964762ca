//! Exact means of decimal values as sensors send them: the sum is kept in
//! whole nano-units (10⁻⁹ µg/m³), so that `(1.00 + 1.01) / 2` is exactly
//! `1.005` and rounds half up to `1.01`, where a float sum could land just
//! below. The archive backfill's daily means and the live tier's hourly
//! means are both made here, so the two series round alike.

/// Nano-units in one µg/m³.
pub const NANO: u128 = 1_000_000_000;

/// A value in nano-units, exactly for a plain decimal (the feed and the
/// archive write two decimals); digits past the ninth decimal, below a
/// nanogram, are dropped. Text the feed's rules accept in another form
/// (`1e1`) goes through `value`, its `f64`.
pub fn nano_units(text: &str, value: f64) -> u128 {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let plain = digits(whole) && whole.len() <= 20 && digits(fraction);
    if !plain {
        return (value * NANO as f64).round() as u128;
    }
    let whole: u128 = whole.parse().unwrap_or(0);
    let mut frac: u128 = 0;
    for i in 0..9 {
        let digit = fraction
            .as_bytes()
            .get(i)
            .map_or(0, |b| u128::from(b - b'0'));
        frac = frac * 10 + digit;
    }
    whole * NANO + frac
}

/// A value's text in nano-units: [`nano_units`], parsing the text as a
/// number only when it is not a plain decimal; `None` when it is no
/// number, or a negative or infinite one.
pub fn nano_units_of(text: &str) -> Option<u128> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let plain = !whole.is_empty()
        && whole.len() <= 20
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit());
    if plain {
        return Some(nano_units(text, 0.0));
    }
    let v: f64 = text.parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| nano_units(text, v))
}

/// A stored value's text and its number, as [`ExactSum::add`] takes them;
/// `None` for no value, or text that is no finite number at least 0.
pub fn value_of(text: Option<&str>) -> Option<(&str, f64)> {
    let text = text?;
    let value = text.trim().parse::<f64>().ok()?;
    (value.is_finite() && value >= 0.0).then_some((text, value))
}

/// The mean of `n` values summing to `sum` nano-units, rounded half up to
/// hundredths.
pub fn mean_hundredths(sum: u128, n: u64) -> u128 {
    let d = u128::from(n.max(1)) * (NANO / 100);
    (2 * sum + d) / (2 * d)
}

/// Hundredths as text with two decimals: `555` is `"5.55"`.
pub fn hundredths_text(h: u128) -> String {
    format!("{}.{:02}", h / 100, h % 100)
}

/// One pollutant's running sum.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExactSum {
    nano: u128,
    n: u64,
}

impl ExactSum {
    /// A sum kept elsewhere (a store's columns): `nano` nano-units over
    /// `n` values.
    pub fn from_parts(nano: u128, n: u64) -> ExactSum {
        ExactSum { nano, n }
    }

    /// The sum in nano-units and the number of values, for keeping it.
    pub fn parts(self) -> (u128, u64) {
        (self.nano, self.n)
    }

    /// Takes back a value [`ExactSum::add`] added (a replaced reading's).
    pub fn remove(&mut self, v: Option<(&str, f64)>) {
        if let Some((text, value)) = v {
            self.nano = self.nano.saturating_sub(nano_units(text, value));
            self.n = self.n.saturating_sub(1);
        }
    }

    /// Adds a value: its text as stored and the number it parses to.
    pub fn add(&mut self, v: Option<(&str, f64)>) {
        if let Some((text, value)) = v {
            self.nano += nano_units(text, value);
            self.n += 1;
        }
    }

    /// How many values were added.
    pub fn count(self) -> u64 {
        self.n
    }

    /// The mean in hundredths, rounded half up; `None` with no values.
    pub fn hundredths(self) -> Option<u128> {
        (self.n > 0).then(|| mean_hundredths(self.nano, self.n))
    }

    /// The mean as stored text and the number the indices are computed
    /// from (the stored text's value, so that the stored indices are those
    /// of the stored mean).
    pub fn mean(self) -> Option<(String, f64)> {
        self.hundredths()
            .map(|h| (hundredths_text(h), h as f64 / 100.0))
    }
}

/// A running sum of values that may be negative (temperatures): the
/// positive and the negative values in two [`ExactSum`]s, so that the mean
/// is exact too. It rounds half away from zero (−4.345 is −4.35), the
/// mirror of [`ExactSum`]'s half up, and never writes `-0.00`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SignedSum {
    positive: ExactSum,
    negative: ExactSum,
}

impl SignedSum {
    /// Adds a value written as a plain decimal with an optional leading
    /// `-`; other text is no value and is not counted (false).
    pub fn add_text(&mut self, text: &str) -> bool {
        match self.part(text) {
            Some((sum, nano)) => {
                sum.nano += nano;
                sum.n += 1;
                true
            }
            None => false,
        }
    }

    /// Takes back a value [`SignedSum::add_text`] added (a replaced
    /// reading's); other text changes nothing (false).
    pub fn remove_text(&mut self, text: &str) -> bool {
        match self.part(text) {
            Some((sum, nano)) => {
                sum.nano = sum.nano.saturating_sub(nano);
                sum.n = sum.n.saturating_sub(1);
                true
            }
            None => false,
        }
    }

    /// The sum a value's text goes to and its magnitude in nano-units;
    /// `None` for text that is no plain decimal.
    fn part(&mut self, text: &str) -> Option<(&mut ExactSum, u128)> {
        let (sum, magnitude) = match text.strip_prefix('-') {
            Some(m) => (&mut self.negative, m),
            None => (&mut self.positive, text),
        };
        let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let (whole, fraction) = magnitude.split_once('.').unwrap_or((magnitude, "0"));
        (plain(whole) && whole.len() <= 20 && plain(fraction))
            .then(|| (sum, nano_units(magnitude, 0.0)))
    }

    /// The sums of the positive and of the negative values, for keeping
    /// them ([`ExactSum::parts`] each).
    pub fn parts(self) -> [ExactSum; 2] {
        [self.positive, self.negative]
    }

    /// A sum kept elsewhere, from [`SignedSum::parts`].
    pub fn from_parts([positive, negative]: [ExactSum; 2]) -> SignedSum {
        SignedSum { positive, negative }
    }

    pub fn count(self) -> u64 {
        self.positive.n + self.negative.n
    }

    /// The mean as text with two decimals; `None` with no values.
    pub fn mean_text(self) -> Option<String> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let (p, q) = (self.positive.nano, self.negative.nano);
        let h = mean_hundredths(p.abs_diff(q), n);
        Some(match q > p && h > 0 {
            true => format!("-{}", hundredths_text(h)),
            false => hundredths_text(h),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_means_rounded_half_up() {
        assert_eq!(nano_units("5.55", 5.55), 5_550_000_000);
        assert_eq!(nano_units("7", 7.0), 7_000_000_000);
        assert_eq!(nano_units("0.1234567891", 0.1234567891), 123_456_789);
        assert_eq!(nano_units("1e1", 10.0), 10_000_000_000);
        // (1.00 + 1.01) / 2 = 1.005: half up, where a float mean
        // (1.0049999…) would round down.
        let sum = nano_units("1.00", 1.0) + nano_units("1.01", 1.01);
        assert_eq!(hundredths_text(mean_hundredths(sum, 2)), "1.01");
        assert_eq!(hundredths_text(mean_hundredths(3 * NANO, 3)), "1.00");
        assert_eq!(hundredths_text(5), "0.05");
        let mut s = ExactSum::default();
        assert_eq!(s.mean(), None);
        s.add(Some(("1.00", 1.0)));
        s.add(None);
        s.add(Some(("1.01", 1.01)));
        assert_eq!(s.count(), 2);
        assert_eq!(s.mean(), Some(("1.01".to_owned(), 1.01)));
        s.remove(Some(("1.01", 1.01)));
        assert_eq!(s.parts(), (NANO, 1));
        assert_eq!(
            ExactSum::from_parts(3 * NANO, 2).mean(),
            Some(("1.50".to_owned(), 1.5))
        );
    }

    #[test]
    fn signed_means_round_half_away_from_zero() {
        let mean = |values: &[&str]| {
            let mut s = SignedSum::default();
            for v in values {
                assert!(s.add_text(v), "{v}");
            }
            s.mean_text()
        };
        assert_eq!(SignedSum::default().mean_text(), None);
        // (4.34 + 4.35) / 2 = 4.345 → 4.35; its mirror → −4.35.
        assert_eq!(mean(&["4.34", "4.35"]).as_deref(), Some("4.35"));
        assert_eq!(mean(&["-4.34", "-4.35"]).as_deref(), Some("-4.35"));
        // (−1.00 + 3.00 + 1.01) / 3 = 1.003… → 1.00.
        assert_eq!(mean(&["-1.00", "3.00", "1.01"]).as_deref(), Some("1.00"));
        // (−0.01 + 0.00) / 2 = −0.005 → −0.01; (−0.01 + 0.01) / 2 = 0.
        assert_eq!(mean(&["-0.01", "0.00"]).as_deref(), Some("-0.01"));
        assert_eq!(mean(&["-0.01", "0.01"]).as_deref(), Some("0.00"));
        assert_eq!(mean(&["-0.004"]).as_deref(), Some("0.00"), "no -0.00");
        let mut s = SignedSum::default();
        for bad in ["", "-", "1e1", "--1", "warm", "1.2.3", "-.5"] {
            assert!(!s.add_text(bad), "{bad}");
        }
        assert_eq!(s.count(), 0);
    }
}
