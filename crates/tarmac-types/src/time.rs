//! UTC calendar text from Unix time, without a time-zone database, and durations with
//! units (`90s`, `15m`, `1h30m`, `500ms`): the one parser behind config values and every
//! duration flag of `tarmac` and `tarmac-host`. Pure but for reading the clock ([`now_unix`],
//! [`now_ms`]); no I/O.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now (0 when the clock reads before 1970).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, now (0 when the clock reads before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `2026-11-21T04:48:34.123Z` (see [`rfc3339_millis`]) of a point in time (the epoch when it
/// is before 1970).
pub fn rfc3339_of(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    rfc3339_millis(d.as_secs(), d.subsec_millis())
}

/// `(year, month, day)` of a day count since 1970-01-01 (Howard Hinnant's civil-from-days,
/// proleptic Gregorian).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

/// `2026-11-21 04:48:34Z` from Unix seconds.
pub fn utc(secs: u64) -> String {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `2026-11-21T04:48:34.123Z` (RFC 3339, milliseconds) from Unix seconds and milliseconds.
pub fn rfc3339_millis(secs: u64, millis: u32) -> String {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Why a duration does not parse.
enum DurationError {
    /// Not `<number><unit>…` (empty, no number, or a number without a unit mid-way).
    Malformed,
    /// A unit other than ms, s, m, h, d, w.
    Unit(String),
    /// More than `u64::MAX` milliseconds.
    TooLarge,
}

const UNITS: &str = "ms, s, m, h, d, w";

fn parse_units(s: &str) -> Result<Duration, DurationError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(DurationError::Malformed);
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::Malformed);
        }
        let n: u128 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::TooLarge)?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim_end();
        rest = &rest[unit_len..];
        let ms: u128 = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "" => return Err(DurationError::Malformed),
            other => return Err(DurationError::Unit(other.to_owned())),
        };
        total = total.saturating_add(n.saturating_mul(ms));
    }
    let ms = u64::try_from(total).map_err(|_| DurationError::TooLarge)?;
    Ok(Duration::from_millis(ms))
}

/// Parse `90s`, `10m`, `1h30m`, `500ms`, `2d`, `1w`, or a bare number of seconds (the
/// config-value flavour: messages in the style of DC/OS gen).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    parse_units(s).map_err(|e| match e {
        DurationError::Malformed => format!(
            "Invalid duration {}: expected a number followed by a unit ({UNITS})",
            quote_short(s)
        ),
        DurationError::Unit(u) => format!(
            "Unit '{u}' not in ['ms', 's', 'm', 'h', 'd', 'w'] in duration {}",
            quote_short(s)
        ),
        DurationError::TooLarge => format!("Duration {} is too large", quote_short(s)),
    })
}

/// A duration flag on the command line (clap's `value_parser` for every `--timeout`,
/// `--check-timeout`, `--confirm-window`, …): `90s`, `15m`, `1h30m`, `500ms`, `2d`, `1w`, or
/// a bare number meaning seconds (what these flags used to take). Zero is refused: every such
/// flag is a timeout or a window.
pub fn parse_flag_duration(s: &str) -> Result<Duration, String> {
    let reason = match parse_units(s) {
        Ok(d) if d.is_zero() => "must be more than zero".to_owned(),
        Ok(d) => return Ok(d),
        Err(DurationError::Malformed) => {
            format!("expected a number followed by a unit ({UNITS})")
        }
        Err(DurationError::Unit(u)) => {
            format!("unknown unit {} (units: {UNITS})", quote_short(&u))
        }
        Err(DurationError::TooLarge) => "too large".to_owned(),
    };
    Err(format!(
        "invalid duration {}: {reason}; use e.g. 90s, 15m, 1h",
        quote_short(s.trim())
    ))
}

/// `s` in double quotes, cut at 60 characters, for messages.
fn quote_short(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if s.chars().count() > 60 {
        out.push('…');
    }
    format!("{out:?}")
}

/// Format a duration the way Prometheus and Go read it: `1d2h3m4s500ms`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u64),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        let n = ms / size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20Z");
        assert_eq!(rfc3339_millis(1_700_000_000, 7), "2023-11-14T22:13:20.007Z");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn flag_durations_with_units() {
        let ok = |s: &str| parse_flag_duration(s).unwrap();
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("15m"), Duration::from_secs(900));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("2d"), Duration::from_secs(172_800));
        assert_eq!(ok(" 1h 5s "), Duration::from_secs(3605));
    }

    #[test]
    fn flag_duration_bare_number_is_seconds() {
        assert_eq!(parse_flag_duration("900"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_flag_duration("1"), Ok(Duration::from_secs(1)));
    }

    #[test]
    fn flag_duration_errors_say_what_to_type() {
        let err = |s: &str| parse_flag_duration(s).unwrap_err();
        assert_eq!(
            err("10x"),
            r#"invalid duration "10x": unknown unit "x" (units: ms, s, m, h, d, w); use e.g. 90s, 15m, 1h"#
        );
        assert_eq!(
            err("soon"),
            r#"invalid duration "soon": expected a number followed by a unit (ms, s, m, h, d, w); use e.g. 90s, 15m, 1h"#
        );
        assert_eq!(
            err(""),
            r#"invalid duration "": expected a number followed by a unit (ms, s, m, h, d, w); use e.g. 90s, 15m, 1h"#
        );
        assert_eq!(
            err("1h30"),
            r#"invalid duration "1h30": expected a number followed by a unit (ms, s, m, h, d, w); use e.g. 90s, 15m, 1h"#
        );
        assert_eq!(
            err("0s"),
            r#"invalid duration "0s": must be more than zero; use e.g. 90s, 15m, 1h"#
        );
        assert_eq!(
            err("-5s"),
            r#"invalid duration "-5s": expected a number followed by a unit (ms, s, m, h, d, w); use e.g. 90s, 15m, 1h"#
        );
        assert_eq!(
            err("99999999999999999999w"),
            r#"invalid duration "99999999999999999999w": too large; use e.g. 90s, 15m, 1h"#
        );
    }

    #[test]
    fn config_durations_keep_their_messages() {
        assert_eq!(parse_duration("120"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("3hour").unwrap_err(),
            "Unit 'hour' not in ['ms', 's', 'm', 'h', 'd', 'w'] in duration \"3hour\""
        );
        assert_eq!(format_duration(Duration::from_secs(900)), "15m");
    }
}
