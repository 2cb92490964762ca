//! The one duration syntax of every flag, variable and API field: humantime text
//! (`250ms`, `90s`, `24h`, `31days`, `1h 30m`) or a bare number of seconds.

use std::time::Duration;

/// Parses a duration (as a flag: `value_parser = airq_cli::duration::parse`).
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| format!("{s:?}: {e}"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration such as 90s, 24h or 31days: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humantime_forms_and_bare_seconds() {
        assert_eq!(parse("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse(" 90 ").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("31days").unwrap(), Duration::from_secs(31 * 86_400));
        assert_eq!(parse("1h 30m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn nonsense_is_refused_with_an_example() {
        for bad in ["soon", "", "-5", "1.5", "99999999999999999999999"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(&format!("{:?}", bad.trim())), "{bad}: {e}");
        }
        assert!(parse("soon").unwrap_err().contains("such as 90s"));
    }
}
