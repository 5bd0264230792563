//! Nimbus Weather's stream wrangling: an hourly observation message becomes a document with SI
//! units, a real UTC timestamp and a reference to its station. The id is the business key
//! (station and hour), so an observation published or delivered twice is stored once.
//!
//! A message is a JSON object with the sample data's columns: `origin` (the station's FAA
//! code), `time_hour` (the hour, RFC 3339 in UTC), `year`, `month`, `day`, `hour` (local time),
//! `temp`, `dewp`, `humid`, `wind_dir`, `wind_speed`, `wind_gust`, `precip`, `pressure`, `visib`.
//! Values are numbers or numeric strings; `null`, `""` and `"NA"` mean missing. A value that is
//! not a number, or is out of any plausible range, refuses the message with a reason naming the
//! field.

use mysimbdp_ingest_sdk::bson::{Bson, DateTime, Document, doc};
use serde_json::{Map, Value};

use crate::units::{self, Units};

/// The fields of an observation message.
pub const FIELDS: [&str; 15] = [
    "origin",
    "year",
    "month",
    "day",
    "hour",
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
    "time_hour",
];

/// The id and document of an observation message, or why it is refused.
pub fn wrangle(message: &Value) -> Result<(String, Document), String> {
    let object = message.as_object().ok_or("the message is not a JSON object")?;
    let fields = Fields(object);
    let units = Units::of(message)?;

    let origin = fields.text("origin")?.ok_or("origin is missing")?;
    if !(3..=4).contains(&origin.len()) || !origin.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
        return Err(format!("origin: `{origin}` is not an FAA station code (3 or 4 capitals or digits)"));
    }
    let time_text = fields.text("time_hour")?.ok_or("time_hour is missing")?;
    let time = DateTime::parse_rfc3339_str(time_text)
        .map_err(|_| format!("time_hour: `{time_text}` is not an RFC 3339 time such as 2013-01-01T06:00:00Z"))?;
    let time_utc = time.try_to_rfc3339_string().map_err(|e| format!("time_hour: `{time_text}`: {e}"))?;

    let mut document = doc! { "station": { "faa": origin }, "time": time };
    let mut local = Document::new();
    for (field, range) in [("year", 1900.0..=2100.0), ("month", 1.0..=12.0), ("day", 1.0..=31.0), ("hour", 0.0..=23.0)]
    {
        if let Some(value) = fields.number(field, range)? {
            if value.fract() != 0.0 {
                return Err(format!("{field}: `{value}` is not a whole number"));
            }
            local.insert(field, value as i32);
        }
    }
    if !local.is_empty() {
        document.insert("local", local);
    }
    let temperature = |field| -> Result<Option<f64>, String> {
        let value = fields.number(field, f64::MIN..=f64::MAX)?;
        let celsius = value.map(|v| units::celsius(v, units.temperature));
        check(field, celsius, -90.0..=60.0, "°C")
    };
    insert(&mut document, "temperature_c", temperature("temp")?);
    insert(&mut document, "dew_point_c", temperature("dewp")?);
    insert(&mut document, "humidity_pct", fields.number("humid", 0.0..=100.0)?.map(units::round2));

    let mut wind = Document::new();
    insert(&mut wind, "direction_deg", fields.number("wind_dir", 0.0..=360.0)?);
    for (field, key) in [("wind_speed", "speed_ms"), ("wind_gust", "gust_ms")] {
        let speed = fields.number(field, f64::MIN..=f64::MAX)?.map(|v| units::metres_per_second(v, units.speed));
        insert(&mut wind, key, check(field, speed, 0.0..=120.0, "m/s")?);
    }
    if !wind.is_empty() {
        document.insert("wind", wind);
    }
    let precipitation =
        fields.number("precip", f64::MIN..=f64::MAX)?.map(|v| units::millimetres(v, units.precipitation));
    insert(&mut document, "precipitation_mm", check("precip", precipitation, 0.0..=500.0, "mm")?);
    let pressure = fields.number("pressure", f64::MIN..=f64::MAX)?.map(|v| units::hectopascals(v, units.pressure));
    insert(&mut document, "pressure_hpa", check("pressure", pressure, 850.0..=1100.0, "hPa")?);
    let visibility = fields.number("visib", f64::MIN..=f64::MAX)?.map(|v| units::kilometres(v, units.visibility));
    insert(&mut document, "visibility_km", check("visib", visibility, 0.0..=200.0, "km")?);

    Ok((observation_id(origin, &time_utc), document))
}

/// The business key of an observation: station and hour, e.g. `EWR/2013-01-01T06:00:00Z`.
pub fn observation_id(origin: &str, time_utc: &str) -> String {
    format!("{origin}/{time_utc}")
}

/// A converted value rounded to two decimals, refused when outside `range` (in `unit`).
fn check(
    field: &str,
    value: Option<f64>,
    range: std::ops::RangeInclusive<f64>,
    unit: &str,
) -> Result<Option<f64>, String> {
    match value {
        Some(v) if !range.contains(&v) => Err(format!(
            "{field}: {:.2} {unit} is outside the plausible range {}..{} {unit}",
            v,
            range.start(),
            range.end()
        )),
        other => Ok(other.map(units::round2)),
    }
}

fn insert(document: &mut Document, key: &str, value: Option<impl Into<Bson>>) {
    if let Some(value) = value {
        document.insert(key, value);
    }
}

