//! A consumed message as a stream app's wrangle hook sees it ([`IncomingMessage`]), and what
//! becomes of it: a document stored under the id the hook chose, or a dead letter with the
//! reason. Deciding is pure (no Kafka, no coredms), so every path is unit-tested here.

use std::panic::{AssertUnwindSafe, catch_unwind};

use mongodb::bson::{Document, RawDocumentBuf};
use rdkafka::message::{BorrowedMessage, Headers, Message, OwnedHeaders};
use serde_json::Value;

use crate::contract::dead_letter;

/// Largest document coredms stores (MongoDB's limit); a larger one is dead-lettered rather
/// than failing its whole batch again and again.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// What a wrangle hook answers for one message: the document's id and the document, or why the
/// message cannot be ingested (it then goes to the dead-letter topic with that reason).
pub type Wrangled = Result<(String, Document), String>;

/// A message as consumed, before its value is judged: everything a dead letter must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Envelope {
    /// An owned copy of a consumed message.
    pub fn of(message: &BorrowedMessage<'_>) -> Self {
        let headers = message
            .headers()
            .map(|headers| headers.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default();
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    /// Bytes of the value.
    pub fn value_len(&self) -> usize {
        self.value.as_ref().map_or(0, Vec::len)
    }
}

/// A message of one of the app's topics, with its value decoded as JSON. A message whose value
/// is missing, not UTF-8 or not JSON never reaches the hook: it is dead-lettered at once.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingMessage {
    envelope: Envelope,
    json: Value,
}

impl IncomingMessage {
    /// A message built by hand, e.g. to unit-test a wrangle hook; the error is the reason the
    /// runner would dead-letter it with.
    pub fn new(topic: &str, partition: i32, offset: i64, key: Option<&[u8]>, value: &[u8]) -> Result<Self, String> {
        let envelope = Envelope {
            topic: topic.to_owned(),
            partition,
            offset,
            timestamp_ms: None,
            key: key.map(<[u8]>::to_vec),
            value: Some(value.to_vec()),
            headers: Vec::new(),
        };
        decode(envelope.value.as_deref()).map(|json| Self { envelope, json })
    }

    /// The topic it was consumed from (full name).
    pub fn topic(&self) -> &str {
        &self.envelope.topic
    }

    /// Its partition.
    pub fn partition(&self) -> i32 {
        self.envelope.partition
    }

    /// Its offset in the partition.
    pub fn offset(&self) -> i64 {
        self.envelope.offset
    }

    /// Its timestamp (producer's create time or broker's log-append time), milliseconds since
    /// the epoch, when it has one.
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.envelope.timestamp_ms
    }

    /// Its key, when it has one.
    pub fn key(&self) -> Option<&[u8]> {
        self.envelope.key.as_deref()
    }

    /// Its key as text, when it has one and it is UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        self.key().and_then(|k| std::str::from_utf8(k).ok())
    }

    /// Its value, as received.
    pub fn value(&self) -> &[u8] {
        self.envelope.value.as_deref().unwrap_or_default()
    }

    /// Its value, decoded.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// The value of its last header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.envelope.headers.iter().rev().find(|(key, _)| key == name).and_then(|(_, value)| value.as_deref())
    }

    /// The id the runner suggests when the data has no business key: `<topic>/<partition>/<offset>`,
    /// the same for every delivery of this message (but a message published twice gets two ids).
    pub fn default_id(&self) -> String {
        default_id(&self.envelope.topic, self.envelope.partition, self.envelope.offset)
    }
}

/// `<topic>/<partition>/<offset>`: unique per message of a topic, stable across redeliveries.
pub fn default_id(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic}/{partition}/{offset}")
}

/// Decodes a message value: UTF-8 JSON, or why not (the dead letter's reason).
pub fn decode(value: Option<&[u8]>) -> Result<Value, String> {
    let bytes = value.ok_or("the message has no value (a tombstone); the app ingests JSON values only")?;
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        format!(
            "the value is not UTF-8 text: invalid byte 0x{:02x} at position {at}",
            bytes.get(at).copied().unwrap_or(0)
        )
    })?;
    serde_json::from_str(text).map_err(|e| format!("the value is not JSON: {e}"))
}

