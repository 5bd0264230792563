//! Units of the observations as stations send them, and their conversion to the SI units the
//! documents use: °C, m/s, hPa (= mbar = 100 Pa, the meteorological unit of pressure), km and
//! mm. A message may name its units in a `units` object; without it, the units are those of
//! the sample data (°F, mph, mbar, miles, inches).

use serde_json::Value;

/// Temperature units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temperature {
    /// Degrees Fahrenheit.
    Fahrenheit,
    /// Degrees Celsius.
    Celsius,
    /// Kelvin.
    Kelvin,
}

/// Speed units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speed {
    /// Miles per hour.
    Mph,
    /// Knots (nautical miles per hour).
    Knots,
    /// Kilometres per hour.
    KmPerHour,
    /// Metres per second.
    MetresPerSecond,
}

/// Pressure units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pressure {
    /// Millibar, the same as hectopascal.
    Millibar,
    /// Inches of mercury.
    InchesOfMercury,
    /// Kilopascal.
    Kilopascal,
}

/// Length units (visibility, precipitation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// Statute miles.
    Miles,
    /// Kilometres.
    Kilometres,
    /// Inches.
    Inches,
    /// Millimetres.
    Millimetres,
}

/// The units of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Units {
    /// Of `temp` and `dewp`.
    pub temperature: Temperature,
    /// Of `wind_speed` and `wind_gust`.
    pub speed: Speed,
    /// Of `pressure`.
    pub pressure: Pressure,
    /// Of `visib`.
    pub visibility: Length,
    /// Of `precip`.
    pub precipitation: Length,
}

impl Default for Units {
    /// The sample data's units.
    fn default() -> Self {
        Self {
            temperature: Temperature::Fahrenheit,
            speed: Speed::Mph,
            pressure: Pressure::Millibar,
            visibility: Length::Miles,
            precipitation: Length::Inches,
        }
    }
}

impl Units {
    /// The units a message names in its `units` object (`{"temp": "C", "wind": "knots",
    /// "pressure": "inHg", "visib": "km", "precip": "mm"}`), the defaults for those it does not
    /// name; an unknown unit is an error naming the field.
    pub fn of(message: &Value) -> Result<Self, String> {
        let mut units = Self::default();
        let Some(named) = message.get("units") else { return Ok(units) };
        let named = named.as_object().ok_or("units: expected an object such as {\"temp\": \"F\"}")?;
        for (field, unit) in named {
            let unit = unit.as_str().ok_or_else(|| format!("units.{field}: expected a unit name"))?;
            let unknown = || format!("units.{field}: `{unit}` is not a unit this app knows");
            match field.as_str() {
                "temp" => {
                    units.temperature = match unit {
                        "F" | "°F" | "degF" => Temperature::Fahrenheit,
                        "C" | "°C" | "degC" => Temperature::Celsius,
                        "K" => Temperature::Kelvin,
                        _ => return Err(unknown()),
                    }
                }
                "wind" => {
                    units.speed = match unit {
                        "mph" => Speed::Mph,
                        "knots" | "kt" | "kn" => Speed::Knots,
                        "km/h" | "kph" => Speed::KmPerHour,
                        "m/s" => Speed::MetresPerSecond,
                        _ => return Err(unknown()),
                    }
                }
                "pressure" => {
                    units.pressure = match unit {
                        "mbar" | "hPa" | "mb" => Pressure::Millibar,
                        "inHg" => Pressure::InchesOfMercury,
                        "kPa" => Pressure::Kilopascal,
                        _ => return Err(unknown()),
                    }
                }
                "visib" => {
                    units.visibility = match unit {
                        "mi" | "miles" => Length::Miles,
                        "km" => Length::Kilometres,
                        _ => return Err(unknown()),
                    }
                }
                "precip" => {
                    units.precipitation = match unit {
                        "in" | "inches" => Length::Inches,
                        "mm" => Length::Millimetres,
                        _ => return Err(unknown()),
                    }
                }
                _ => {
                    return Err(format!("units.{field}: no such measured field (temp, wind, pressure, visib, precip)"));
                }
            }
        }
        Ok(units)
    }
}

/// A temperature in °C.
pub fn celsius(value: f64, unit: Temperature) -> f64 {
    match unit {
        Temperature::Fahrenheit => (value - 32.0) * 5.0 / 9.0,
        Temperature::Celsius => value,
        Temperature::Kelvin => value - 273.15,
    }
}

/// A speed in m/s.
pub fn metres_per_second(value: f64, unit: Speed) -> f64 {
    match unit {
        Speed::Mph => value * 0.44704,
        Speed::Knots => value * 1852.0 / 3600.0,
        Speed::KmPerHour => value / 3.6,
        Speed::MetresPerSecond => value,
    }
}

/// A pressure in hPa.
pub fn hectopascals(value: f64, unit: Pressure) -> f64 {
    match unit {
        Pressure::Millibar => value,
        Pressure::InchesOfMercury => value * 33.863_886_666,
        Pressure::Kilopascal => value * 10.0,
    }
}

/// A distance in km (miles or km).
pub fn kilometres(value: f64, unit: Length) -> f64 {
    match unit {
        Length::Miles => value * 1.609_344,
        Length::Kilometres => value,
        Length::Inches => value * 0.000_025_4,
        Length::Millimetres => value / 1_000_000.0,
    }
}

/// A depth in mm (inches or mm).
pub fn millimetres(value: f64, unit: Length) -> f64 {
    match unit {
        Length::Inches => value * 25.4,
        Length::Millimetres => value,
        Length::Miles => value * 1_609_344.0,
        Length::Kilometres => value * 1_000_000.0,
    }
}

/// `value` rounded to two decimals, the precision the instruments have.
pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn conversions_match_the_definitions() {
        let cases = [
            (round2(celsius(39.02, Temperature::Fahrenheit)), 3.9),
            (round2(celsius(-40.0, Temperature::Fahrenheit)), -40.0),
            (round2(celsius(273.15, Temperature::Kelvin)), 0.0),
            (round2(metres_per_second(10.0, Speed::Mph)), 4.47),
            (round2(metres_per_second(10.0, Speed::Knots)), 5.14),
            (round2(metres_per_second(36.0, Speed::KmPerHour)), 10.0),
            (round2(hectopascals(29.92, Pressure::InchesOfMercury)), 1013.21),
            (round2(hectopascals(101.3, Pressure::Kilopascal)), 1013.0),
            (round2(kilometres(10.0, Length::Miles)), 16.09),
            (round2(millimetres(0.06, Length::Inches)), 1.52),
        ];
        for (index, (got, expected)) in cases.into_iter().enumerate() {
            assert!((got - expected).abs() < 1e-9, "case {index}: {got} != {expected}");
        }
    }

    #[test]
    fn a_message_may_name_its_units() {
        assert_eq!(Units::of(&json!({"temp": 1})).unwrap(), Units::default());
        let named = Units::of(&json!({"units": {"temp": "C", "wind": "knots", "pressure": "inHg"}})).unwrap();
        assert_eq!(
            (named.temperature, named.speed, named.pressure, named.visibility),
            (Temperature::Celsius, Speed::Knots, Pressure::InchesOfMercury, Length::Miles)
        );
        assert_eq!(
            Units::of(&json!({"units": {"wind": "furlongs"}})).unwrap_err(),
            "units.wind: `furlongs` is not a unit this app knows"
        );
        assert!(Units::of(&json!({"units": {"humidity": "%"}})).unwrap_err().contains("no such measured field"));
        assert!(Units::of(&json!({"units": "SI"})).is_err());
    }
}
