//! The CI gate: thresholds from a TOML file and flags, checked against a report's totals.
//!
//! ```toml
//! [rules]
//! lowest-efficiency = 0.95        # fail below this efficiency (0..1)
//! highest-wasted-bytes = "20MB"   # fail above this many wasted bytes
//! highest-wasted-percent = 5.0    # fail above this share of shipped bytes wasted
//! highest-total-size = "500MB"    # fail above this compressed image size
//! highest-secrets = 0             # fail above this many secrets
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::error::AuditError;
use crate::report::{GateFailure, GateResult, Secret, Totals};

/// Thresholds; `None` disables a check.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Thresholds {
    /// Lowest efficiency allowed, 0 to 1.
    pub lowest_efficiency: Option<f64>,
    /// Most wasted bytes allowed.
    pub highest_wasted_bytes: Option<u64>,
    /// Largest wasted share allowed, in percent.
    pub highest_wasted_percent: Option<f64>,
    /// Largest compressed image size allowed (sum of layer blobs).
    pub highest_total_size: Option<u64>,
    /// Most secrets allowed.
    pub highest_secrets: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    rules: Rules,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Rules {
    lowest_efficiency: Option<f64>,
    highest_wasted_bytes: Option<Size>,
    highest_wasted_percent: Option<f64>,
    highest_total_size: Option<Size>,
    highest_secrets: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    Number(u64),
    Text(String),
}

impl Size {
    fn bytes(&self, what: &'static str) -> Result<u64, AuditError> {
        match self {
            Size::Number(n) => Ok(*n),
            Size::Text(text) => parse_size(what, text),
        }
    }
}

impl Thresholds {
    /// Reads the `[rules]` table of a TOML file.
    pub fn from_file(path: &Path) -> Result<Thresholds, AuditError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuditError::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |reason: String| AuditError::ConfigInvalid {
            path: path.to_path_buf(),
            reason,
        };
        let file: ConfigFile = toml::from_str(&text).map_err(|e| invalid(e.message().into()))?;
        let rules = file.rules;
        let thresholds = Thresholds {
            lowest_efficiency: rules.lowest_efficiency,
            highest_wasted_bytes: rules
                .highest_wasted_bytes
                .map(|s| s.bytes("highest-wasted-bytes"))
                .transpose()?,
            highest_wasted_percent: rules.highest_wasted_percent,
            highest_total_size: rules
                .highest_total_size
                .map(|s| s.bytes("highest-total-size"))
                .transpose()?,
            highest_secrets: rules.highest_secrets,
        };
        thresholds.validate().map_err(|r| invalid(r.into()))?;
        Ok(thresholds)
    }

    /// Replaces each threshold with the one `other` sets, if any (flags over the file).
    pub fn overridden_by(self, other: Thresholds) -> Thresholds {
        Thresholds {
            lowest_efficiency: other.lowest_efficiency.or(self.lowest_efficiency),
            highest_wasted_bytes: other.highest_wasted_bytes.or(self.highest_wasted_bytes),
            highest_wasted_percent: other.highest_wasted_percent.or(self.highest_wasted_percent),
            highest_total_size: other.highest_total_size.or(self.highest_total_size),
            highest_secrets: other.highest_secrets.or(self.highest_secrets),
        }
    }

    /// Rejects an efficiency outside 0..=1 and a negative or non-finite percentage.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self
            .lowest_efficiency
            .is_some_and(|e| !(0.0..=1.0).contains(&e))
        {
            return Err("lowest-efficiency must be between 0 and 1");
        }
        if self
            .highest_wasted_percent
            .is_some_and(|p| !(0.0..=100.0).contains(&p))
        {
            return Err("highest-wasted-percent must be between 0 and 100");
        }
        Ok(())
    }

    /// Checks the totals. Every failed threshold is listed, in a fixed order.
    pub fn check(&self, totals: &Totals, secrets: &[Secret]) -> GateResult {
        let mut failures = Vec::new();
        if let Some(limit) = self.lowest_efficiency
            && totals.efficiency < limit
        {
            failures.push(GateFailure {
                rule: "lowest-efficiency",
                limit,
                actual: totals.efficiency,
                message: format!(
                    "efficiency {:.4} is below the lowest allowed {limit:.4}",
                    totals.efficiency
                ),
            });
        }
        if let Some(limit) = self.highest_wasted_bytes
            && totals.wasted_bytes > limit
        {
            failures.push(GateFailure {
                rule: "highest-wasted-bytes",
                limit: limit as f64,
                actual: totals.wasted_bytes as f64,
                message: format!(
                    "{} bytes are wasted, more than the {limit} allowed",
                    totals.wasted_bytes
                ),
            });
        }
        if let Some(limit) = self.highest_wasted_percent
            && totals.wasted_percent > limit
        {
            failures.push(GateFailure {
                rule: "highest-wasted-percent",
                limit,
                actual: totals.wasted_percent,
                message: format!(
                    "{:.2} % of the shipped bytes are wasted, more than the {limit:.2} % allowed",
                    totals.wasted_percent
                ),
            });
        }
        if let Some(limit) = self.highest_total_size
            && totals.compressed_bytes > limit
        {
            failures.push(GateFailure {
                rule: "highest-total-size",
                limit: limit as f64,
                actual: totals.compressed_bytes as f64,
                message: format!(
                    "the image's layers take {} bytes, more than the {limit} allowed",
                    totals.compressed_bytes
                ),
            });
        }
        if let Some(limit) = self.highest_secrets
            && secrets.len() as u64 > limit
        {
            failures.push(GateFailure {
                rule: "highest-secrets",
                limit: limit as f64,
                actual: secrets.len() as f64,
                message: format!(
                    "{} secrets found, more than the {limit} allowed",
                    secrets.len()
                ),
            });
        }
        GateResult {
            passed: failures.is_empty(),
            failures,
        }
    }
}