/// What becomes of one message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Disposition {
    /// Store this document (its `_id` set).
    Store {
        /// The encoded document.
        document: RawDocumentBuf,
    },
    /// Send the message to the dead-letter topic.
    DeadLetter {
        /// Why.
        reason: String,
    },
}

/// Judges one message: decodes it, hands it to the hook, checks and encodes the document. A
/// hook that panics refuses the message (with the panic's text) rather than killing the app on
/// every redelivery of it.
pub(crate) fn dispose<W>(envelope: Envelope, hook: &mut W) -> (Envelope, Disposition)
where
    W: FnMut(&IncomingMessage) -> Wrangled,
{
    let json = match decode(envelope.value.as_deref()) {
        Ok(json) => json,
        Err(reason) => return (envelope, Disposition::DeadLetter { reason }),
    };
    let message = IncomingMessage { envelope, json };
    let wrangled = catch_unwind(AssertUnwindSafe(|| hook(&message))).unwrap_or_else(|panic| {
        let text = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(format!("the app's wrangling failed on this message (a bug in the app): {text}"))
    });
    let disposition = match wrangled.and_then(|(id, document)| encode(id, document)) {
        Ok(document) => Disposition::Store { document },
        Err(reason) => Disposition::DeadLetter { reason },
    };
    (message.envelope, disposition)
}

/// The document with `_id` first (an `_id` the hook put in it is replaced), encoded and checked.
fn encode(id: String, document: Document) -> Result<RawDocumentBuf, String> {
    if id.is_empty() {
        return Err("the app gave the document an empty id".into());
    }
    let mut with_id = Document::new();
    with_id.insert("_id", id);
    with_id.extend(document.into_iter().filter(|(key, _)| key != "_id"));
    let raw = RawDocumentBuf::from_document(&with_id)
        .map_err(|e| format!("the app's document cannot be stored (not encodable as BSON): {e}"))?;
    if raw.as_bytes().len() > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "the app's document is {} bytes; coredms stores documents of at most {MAX_DOCUMENT_BYTES} bytes",
            raw.as_bytes().len()
        ));
    }
    Ok(raw)
}

