//! Parsers for the value syntaxes used in annotations: durations ("250ms",
//! "1m30s") and Kubernetes quantities ("200m", "256Mi").

use std::time::Duration;

/// Parses a duration made of `<number><unit>` parts with units
/// `ns`, `us`, `ms`, `s`, `m`, `h`. Numbers may have a fraction ("1.5s").
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total_nanos: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let number = &rest[..num_len];
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("{number:?} has no unit")),
            other => return Err(format!("unknown unit {other:?}")),
        };
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if int.is_empty() && frac.is_empty() || frac.contains('.') {
            return Err(format!("{number:?} is not a number"));
        }
        let int: u128 = if int.is_empty() { 0 } else { int.parse().map_err(|_| format!("{number:?} is too large"))? };
        let mut nanos = int.checked_mul(scale).ok_or("duration is too large")?;
        let mut div = 1u128;
        for d in frac.chars().take(18) {
            div *= 10;
            nanos += u128::from(d.to_digit(10).unwrap_or(0)) * scale / div;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or("duration is too large")?;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| "duration is too large".to_string())?;
    Ok(Duration::new(secs, (total_nanos % 1_000_000_000) as u32))
}

/// Formats a duration the way users write them, e.g. "1m30s", "250ms".
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    let units: [(u128, &str); 6] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    let mut out = String::new();
    let mut rest = nanos;
    for (scale, unit) in units {
        if rest >= scale {
            out.push_str(&format!("{}{unit}", rest / scale));
            rest %= scale;
        }
    }
    out
}

/// A Kubernetes resource quantity, kept as text plus its value in
/// milli-units for comparisons (requests vs limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity {
    /// The quantity as written.
    pub text: String,
    /// Value times 1000, rounded down.
    pub millis: u128,
}

/// Parses a Kubernetes quantity: a decimal number with an optional suffix
/// (`m`, `k`, `M`, `G`, `T`, `P`, `E`, `Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`)
/// or a decimal exponent (`1e3`).
pub fn parse_quantity(text: &str) -> Result<Quantity, String> {
    let s = text.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number = number.strip_prefix('+').unwrap_or(number);
    let valid_number = !number.is_empty()
        && number.chars().filter(|c| *c == '.').count() <= 1
        && number.chars().any(|c| c.is_ascii_digit())
        && number.chars().all(|c| c.is_ascii_digit() || c == '.');
    if !valid_number {
        return Err(format!("{s:?} does not start with a non-negative number"));
    }
    let (mul, div): (u128, u128) = match suffix {
        "" => (1000, 1),
        "m" => (1, 1),
        "k" => (1000 * 1000, 1),
        "M" => (1000 * 1_000_000, 1),
        "G" => (1000 * 1_000_000_000, 1),
        "T" => (1000 * 1_000_000_000_000, 1),
        "P" => (1000 * 1_000_000_000_000_000, 1),
        "E" => (1000 * 1_000_000_000_000_000_000, 1),
        "Ki" => (1000 << 10, 1),
        "Mi" => (1000 << 20, 1),
        "Gi" => (1000 << 30, 1),
        "Ti" => (1000 << 40, 1),
        "Pi" => (1000 << 50, 1),
        "Ei" => (1000 << 60, 1),
        other => {
            if let Some(exp) = other.strip_prefix(['e', 'E']) {
                let exp: u32 = exp.parse().map_err(|_| format!("{s:?} has a bad exponent"))?;
                if exp > 18 {
                    return Err(format!("{s:?} is too large"));
                }
                (1000 * 10u128.pow(exp), 1)
            } else {
                return Err(format!(
                    "{s:?} has unknown suffix {other:?} (use m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi or Ei)"
                ));
            }
        }
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let int: u128 = if int.is_empty() { 0 } else { int.parse().map_err(|_| format!("{s:?} is too large"))? };
    let mut millis = int.checked_mul(mul).ok_or_else(|| format!("{s:?} is too large"))? / div;
    let mut d = 1u128;
    for c in frac.chars().take(18) {
        d *= 10;
        millis += u128::from(c.to_digit(10).unwrap_or(0)) * mul / d;
    }
    Ok(Quantity { text: s.to_owned(), millis })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("10us").unwrap(), Duration::from_micros(10));
        assert_eq!(parse_duration(" 5s ").unwrap(), Duration::from_secs(5));
        for bad in ["", "5", "s", "5 s", "5sec", "1..5s", "-1s", "99999999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for text in ["1m30s", "250ms", "2h", "0s", "1s500ms", "10us"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("200m").unwrap().millis, 200);
        assert_eq!(parse_quantity("1").unwrap().millis, 1000);
        assert_eq!(parse_quantity("0.5").unwrap().millis, 500);
        assert_eq!(parse_quantity("256Mi").unwrap().millis, 1000 * 256 * 1024 * 1024);
        assert_eq!(parse_quantity("1G").unwrap().millis, 1000 * 1_000_000_000);
        assert_eq!(parse_quantity("1e3").unwrap().millis, 1_000_000);
        assert!(parse_quantity("256Mi").unwrap().millis > parse_quantity("200M").unwrap().millis);
        for bad in ["1.5Gb", "", "Mi", "-1", "1..2", "abc", "1 Gi"] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
    }
}
