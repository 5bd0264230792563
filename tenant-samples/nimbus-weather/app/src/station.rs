//! Nimbus Weather's batch wrangling: a line of a stations file (`stations.jsonl`: `faa`,
//! `name`, `lat`, `lon`, `alt` in feet, `tz` in hours from UTC, `dst`, `tzone`) becomes the
//! station's reference document, keyed by its FAA code, the key observations refer to
//! (`station.faa`). The location is a GeoJSON point, the altitude in metres.

use mysimbdp_ingest_sdk::{
    bson::{Document, doc},
    read::Record,
};
use serde_json::{Map, Value};

use crate::units::round2;

/// The members every stations file must have (the tenant's agreement).
pub const REQUIRED_FIELDS: [&str; 4] = ["faa", "name", "lat", "lon"];

/// Metres in a foot.
const METRES_PER_FOOT: f64 = 0.3048;

/// The document of one record of a stations file, or why the record is rejected.
pub fn wrangle(file: &str, record: &Record) -> Result<Document, String> {
    let object = record.json().ok_or("a stations file is JSON lines, one object per line")?;
    let mut document = station(object)?;
    document.insert("source", doc! { "file": file, "line": record.line() as i64 });
    Ok(document)
}

/// The document of one station object.
pub fn station(object: &Map<String, Value>) -> Result<Document, String> {
    let text = |field: &str| object.get(field).and_then(Value::as_str).map(str::trim).filter(|t| !t.is_empty());
    let number = |field: &str| -> Result<Option<f64>, String> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => Err(format!("{field}: `{other}` is not a number")),
        }
    };
    let faa = text("faa").ok_or("faa is missing")?;
    let name = text("name").ok_or("name is missing")?;
    let lat = number("lat")?.ok_or("lat is missing")?;
    let lon = number("lon")?.ok_or("lon is missing")?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(format!("lat/lon: ({lat}, {lon}) is not a place on Earth"));
    }
    let mut document = doc! {
        "_id": faa,
        "name": name,
        "location": { "type": "Point", "coordinates": [lon, lat] },
    };
    if let Some(feet) = number("alt")? {
        document.insert("altitude_m", round2(feet * METRES_PER_FOOT));
    }
    if let Some(hours) = number("tz")? {
        document.insert("utc_offset_h", hours);
    }
    if let Some(dst) = text("dst") {
        document.insert("dst", dst);
    }
    if let Some(zone) = text("tzone") {
        document.insert("time_zone", zone);
    }
    Ok(document)
}

#[cfg(test)]
mod tests {
    use mysimbdp_ingest_sdk::read::Records;

    use super::*;

    fn wrangle_line(line: &str) -> Result<Document, String> {
        let record = Records::json_lines("stations.jsonl", std::io::Cursor::new(format!("{line}\n")))
            .next()
            .expect("one record")
            .map_err(|e| e.to_string())?;
        wrangle("stations.jsonl", &record)
    }

    #[test]
    fn a_station_line_becomes_a_reference_document() {
        let document = wrangle_line(
            r#"{"faa": "04G", "name": "Lansdowne Airport", "lat": 41.1304722, "lon": -80.6195833, "alt": 1044, "tz": -5, "dst": "A", "tzone": "America/New_York"}"#,
        )
        .unwrap();
        let expected = doc! {
            "_id": "04G",
            "name": "Lansdowne Airport",
            "location": { "type": "Point", "coordinates": [-80.6195833, 41.1304722] },
            "altitude_m": 318.21,
            "utc_offset_h": -5.0,
            "dst": "A",
            "time_zone": "America/New_York",
            "source": { "file": "stations.jsonl", "line": 1_i64 },
        };
        assert_eq!(document, expected);
    }

    #[test]
    fn bad_stations_are_rejected_with_the_field() {
        assert_eq!(wrangle_line(r#"{"name": "x", "lat": 1, "lon": 1}"#).unwrap_err(), "faa is missing");
        assert_eq!(
            wrangle_line(r#"{"faa": "X", "name": "x", "lat": "n", "lon": 1}"#).unwrap_err(),
            "lat: `\"n\"` is not a number"
        );
        assert!(wrangle_line(r#"{"faa": "X", "name": "x", "lat": 91, "lon": 1}"#).unwrap_err().contains("not a place"));
        let sparse = wrangle_line(r#"{"faa": "X", "name": "x", "lat": 1, "lon": 2, "tzone": null}"#).unwrap();
        assert!(!sparse.contains_key("time_zone") && !sparse.contains_key("altitude_m"));
    }
}