/// The headers of a dead letter: the original message's, then the platform's (see
/// [`dead_letter`]).
pub(crate) fn dead_letter_headers(envelope: &Envelope, reason: &str, app: &str, instance: &str) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(envelope.headers.len() + 7);
    for (key, value) in &envelope.headers {
        headers = headers.insert(rdkafka::message::Header { key, value: value.as_deref() });
    }
    let (partition, offset) = (envelope.partition.to_string(), envelope.offset.to_string());
    let timestamp = envelope.timestamp_ms.map(|t| t.to_string());
    let mut ours = vec![
        (dead_letter::ERROR, reason),
        (dead_letter::SOURCE_TOPIC, envelope.topic.as_str()),
        (dead_letter::SOURCE_PARTITION, partition.as_str()),
        (dead_letter::SOURCE_OFFSET, offset.as_str()),
        (dead_letter::APP, app),
        (dead_letter::INSTANCE, instance),
    ];
    if let Some(timestamp) = &timestamp {
        ours.push((dead_letter::SOURCE_TIMESTAMP, timestamp));
    }
    for (key, value) in ours {
        headers = headers.insert(rdkafka::message::Header { key, value: Some(value) });
    }
    headers
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    fn envelope(value: Option<&[u8]>) -> Envelope {
        Envelope {
            topic: "nimbus-weather.observations".into(),
            partition: 2,
            offset: 41,
            timestamp_ms: Some(1_700_000_000_000),
            key: Some(b"EWR".to_vec()),
            value: value.map(<[u8]>::to_vec),
            headers: vec![("trace".into(), Some(b"abc".to_vec()))],
        }
    }

    fn by_station(message: &IncomingMessage) -> Wrangled {
        let station = message.json()["station"].as_str().ok_or("station is missing")?;
        Ok((station.to_owned(), doc! { "_id": "ignored", "station": station }))
    }

    fn reason(value: Option<&[u8]>, hook: &mut impl FnMut(&IncomingMessage) -> Wrangled) -> String {
        match dispose(envelope(value), hook).1 {
            Disposition::DeadLetter { reason } => reason,
            other => panic!("expected a dead letter, got {other:?}"),
        }
    }

    #[test]
    fn a_good_message_becomes_a_document_with_the_hooks_id_first() {
        let (envelope, disposition) = dispose(envelope(Some(br#"{"station":"JFK"}"#)), &mut by_station);
        assert_eq!(envelope.offset, 41, "the envelope comes back for the offsets");
        let Disposition::Store { document } = disposition else { panic!("stored expected") };
        let document = document.to_document().unwrap();
        assert_eq!(document, doc! { "_id": "JFK", "station": "JFK" });
        assert_eq!(document.keys().next().map(String::as_str), Some("_id"));
    }

    #[test]
    fn undecodable_values_are_dead_lettered_before_the_hook() {
        let mut calls = 0;
        let mut counting = |m: &IncomingMessage| {
            calls += 1;
            by_station(m)
        };
        assert!(reason(None, &mut counting).contains("no value"));
        let not_utf8 = reason(Some(b"{\"station\":\"\xff\"}"), &mut counting);
        assert_eq!(not_utf8, "the value is not UTF-8 text: invalid byte 0xff at position 12");
        let not_json = reason(Some(b"{\"station\": "), &mut counting);
        assert!(not_json.starts_with("the value is not JSON: EOF while parsing"), "{not_json}");
        assert_eq!(calls, 0);
    }

    #[test]
    fn the_hooks_refusals_and_panics_are_dead_lettered_with_the_reason() {
        assert_eq!(reason(Some(br#"{"temp":1}"#), &mut by_station), "station is missing");
        let mut panicking = |_: &IncomingMessage| -> Wrangled { panic!("index out of bounds") };
        let text = reason(Some(b"{}"), &mut panicking);
        assert!(text.contains("a bug in the app") && text.contains("index out of bounds"), "{text}");
        let mut empty = |_: &IncomingMessage| -> Wrangled { Ok((String::new(), doc! {})) };
        assert_eq!(reason(Some(b"{}"), &mut empty), "the app gave the document an empty id");
        let mut bad_key = |_: &IncomingMessage| -> Wrangled { Ok(("a".into(), doc! { "bad\0key": 1 })) };
        assert!(reason(Some(b"{}"), &mut bad_key).contains("not encodable as BSON"));
        let mut huge =
            |_: &IncomingMessage| -> Wrangled { Ok(("a".into(), doc! { "blob": "x".repeat(MAX_DOCUMENT_BYTES) })) };
        assert!(reason(Some(b"{}"), &mut huge).contains("at most 16777216 bytes"));
    }

    #[test]
    fn a_message_offers_its_parts_and_a_stable_default_id() {
        let message = IncomingMessage::new("t.obs", 1, 7, Some(b"LGA"), br#"{"a":1}"#).unwrap();
        assert_eq!(message.default_id(), "t.obs/1/7");
        assert_eq!((message.key_str(), message.json()["a"].as_i64()), (Some("LGA"), Some(1)));
        assert_eq!(message.value(), br#"{"a":1}"#);
        assert!(IncomingMessage::new("t.obs", 1, 8, None, b"nope").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn dead_letter_headers_keep_the_originals_and_add_the_source() {
        let headers = dead_letter_headers(&envelope(Some(b"x")), "not JSON", "observations", "observations-0");
        let pairs: Vec<(String, String)> = headers
            .iter()
            .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
            .collect();
        let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(pairs[0], ("trace".to_owned(), "abc".to_owned()), "original headers first");
        assert_eq!(get(dead_letter::ERROR), Some("not JSON"));
        assert_eq!(get(dead_letter::SOURCE_TOPIC), Some("nimbus-weather.observations"));
        assert_eq!(get(dead_letter::SOURCE_PARTITION), Some("2"));
        assert_eq!(get(dead_letter::SOURCE_OFFSET), Some("41"));
        assert_eq!(get(dead_letter::SOURCE_TIMESTAMP), Some("1700000000000"));
        assert_eq!(get(dead_letter::INSTANCE), Some("observations-0"));
    }
}
