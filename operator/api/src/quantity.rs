//! Positive sizes, rates and durations as tenants write them (`50Mi`, `2`, `500m`, `90s`).
//!
//! Both newtypes keep the text exactly as written, so a round trip through the API never
//! rewrites a tenant's spec, and carry the same rule in their schema (a CEL rule the API server
//! enforces) as in their parser (what the operator and the CLI enforce).

use std::{borrow::Cow, fmt, str::FromStr, time::Duration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// What a [`PositiveQuantity`] must be, in the words of both the parser and the schema rule.
const QUANTITY_RULE: &str = "must be a quantity greater than zero, such as 50Mi, 2G, 1.5 or 500m";
/// What a [`PositiveDuration`] must be, in the words of both the parser and the schema rule.
const DURATION_RULE: &str = "must be a duration greater than zero, such as 250ms, 30s, 5m or 1h30m";

/// The conversions, formatting and schema of a newtype that keeps its text as written in a
/// `text` field and parses it with `FromStr`; the schema carries the parser's rule as CEL.
macro_rules! text_newtype {
    ($name:ident, $rule:expr, $message:expr) => {
        impl TryFrom<String> for $name {
            type Error = QuantityError;
            fn try_from(text: String) -> Result<Self, Self::Error> {
                text.parse()
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.text
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.text)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.text)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn inline_schema() -> bool {
                true
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "maxLength": 32,
                    "x-kubernetes-validations": [{ "rule": $rule, "message": $message }],
                })
            }
        }
    };
}

/// A Kubernetes quantity that must be greater than zero: a number with an optional suffix,
/// binary (`Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`), decimal (`m`, `k`, `M`, `G`, `T`, `P`, `E`) or a
/// decimal exponent (`1e6`). Used for byte sizes, byte rates, CPU and memory.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PositiveQuantity {
    text: String,
    value: f64,
}

/// Why a quantity or duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not a number with a known suffix, or not above zero.
    #[error("`{0}` {QUANTITY_RULE}")]
    Quantity(String),
    /// Not a Go-style duration, or not above zero.
    #[error("`{0}` {DURATION_RULE}")]
    Duration(String),
}

impl PositiveQuantity {
    /// The quantity in base units (bytes, bytes per second, cores).
    pub fn value(&self) -> f64 {
        self.value
    }

    /// The quantity in whole base units, rounded up (a size of `1.5` bytes needs 2).
    pub fn ceil_u64(&self) -> u64 {
        // Saturating float-to-int conversion is what we want for absurdly large inputs.
        self.value.ceil() as u64
    }

    /// The quantity exactly as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for PositiveQuantity {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match parse_quantity(text) {
            Some(value) if value > 0.0 => Ok(Self { text: text.to_owned(), value }),
            _ => Err(QuantityError::Quantity(text.to_owned())),
        }
    }
}

/// Parses the Kubernetes quantity grammar into a value in base units.
fn parse_quantity(text: &str) -> Option<f64> {
    let digits_end = text
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '-' || c == '+'))))
        .map_or(text.len(), |(i, _)| i);
    let (number, suffix) = text.split_at(digits_end);
    let unsigned = number.trim_start_matches(['+', '-']);
    if unsigned.is_empty() || unsigned == "." || unsigned.matches('.').count() > 1 {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E'])?;
            let unsigned = digits.trim_start_matches(['+', '-']);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            10f64.powi(digits.parse().ok()?)
        }
    };
    Some(number * multiplier)
}

text_newtype!(PositiveQuantity, "isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))", QUANTITY_RULE);

/// A duration greater than zero in Go's notation (`250ms`, `30s`, `5m`, `1h30m`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PositiveDuration {
    text: String,
    value: Duration,
}

impl PositiveDuration {
    /// The duration.
    pub fn get(&self) -> Duration {
        self.value
    }

    /// The duration exactly as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for PositiveDuration {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.parse::<kube::core::Duration>() {
            Ok(parsed) if !parsed.is_negative() && !Duration::from(parsed).is_zero() => {
                Ok(Self { text: text.to_owned(), value: parsed.into() })
            }
            _ => Err(QuantityError::Duration(text.to_owned())),
        }
    }
}

text_newtype!(
    PositiveDuration,
    "self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') && duration(self) > duration('0s')",
    DURATION_RULE
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_to_base_units() {
        let cases = [
            ("50Mi", 50.0 * 1024.0 * 1024.0),
            ("2G", 2e9),
            ("1.5", 1.5),
            ("500m", 0.5),
            ("1e3", 1000.0),
            ("+4Ki", 4096.0),
            ("3E", 3e18),
        ];
        for (text, want) in cases {
            let q: PositiveQuantity = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!((q.value() - want).abs() < 1e-6 * want, "{text}: {} != {want}", q.value());
            assert_eq!(q.as_str(), text, "text is kept as written");
        }
    }

    #[test]
    fn quantities_that_are_not_positive_or_malformed_are_refused() {
        for text in ["0", "-5Mi", "0Gi", "", "Mi", "5 Mi", "5MB", "1.2.3", "5e", "ten", "."] {
            let err = text.parse::<PositiveQuantity>().unwrap_err();
            assert_eq!(err, QuantityError::Quantity(text.into()), "{text}");
        }
    }

    #[test]
    fn durations_parse_and_refuse_zero_negative_and_garbage() {
        assert_eq!("1h30m".parse::<PositiveDuration>().unwrap().get(), Duration::from_secs(5400));
        assert_eq!("250ms".parse::<PositiveDuration>().unwrap().get(), Duration::from_millis(250));
        for text in ["0s", "-5s", "5", "1d", "soon", ""] {
            assert_eq!(text.parse::<PositiveDuration>(), Err(QuantityError::Duration(text.into())), "{text}");
        }
    }

    #[test]
    fn serde_round_trip_keeps_the_text() {
        let q: PositiveQuantity = serde_json::from_str("\"64Mi\"").unwrap();
        assert_eq!(serde_json::to_string(&q).unwrap(), "\"64Mi\"");
        let err = serde_json::from_str::<PositiveQuantity>("\"-1\"").unwrap_err();
        assert!(err.to_string().contains(QUANTITY_RULE), "{err}");
    }
}
