//! ACME Air's wrangling: how a row of its flights, planes and airlines exports becomes a
//! coredms document. Every document's `_id` comes from the row's business key, so a file
//! delivered or ingested twice stores each row once.

use std::collections::HashMap;

use futures::TryStreamExt;
use mysimbdp_ingest_sdk::{
    bson::{Bson, DateTime, Document, doc},
    read::Record,
};

/// Which export a run ingests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// `flights_YYYY_MM.csv`: one document per flight.
    Flights,
    /// `planes.csv`: one document per aircraft, keyed by tail number.
    Planes,
    /// `airlines.csv`: one document per carrier, keyed by its code.
    Airlines,
}

impl Kind {
    /// The columns a file of this kind must have (the tenant's agreement); other columns are
    /// used when present.
    pub fn required_fields(self) -> &'static [&'static str] {
        match self {
            Self::Flights => &[
                "year",
                "month",
                "day",
                "dep_time",
                "sched_dep_time",
                "dep_delay",
                "arr_delay",
                "carrier",
                "flight",
                "origin",
                "dest",
                "time_hour",
            ],
            Self::Planes => &["tailnum", "year", "manufacturer", "model", "seats"],
            Self::Airlines => &["carrier", "name"],
        }
    }
}

/// Arrival delay beyond which a flight counts as late, in minutes (the usual on-time threshold).
pub const LATE_AFTER_MIN: i32 = 15;

/// Turns records into documents.
#[derive(Debug, Clone)]
pub struct Wrangler {
    kind: Kind,
    airline_names: HashMap<String, String>,
}

impl Wrangler {
    /// A wrangler of `kind`; flights get their carrier's name from `airline_names` (code to
    /// name) when it is there.
    pub fn new(kind: Kind, airline_names: HashMap<String, String>) -> Self {
        Self { kind, airline_names }
    }

    /// The document of one record of file `file`, or why the record is rejected.
    pub fn wrangle(&self, file: &str, record: &Record) -> Result<Document, String> {
        let row = Row(record);
        let mut document = match self.kind {
            Kind::Flights => self.flight(&row)?,
            Kind::Planes => plane(&row)?,
            Kind::Airlines => airline(&row)?,
        };
        document.insert("source", doc! { "file": file, "line": record.line() as i64 });
        Ok(document)
    }

    fn flight(&self, row: &Row<'_>) -> Result<Document, String> {
        let year = row.required_int("year")?;
        let month = row.required_int("month")?;
        let day = row.required_int("day")?;
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return Err(format!("{year}-{month}-{day} is not a date"));
        }
        let carrier = row.required_text("carrier")?;
        let number = row.required_int("flight")?;
        let origin = row.required_text("origin")?;
        let dest = row.required_text("dest")?;
        let sched_dep_time = row.required_int("sched_dep_time")?;
        if !(0..2400).contains(&sched_dep_time) || sched_dep_time % 100 >= 60 {
            return Err(format!("sched_dep_time: `{sched_dep_time}` is not a time of day (hhmm)"));
        }
        // time_hour is the scheduled departure's hour in UTC; the minute is the local one's,
        // the same in every time zone the data set has.
        let hour_utc = utc_millis(row.required_text("time_hour")?)
            .ok_or_else(|| format!("time_hour: `{}` is not a UTC time", row.text("time_hour").unwrap_or_default()))?;
        let minute = row.int("minute")?.unwrap_or(sched_dep_time % 100);
        if !(0..60).contains(&minute) {
            return Err(format!("minute: `{minute}` is not a minute"));
        }
        let scheduled_departure = DateTime::from_millis(hour_utc + i64::from(minute) * 60_000);

        let dep_time = row.int("dep_time")?;
        let dep_delay = row.int("dep_delay")?;
        let arr_delay = row.int("arr_delay")?;

