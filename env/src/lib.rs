//! The reader of Cezbek's configuration from environment variables. Reading collects every
//! problem and reports them together: fixing config one restart at a time is miserable.
//!
//! A crate of its own so that every crate reads its settings the same way, the ledger among
//! them, without depending on the service platform.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// Every problem found while reading a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration ({} problem{}):\n{}", .problems.len(),
    if .problems.len() == 1 { "" } else { "s" },
    .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// A reader of `CEZBEK_…` variables that records problems instead of stopping at the first.
#[derive(Debug)]
pub struct Env {
    vars: HashMap<String, String>,
    problems: Vec<String>,
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars())
    }

    /// A fixed set of variables (tests, or a config file turned into pairs).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let vars = pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        Self { vars, problems: Vec::new() }
    }

    /// The value if set and not blank.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.vars.get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.optional(name).unwrap_or_else(|| default.to_owned())
    }

    /// A value with no sensible default: missing is a problem.
    pub fn required(&mut self, name: &str) -> String {
        self.optional(name).unwrap_or_else(|| {
            self.problem(name, "is required but not set");
            String::new()
        })
    }

    pub fn parse<T>(&mut self, name: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: Display,
    {
        let Some(raw) = self.optional(name) else {
            return default;
        };
        raw.parse().unwrap_or_else(|error| {
            self.problem(name, format!("{raw:?} is not valid: {error}"));
            default
        })
    }

    pub fn socket_addr(&mut self, name: &str, default: &str) -> SocketAddr {
        let raw = self.string(name, default);
        raw.parse().unwrap_or_else(|error| {
            self.problem(name, format!("{raw:?} is not a host:port address: {error}"));
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    pub fn bool(&mut self, name: &str, default: bool) -> bool {
        let Some(raw) = self.optional(name) else {
            return default;
        };
        match raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => {
                self.problem(name, format!("{raw:?} is not a boolean (true/false)"));
                default
            }
        }
    }

    /// A comma-separated list; blank items are dropped.
    pub fn list(&self, name: &str, default: &str) -> Vec<String> {
        self.string(name, default)
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// A duration written as `250ms`, `5s`, `2m` or `1h`.
    pub fn duration(&mut self, name: &str, default: Duration) -> Duration {
        let Some(raw) = self.optional(name) else {
            return default;
        };
        parse_duration(&raw).unwrap_or_else(|reason| {
            self.problem(name, format!("{raw:?} {reason}"));
            default
        })
    }

    /// Records a problem with a variable.
    pub fn problem(&mut self, name: &str, reason: impl Display) {
        self.problems.push(format!("{name}: {reason}"));
    }

    /// Checks a condition that spans values; records `reason` against `name` when it fails.
    pub fn check(&mut self, ok: bool, name: &str, reason: impl Display) {
        if !ok {
            self.problem(name, reason);
        }
    }

    /// Ends reading: the value if nothing was wrong, every problem otherwise.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError { problems: self.problems })
        }
    }
}

pub fn parse_duration(raw: &str) -> Result<Duration, &'static str> {
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let value: u64 = number.parse().map_err(|_| "must start with a whole number (e.g. 5s)")?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        "h" => Ok(Duration::from_secs(value * 3600)),
        _ => Err("needs a unit: ms, s, m or h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5 days").is_err());
    }

    #[test]
    fn every_problem_is_kept_and_reported_together() {
        let mut env = Env::from_pairs([("A", "x"), ("B", "maybe"), ("C", "5 days")]);
        let _ = env.parse("A", 1u32);
        let _ = env.bool("B", false);
        let _ = env.duration("C", Duration::from_secs(1));
        let _ = env.required("D");
        let problems = env.finish(()).unwrap_err().problems;
        let names: Vec<&str> = problems.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(names, vec!["A", "B", "C", "D"]);
    }
}
