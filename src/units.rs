//! Parsing the quantities people type on a command line: durations (`250ms`, `10s`)
//! and sizes (`64`, `10MB`, `1GiB`). Pure functions, shared by every subcommand.

use std::time::Duration;

/// Parses a duration as people type it: `250ms`, `10s`, `2m`, `1.5s`, or a bare number
/// of seconds.
///
/// # Errors
/// A message saying what was wrong, for the CLI to show.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (try 500ms, 10s, 2m)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("'{text}' is not a duration (it must be 0 or more)"));
    }
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("'{text}' is too long a duration"))
}

/// Parses a byte size: a bare number of bytes, or a number with `K`, `M`, `G` (powers of
/// 1000, with or without a trailing `B`) or `KiB`, `MiB`, `GiB` (powers of 1024).
///
/// # Errors
/// A message saying what was wrong, for the CLI to show.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("'{text}' is not a size (try 64, 10MB, 1GiB)")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size (try 64, 10MB, 1GiB)"))?;
    let bytes = value * scale;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("'{text}' is too large a size"));
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1.5k"), Ok(1500));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("10XB").is_err());
        assert!(parse_size("-1").is_err());
    }
}