        let mut carrier_doc = doc! { "code": carrier };
        if let Some(name) = self.airline_names.get(carrier) {
            carrier_doc.insert("name", name.as_str());
        }
        let mut flight = doc! { "number": number };
        insert_some(&mut flight, "tailnum", row.text("tailnum"));
        let mut route = doc! { "origin": origin, "dest": dest };
        insert_some(&mut route, "distance_miles", row.int("distance")?);
        insert_some(&mut route, "air_time_min", row.int("air_time")?);
        let mut local = doc! { "date": format!("{year:04}-{month:02}-{day:02}"), "sched_dep_time": sched_dep_time };
        insert_some(&mut local, "dep_time", dep_time);
        insert_some(&mut local, "sched_arr_time", row.int("sched_arr_time")?);
        insert_some(&mut local, "arr_time", row.int("arr_time")?);
        let mut delay = Document::new();
        insert_some(&mut delay, "departure_min", dep_delay);
        insert_some(&mut delay, "arrival_min", arr_delay);
        insert_some(&mut delay, "gained_min", dep_delay.zip(arr_delay).map(|(d, a)| d - a));
        insert_some(&mut delay, "late", arr_delay.map(|a| a > LATE_AFTER_MIN));
        // A flight that never left has no departure time.
        delay.insert("cancelled", dep_time.is_none());

        Ok(doc! {
            "_id": format!("{year:04}-{month:02}-{day:02}-{carrier}{number}-{origin}-{sched_dep_time:04}"),
            "scheduled_departure": scheduled_departure,
            "local": local,
            "carrier": carrier_doc,
            "flight": flight,
            "route": route,
            "delay": delay,
        })
    }
}

fn plane(row: &Row<'_>) -> Result<Document, String> {
    let mut document = doc! { "_id": row.required_text("tailnum")? };
    insert_some(&mut document, "year", row.int("year")?);
    for field in ["type", "manufacturer", "model", "engine"] {
        insert_some(&mut document, field, row.text(field));
    }
    insert_some(&mut document, "engines", row.int("engines")?);
    insert_some(&mut document, "seats", row.int("seats")?);
    insert_some(&mut document, "speed", row.int("speed")?);
    Ok(document)
}

fn airline(row: &Row<'_>) -> Result<Document, String> {
    Ok(doc! { "_id": row.required_text("carrier")?, "name": row.required_text("name")? })
}

/// The carrier names of the tenant's `collection` (documents written by the airlines app),
/// code to name; empty when the collection does not exist yet.
pub async fn load_airline_names(
    database: &mysimbdp_ingest_sdk::mongodb::Database,
    collection: &str,
) -> Result<HashMap<String, String>, mysimbdp_ingest_sdk::mongodb::error::Error> {
    let mut names = HashMap::new();
    let mut cursor = database.collection::<Document>(collection).find(doc! {}).await?;
    while let Some(airline) = cursor.try_next().await? {
        if let (Ok(code), Ok(name)) = (airline.get_str("_id"), airline.get_str("name")) {
            names.insert(code.to_owned(), name.to_owned());
        }
    }
    Ok(names)
}

/// A record read the way the exports write values: `NA` or an empty field is a missing value.
struct Row<'a>(&'a Record);

impl Row<'_> {
    fn text(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(str::trim).filter(|v| !v.is_empty() && *v != "NA")
    }

    fn required_text(&self, field: &str) -> Result<&str, String> {
        self.text(field).ok_or_else(|| format!("{field} is missing"))
    }

    /// A whole number; `2.0` is accepted as 2, `2.5` and words are not.
    fn int(&self, field: &str) -> Result<Option<i32>, String> {
        let Some(text) = self.text(field) else { return Ok(None) };
        if let Ok(n) = text.parse::<i32>() {
            return Ok(Some(n));
        }
        match text.parse::<f64>() {
            Ok(x) if x.fract() == 0.0 && x.abs() <= f64::from(i32::MAX) => Ok(Some(x as i32)),
            _ => Err(format!("{field}: `{text}` is not a whole number")),
        }
    }

    fn required_int(&self, field: &str) -> Result<i32, String> {
        self.int(field)?.ok_or_else(|| format!("{field} is missing"))
    }
}

