//! Value types that flags, environment variables and the config file share, so that a
//! size or a duration is spelled the same way wherever an operator writes it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// `64M`, `1.5G`, `1048576`: sizes in bytes with optional 1024-based suffixes. The one
/// parser behind every size flag and size key.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'B' => 1,
                _ => return Err(format!("{s:?}: unknown size suffix {c:?} (use K, M, G, T)")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 512K, 64M, 1G)"))?;
    if v.is_nan() || v <= 0.0 || !v.is_finite() {
        return Err(format!("{s:?}: size must be positive"));
    }
    let bytes = v * mult as f64;
    if bytes >= u64::MAX as f64 {
        return Err(format!("{s:?}: size too large"));
    }
    Ok(bytes as u64)
}

/// `[schedule] cron`: five fields (minute hour day-of-month month day-of-week), or six with
/// seconds first; evaluated in UTC by the daemon. One line on error, naming the key.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let fields = expr.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "[schedule] cron = {expr:?}: five fields expected (minute hour day month weekday), or six with seconds first"
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| {
            let why = e.to_string().replace('\n', " ");
            format!("[schedule] cron = {expr:?}: {why}")
        })
}

/// A size in bytes, written `64M` (or a plain integer in the config file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_size(s).map(Size)
    }
}

/// As an operator writes it: `64M`, `2G`, `1536K`; a plain byte count when no suffix is
/// exact. [`parse_size`] reads it back to the same value.
impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (suffix, unit) in [
            ("T", 1u64 << 40),
            ("G", 1 << 30),
            ("M", 1 << 20),
            ("K", 1 << 10),
        ] {
            if self.0 >= unit && self.0.is_multiple_of(unit) {
                return write!(f, "{}{suffix}", self.0 / unit);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(0) => Err(serde::de::Error::custom("size must be positive")),
            Raw::Int(n) => Ok(Size(n)),
            Raw::Text(s) => parse_size(&s).map(Size).map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written in words: `500ms`, `2s`, `15m`, `24h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(Dur)
            .map_err(|e| format!("{s:?} is not a duration (e.g. 500ms, 2s, 15m): {e}"))
    }
}

/// As an operator writes it: `24h`, `15m`, `1h30m`, `500ms` (hours at most: `1day` and
/// `7days` read as `24h` and `168h`); [`Dur::from_str`] reads it back to the same value.
impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.subsec_nanos().is_multiple_of(1_000_000) {
            return write!(f, "{}", humantime::format_duration(self.0));
        }
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (suffix, unit) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if ms >= unit {
                write!(f, "{}{suffix}", ms / unit)?;
                ms %= unit;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A password: readable through [`Secret::expose`] only, so that no `{:?}` of a config,
/// no log line and no `config check` can print it by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Secret(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// etcd's `--user NAME[:PASSWORD]`: the part after the colon is a password, so it is
/// masked the same way as [`Secret`].
#[derive(Clone, PartialEq, Eq)]
pub struct UserSpec(String);

impl UserSpec {
    pub fn new(s: impl Into<String>) -> UserSpec {
        UserSpec(s.into())
    }
    /// The name, and the password when one is written after the colon.
    pub fn split(&self) -> (&str, Option<&str>) {
        match self.0.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (&self.0, None),
        }
    }
    pub fn has_password(&self) -> bool {
        self.split().1.is_some()
    }
    /// The name with any password replaced by `***`.
    pub fn masked(&self) -> String {
        match self.split() {
            (n, Some(_)) => format!("{n}:***"),
            (n, None) => n.to_string(),
        }
    }
}

impl fmt::Debug for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.masked())
    }
}

impl FromStr for UserSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(UserSpec(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for UserSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(UserSpec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert!(parse_size("-1").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("1e30T").is_err());
    }

    #[test]
    fn sizes_and_durations_print_as_written() {
        for (written, shown) in [
            ("64M", "64M"),
            ("1G", "1G"),
            ("1.5k", "1536"),
            ("1000", "1000"),
        ] {
            let s: Size = written.parse().unwrap();
            assert_eq!(s.to_string(), shown);
            assert_eq!(s.to_string().parse::<Size>().unwrap(), s);
        }
        assert_eq!(Size(1536).to_string(), "1536");
        assert_eq!(Size(3 << 10).to_string(), "3K");
        for (written, shown) in [
            ("24h", "24h"),
            ("1day", "24h"),
            ("15m", "15m"),
            ("90m", "1h30m"),
            ("500ms", "500ms"),
            ("2s", "2s"),
            ("0s", "0s"),
        ] {
            let d: Dur = written.parse().unwrap();
            assert_eq!(d.to_string(), shown, "{written}");
            assert_eq!(d.to_string().parse::<Dur>().unwrap(), d);
        }
    }

    #[test]
    fn secrets_never_debug_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let u = UserSpec::new("root:hunter2");
        assert!(!format!("{u:?}").contains("hunter2"));
        assert_eq!(u.split(), ("root", Some("hunter2")));
    }
}
