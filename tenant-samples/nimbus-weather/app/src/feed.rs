//! What Nimbus Weather's publisher puts on the observations topic: each row of `weather.csv`
//! as a JSON message keyed by its station (so that one station's hours stay in order on one
//! partition), and, on request, deliberately malformed messages of four kinds, one for each way
//! the ingest app refuses a message.

use mysimbdp_ingest_sdk::read::Record;
use serde_json::{Map, Number, Value, json};

use crate::observation::FIELDS;

/// The observation message of one `weather.csv` row: `origin` and `time_hour` as text, every
/// other column as a number, `null` for `NA` or an empty field. A value that is not a number is
/// kept as text (the ingest app then refuses the message, naming the field).
pub fn message_of_row(record: &Record) -> Map<String, Value> {
    let mut message = Map::with_capacity(FIELDS.len());
    for field in FIELDS {
        let Some(text) = record.get(field).map(str::trim) else { continue };
        let value = if text.is_empty() || text == "NA" {
            Value::Null
        } else if field == "origin" || field == "time_hour" {
            Value::String(text.to_owned())
        } else {
            number(text).unwrap_or_else(|| Value::String(text.to_owned()))
        };
        message.insert(field.to_owned(), value);
    }
    message
}

fn number(text: &str) -> Option<Value> {
    if let Ok(whole) = text.parse::<i64>() {
        return Some(Value::Number(whole.into()));
    }
    text.parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number)
}

/// The kinds of deliberately malformed messages, in the order the publisher sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Cut off in the middle: not JSON.
    NotJson,
    /// A byte that is not UTF-8.
    NotUtf8,
    /// A temperature that is a word.
    BadValue,
    /// No `time_hour`, so no id.
    NoTime,
}

impl Malformed {
    /// The `n`-th malformed message's kind (0-based): the four kinds in turn.
    pub fn nth(n: u64) -> Self {
        match n % 4 {
            0 => Self::NotJson,
            1 => Self::NotUtf8,
            2 => Self::BadValue,
            _ => Self::NoTime,
        }
    }

    /// What the ingest app's dead letter says about it (the start of the reason).
    pub fn expected_reason(self) -> &'static str {
        match self {
            Self::NotJson => "the value is not JSON",
            Self::NotUtf8 => "the value is not UTF-8 text",
            Self::BadValue => "temp: `\"warm\"` is not a number",
            Self::NoTime => "time_hour is missing",
        }
    }

    /// The message's value, made from a good observation message.
    pub fn value(self, good: &Map<String, Value>) -> Vec<u8> {
        let mut message = good.clone();
        match self {
            Self::NotJson => {
                let text = Value::Object(message).to_string();
                let mut cut = text.len() / 2;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.as_bytes()[..cut].to_vec()
            }
            Self::NotUtf8 => {
                let mut bytes = br#"{"origin":"EW"#.to_vec();
                bytes.push(0xff);
                bytes.extend_from_slice(br#"R","temp":40}"#);
                bytes
            }
            Self::BadValue => {
                message.insert("temp".into(), json!("warm"));
                Value::Object(message).to_string().into_bytes()
            }
            Self::NoTime => {
                message.remove("time_hour");
                Value::Object(message).to_string().into_bytes()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use mysimbdp_ingest_sdk::{read::Records, stream::IncomingMessage};

    use super::*;
    use crate::observation;

    const CSV: &str = "origin,year,month,day,hour,temp,dewp,humid,wind_dir,wind_speed,wind_gust,precip,pressure,visib,time_hour\n\
        EWR,2013,1,1,1,39.02,26.06,59.37,270,10.357019999999999,NA,0,1012,10,2013-01-01T06:00:00Z\n\
        JFK,2013,11,3,1,53.96,37.94,54.51,320,9.20624,,0,NA,10,2013-11-03T05:00:00Z\n";

    fn rows() -> Vec<Map<String, Value>> {
        Records::csv("weather.csv", std::io::Cursor::new(CSV)).unwrap().map(|r| message_of_row(&r.unwrap())).collect()
    }

    #[test]
    fn a_row_becomes_a_typed_message_the_app_ingests() {
        let rows = rows();
        assert_eq!(
            Value::Object(rows[0].clone()),
            json!({
                "origin": "EWR", "year": 2013, "month": 1, "day": 1, "hour": 1, "temp": 39.02, "dewp": 26.06,
                "humid": 59.37, "wind_dir": 270, "wind_speed": 10.357019999999999, "wind_gust": null, "precip": 0,
                "pressure": 1012, "visib": 10, "time_hour": "2013-01-01T06:00:00Z"
            })
        );
        let (id, _) = observation::wrangle(&Value::Object(rows[1].clone())).unwrap();
        assert_eq!(id, "JFK/2013-11-03T05:00:00Z");
    }

    #[test]
    fn every_malformed_kind_is_refused_with_its_reason() {
        let good = &rows()[0];
        for n in 0..4 {
            let kind = Malformed::nth(n);
            let value = kind.value(good);
            let reason = match IncomingMessage::new("t.observations", 0, 0, None, &value) {
                Err(reason) => reason,
                Ok(message) => observation::wrangle(message.json()).unwrap_err(),
            };
            assert!(reason.starts_with(kind.expected_reason()), "{kind:?}: {reason}");
        }
        assert_eq!(Malformed::nth(4), Malformed::NotJson);
    }
}