fn insert_some(document: &mut Document, key: &str, value: Option<impl Into<Bson>>) {
    if let Some(value) = value {
        document.insert(key, value);
    }
}

/// Milliseconds since the epoch of a UTC time. The exports write `2013-01-01T10:00:00Z`, read
/// here without a general parser because every flight row has one; other RFC 3339 forms go
/// to the general parser.
fn utc_millis(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let fixed = b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z';
    if !fixed {
        return DateTime::parse_rfc3339_str(text).ok().map(|t| t.timestamp_millis());
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        b[range].iter().try_fold(0i64, |n, &c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(((days_from_civil(year, month, day) * 24 + hour) * 60 + minute) * 60_000 + second * 1000)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use mysimbdp_ingest_sdk::read::Records;

    use super::*;

    const FLIGHTS_HEADER: &str = "year,month,day,dep_time,sched_dep_time,dep_delay,arr_time,sched_arr_time,arr_delay,carrier,flight,tailnum,origin,dest,air_time,distance,hour,minute,time_hour";

    fn wrangle(kind: Kind, header: &str, row: &str) -> Result<Document, String> {
        let text = format!("{header}\n{row}\n");
        let record = Records::csv("in.csv", std::io::Cursor::new(text)).unwrap().next().unwrap().unwrap();
        let names = HashMap::from([("UA".to_owned(), "United Air Lines Inc.".to_owned())]);
        Wrangler::new(kind, names).wrangle("in.csv", &record)
    }

    fn flight(row: &str) -> Result<Document, String> {
        wrangle(Kind::Flights, FLIGHTS_HEADER, row)
    }

    #[test]
    fn a_flight_row_becomes_a_nested_document() {
        let document =
            flight("2013,1,1,517,515,2,830,819,11,UA,1545,N14228,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z").unwrap();
        let expected = doc! {
            "_id": "2013-01-01-UA1545-EWR-0515",
            "scheduled_departure": DateTime::parse_rfc3339_str("2013-01-01T10:15:00Z").unwrap(),
            "local": { "date": "2013-01-01", "sched_dep_time": 515, "dep_time": 517, "sched_arr_time": 819, "arr_time": 830 },
            "carrier": { "code": "UA", "name": "United Air Lines Inc." },
            "flight": { "number": 1545, "tailnum": "N14228" },
            "route": { "origin": "EWR", "dest": "IAH", "distance_miles": 1400, "air_time_min": 227 },
            "delay": { "departure_min": 2, "arrival_min": 11, "gained_min": -9, "late": false, "cancelled": false },
            "source": { "file": "in.csv", "line": 2_i64 },
        };
        assert_eq!(document, expected);
    }

    #[test]
    fn a_cancelled_flight_keeps_what_is_known() {
        let document =
            flight("2013,1,2,NA,1545,NA,NA,1910,NA,AA,133,NA,JFK,LAX,NA,2475,15,45,2013-01-02T20:00:00Z").unwrap();
        assert_eq!(document.get_str("_id").unwrap(), "2013-01-02-AA133-JFK-1545");
        assert_eq!(document.get_document("delay").unwrap(), &doc! { "cancelled": true });
        assert_eq!(document.get_document("flight").unwrap(), &doc! { "number": 133 });
        assert_eq!(document.get_document("carrier").unwrap(), &doc! { "code": "AA" }, "no name known for AA");
        assert_eq!(
            document.get_document("route").unwrap(),
            &doc! { "origin": "JFK", "dest": "LAX", "distance_miles": 2475 }
        );
        assert_eq!(
            document.get_datetime("scheduled_departure").unwrap().try_to_rfc3339_string().unwrap(),
            "2013-01-02T20:45:00Z"
        );
        // Landed, but the arrival delay is unknown: not cancelled, lateness unknown.
        let document =
            flight("2013,1,1,1525,1530,-5,1934,1805,NA,MQ,4525,N719MQ,LGA,XNA,NA,1147,15,30,2013-01-01T20:00:00Z")
                .unwrap();
        assert_eq!(document.get_document("delay").unwrap(), &doc! { "departure_min": -5, "cancelled": false });
    }

    #[test]
    fn a_late_flight_is_late_and_whole_floats_are_numbers() {
        let document =
            flight("2013,1,1,800,745,15.0,1100,1030,30,UA,1,N1,EWR,ORD,120,719,7,45,2013-01-01T12:00:00Z").unwrap();
        assert_eq!(
            document.get_document("delay").unwrap(),
            &doc! { "departure_min": 15, "arrival_min": 30, "gained_min": -15, "late": true, "cancelled": false }
        );
    }

    #[test]
    fn bad_values_reject_the_row_and_say_which_field() {
        let cases = [
            (
                "2013,1,1,517,515,two,830,819,11,UA,1545,N1,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z",
                "dep_delay: `two` is not a whole number",
            ),
            (
                "2013,1,1,517,515,2.5,830,819,11,UA,1545,N1,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z",
                "dep_delay: `2.5`",
            ),
            ("2013,1,1,517,515,2,830,819,11,UA,NA,N1,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z", "flight is missing"),
            ("2013,1,1,517,515,2,830,819,11,,1545,N1,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z", "carrier is missing"),
            ("2013,13,1,517,515,2,830,819,11,UA,1545,N1,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z", "is not a date"),
            ("2013,1,1,517,575,2,830,819,11,UA,1545,N1,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z", "sched_dep_time"),
            ("2013,1,1,517,515,2,830,819,11,UA,1545,N1,EWR,IAH,227,1400,5,15,2013-02-30T10:00:00Z", "time_hour"),
            ("2013,1,1,517,515,2,830,819,11,UA,1545,N1,EWR,IAH,227,1400,5,15,yesterday", "time_hour: `yesterday`"),
        ];
        for (row, expected) in cases {
            let error = flight(row).unwrap_err();
            assert!(error.contains(expected), "{row}: {error}");
        }
    }

    #[test]
    fn utc_times_match_the_general_parser() {
        for text in ["1970-01-01T00:00:00Z", "2013-12-31T23:59:59Z", "2000-02-29T12:00:00Z", "1969-07-20T20:17:40Z"] {
            assert_eq!(utc_millis(text), Some(DateTime::parse_rfc3339_str(text).unwrap().timestamp_millis()), "{text}");
        }
        assert_eq!(utc_millis("2013-01-01T10:00:00+01:00"), Some(1_357_030_800_000), "other forms still parse");
        assert_eq!(utc_millis("2013-01-01T10:0a:00Z"), None);
    }

    #[test]
    fn planes_and_airlines_are_keyed_by_their_codes() {
        let header = "tailnum,year,type,manufacturer,model,engines,seats,speed,engine";
        let plane =
            wrangle(Kind::Planes, header, "N10156,2004,Fixed wing multi engine,EMBRAER,EMB-145XR,2,55,NA,Turbo-fan")
                .unwrap();
        assert_eq!(
            plane,
            doc! {
                "_id": "N10156", "year": 2004, "type": "Fixed wing multi engine", "manufacturer": "EMBRAER",
                "model": "EMB-145XR", "engine": "Turbo-fan", "engines": 2, "seats": 55,
                "source": { "file": "in.csv", "line": 2_i64 },
            }
        );
        let plane = wrangle(Kind::Planes, header, "N101,NA,,BOEING,737,2,many,NA,Turbo-fan").unwrap_err();
        assert_eq!(plane, "seats: `many` is not a whole number");

        let airline = wrangle(Kind::Airlines, "carrier,name", "9E,\"Endeavor Air, Inc.\"").unwrap();
        assert_eq!(
            airline,
            doc! { "_id": "9E", "name": "Endeavor Air, Inc.", "source": { "file": "in.csv", "line": 2_i64 } }
        );
        assert_eq!(wrangle(Kind::Airlines, "carrier,name", "ZZ,NA").unwrap_err(), "name is missing");
    }
}