/// Parses a byte count: a number with an optional suffix K, M, G, T (powers of 1024; `KB`,
/// `KiB` and lower case mean the same).
pub fn parse_size(what: &'static str, text: &str) -> Result<u64, AuditError> {
    let invalid = |reason| AuditError::InvalidValue {
        what,
        value: text.to_string(),
        reason,
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| invalid("expected a whole number of bytes, with K, M, G or T"))?;
    let shift = match suffix.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(invalid("unknown suffix; use K, M, G or T")),
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| invalid("too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(efficiency: f64, wasted: u64, percent: f64, compressed: u64) -> Totals {
        Totals {
            compressed_bytes: compressed,
            uncompressed_bytes: 0,
            shipped_bytes: 0,
            final_bytes: 0,
            hidden_bytes: 0,
            duplicate_bytes: 0,
            wasted_bytes: wasted,
            wasted_percent: percent,
            efficiency,
        }
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("x", "512").unwrap(), 512);
        assert_eq!(parse_size("x", "20M").unwrap(), 20 << 20);
        assert_eq!(parse_size("x", "1GiB").unwrap(), 1 << 30);
        assert!(parse_size("x", "1.5G").is_err());
        assert!(parse_size("x", "12Q").is_err());
    }

    #[test]
    fn every_failed_threshold_is_listed() {
        let t = Thresholds {
            lowest_efficiency: Some(0.9),
            highest_wasted_bytes: Some(100),
            highest_wasted_percent: Some(5.0),
            highest_total_size: Some(1000),
            highest_secrets: Some(0),
        };
        let result = t.check(&totals(0.5, 200, 50.0, 2000), &[]);
        let rules: Vec<&str> = result.failures.iter().map(|f| f.rule).collect();
        assert_eq!(
            rules,
            [
                "lowest-efficiency",
                "highest-wasted-bytes",
                "highest-wasted-percent",
                "highest-total-size"
            ]
        );
        assert!(!result.passed);
        assert!(t.check(&totals(0.95, 100, 5.0, 1000), &[]).passed);
    }

    #[test]
    fn config_file_is_read_and_flags_override_it() {
        let dir = std::env::temp_dir().join(format!("audit-gate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.toml");
        std::fs::write(
            &path,
            "[rules]\nlowest-efficiency = 0.9\nhighest-wasted-bytes = \"1K\"\nhighest-total-size = 4096\n",
        )
        .unwrap();
        let file = Thresholds::from_file(&path).unwrap();
        assert_eq!(file.highest_wasted_bytes, Some(1024));
        assert_eq!(file.highest_total_size, Some(4096));
        let merged = file.overridden_by(Thresholds {
            lowest_efficiency: Some(0.5),
            ..Thresholds::default()
        });
        assert_eq!(merged.lowest_efficiency, Some(0.5));
        assert_eq!(merged.highest_wasted_bytes, Some(1024));
        std::fs::write(&path, "[rules]\nlowest-efficency = 0.9\n").unwrap();
        assert!(matches!(
            Thresholds::from_file(&path),
            Err(AuditError::ConfigInvalid { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