/// A message's members, read the way stations write them.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    /// A text member; missing when absent, `null`, `""` or `"NA"`.
    fn text(&self, field: &str) -> Result<Option<&str>, String> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if is_missing(s) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim())),
            Some(other) => Err(format!("{field}: expected text, got {other}")),
        }
    }

    /// A number member (a JSON number or a numeric string) within `range`.
    fn number(&self, field: &str, range: std::ops::RangeInclusive<f64>) -> Result<Option<f64>, String> {
        let value = match self.0.get(field) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) if is_missing(s) => return Ok(None),
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        let shown = || self.0.get(field).map_or_else(String::new, Value::to_string);
        match value {
            Some(v) if !v.is_finite() => Err(format!("{field}: `{}` is not a number", shown())),
            Some(v) if !range.contains(&v) => {
                Err(format!("{field}: {v} is outside the plausible range {}..{}", range.start(), range.end()))
            }
            Some(v) => Ok(Some(v)),
            None => Err(format!("{field}: `{}` is not a number", shown())),
        }
    }
}

fn is_missing(text: &str) -> bool {
    let text = text.trim();
    text.is_empty() || text == "NA"
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> Value {
        // weather.csv: EWR,2013,1,1,16,37.04,19.94,49.62,300,13.80936,20.71404,0,1012.1,10,2013-01-01T21:00:00Z
        json!({
            "origin": "EWR", "year": 2013, "month": 1, "day": 1, "hour": 16,
            "temp": 37.04, "dewp": 19.94, "humid": 49.62, "wind_dir": 300,
            "wind_speed": 13.80936, "wind_gust": 20.71404, "precip": 0, "pressure": 1012.1, "visib": 10,
            "time_hour": "2013-01-01T21:00:00Z"
        })
    }

    #[test]
    fn an_observation_becomes_an_si_document_keyed_by_station_and_hour() {
        let (id, document) = wrangle(&sample()).unwrap();
        assert_eq!(id, "EWR/2013-01-01T21:00:00Z");
        let expected = doc! {
            "station": { "faa": "EWR" },
            "time": DateTime::parse_rfc3339_str("2013-01-01T21:00:00Z").unwrap(),
            "local": { "year": 2013, "month": 1, "day": 1, "hour": 16 },
            "temperature_c": 2.8,
            "dew_point_c": -6.7,
            "humidity_pct": 49.62,
            "wind": { "direction_deg": 300.0, "speed_ms": 6.17, "gust_ms": 9.26 },
            "precipitation_mm": 0.0,
            "pressure_hpa": 1012.1,
            "visibility_km": 16.09,
        };
        assert_eq!(document, expected);
    }

    #[test]
    fn missing_values_are_left_out_and_strings_are_read_as_numbers() {
        let mut message = sample();
        message["wind_gust"] = json!("NA");
        message["pressure"] = Value::Null;
        message["visib"] = json!("");
        message["temp"] = json!("37.04");
        message["time_hour"] = json!("2013-01-01T21:00:00+00:00");
        let (id, document) = wrangle(&message).unwrap();
        assert_eq!(id, "EWR/2013-01-01T21:00:00Z", "the same hour gives the same id however it is written");
        assert_eq!(document.get_f64("temperature_c").unwrap(), 2.8);
        assert!(!document.contains_key("pressure_hpa") && !document.contains_key("visibility_km"));
        assert_eq!(document.get_document("wind").unwrap(), &doc! { "direction_deg": 300.0, "speed_ms": 6.17 });
    }

    #[test]
    fn named_units_are_converted_too() {
        let mut message = sample();
        message["units"] = json!({"temp": "C", "wind": "knots", "pressure": "inHg", "visib": "km", "precip": "mm"});
        message["temp"] = json!(2.8);
        message["wind_speed"] = json!(12);
        message["pressure"] = json!(29.92);
        message["precip"] = json!(1.5);
        let (_, document) = wrangle(&message).unwrap();
        assert_eq!(document.get_f64("temperature_c").unwrap(), 2.8);
        assert_eq!(document.get_document("wind").unwrap().get_f64("speed_ms").unwrap(), 6.17);
        assert_eq!(document.get_f64("pressure_hpa").unwrap(), 1013.21);
        assert_eq!(document.get_f64("visibility_km").unwrap(), 10.0);
        assert_eq!(document.get_f64("precipitation_mm").unwrap(), 1.5);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases: [(&str, Value, &str); 9] = [
            ("origin", Value::Null, "origin is missing"),
            ("origin", json!("ewr"), "origin: `ewr` is not an FAA station code"),
            ("time_hour", Value::Null, "time_hour is missing"),
            ("time_hour", json!("2013-01-01 21h"), "time_hour: `2013-01-01 21h` is not an RFC 3339 time"),
            ("temp", json!("warm"), "temp: `\"warm\"` is not a number"),
            ("temp", json!(200), "temp: 93.33 °C is outside the plausible range"),
            ("humid", json!(140), "humid: 140 is outside the plausible range 0..100"),
            ("month", json!(1.5), "month: `1.5` is not a whole number"),
            ("pressure", json!([1]), "pressure: `[1]` is not a number"),
        ];
        for (field, value, expected) in cases {
            let mut message = sample();
            message[field] = value;
            let reason = wrangle(&message).unwrap_err();
            assert!(reason.starts_with(expected), "{field}: {reason}");
        }
        assert_eq!(wrangle(&json!([1, 2])).unwrap_err(), "the message is not a JSON object");
    }
}
