//! Streaming readers of the input files: CSV with a header row and JSON lines. Both yield one
//! [`Record`] at a time with its 1-based line number, so memory stays flat however large the file.
//!
//! Two levels of failure: a record that cannot be parsed (a CSV row with the wrong number of
//! fields, a line that is not a JSON object, bytes that are not UTF-8) is a [`ReadError::Malformed`]
//! item and reading goes on; a file that cannot be opened or read at all is a [`FileError`] or a
//! [`ReadError::Io`], after which the file yields nothing more.

use std::{
    collections::{HashMap, VecDeque},
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
};

use serde_json::{Map, Value};

use crate::contract::{Format, InputFile};

/// A file cannot be read at all; retrying will not help.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The URL is not a `file://`, `http://` or `https://` URL.
    #[error("{file}: cannot read {url}: only file://, http:// and https:// URLs are supported by this SDK")]
    UnsupportedUrl {
        /// The file's name.
        file: String,
        /// Its URL.
        url: String,
    },
    /// Opening failed.
    #[error("{file}: cannot open {}: {source}", path.display())]
    Open {
        /// The file's name.
        file: String,
        /// Where it was looked for.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Fetching the file over HTTP failed. `retryable` when the server could not be reached
    /// or failed (a later run may succeed); not when it refused the request (an expired or
    /// wrong link, a file that is gone).
    #[error("{file}: cannot fetch {url}: {reason}")]
    Fetch {
        /// The file's name.
        file: String,
        /// Its URL without the query (a pre-signed URL's query is a credential).
        url: String,
        /// Why.
        reason: String,
        /// Whether trying again later may succeed.
        retryable: bool,
    },
    /// The CSV header row is missing or unusable.
    #[error("{file}: bad CSV header (line 1): {reason}")]
    Header {
        /// The file's name.
        file: String,
        /// What is wrong.
        reason: String,
    },
}

/// An item of a file that could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    /// One record is malformed; the next ones are still read.
    #[error("{file} line {line}: {reason}")]
    Malformed {
        /// The file's name.
        file: String,
        /// 1-based line where the record starts.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading the file failed; nothing more is read from it.
    #[error("{file}: read failed near line {line}: {source}; check the file is complete and readable")]
    Io {
        /// The file's name.
        file: String,
        /// The line reading stopped at.
        line: u64,
        /// Why.
        source: Arc<io::Error>,
    },
}

impl ReadError {
    /// Whether the whole file failed (rather than one record).
    pub fn is_file_level(&self) -> bool {
        matches!(self, Self::Io { .. })
    }
}

/// The column names of a CSV file.
#[derive(Debug)]
pub struct Header {
    names: Vec<String>,
    positions: HashMap<String, usize>,
}

impl Header {
    fn new(names: Vec<String>) -> Result<Self, String> {
        if names.is_empty() || names.iter().all(|n| n.is_empty()) {
            return Err("the file has no header row".into());
        }
        let mut positions = HashMap::with_capacity(names.len());
        for (position, name) in names.iter().enumerate() {
            if positions.insert(name.clone(), position).is_some() {
                return Err(format!("column `{name}` appears twice"));
            }
        }
        Ok(Self { names, positions })
    }

    /// The names, in file order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The 0-based position of a column.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.positions.get(name).copied()
    }
}

/// One record of an input file.
#[derive(Debug, Clone)]
pub struct Record {
    line: u64,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    Csv { header: Arc<Header>, row: csv::StringRecord },
    Json(Map<String, Value>),
}

impl Record {
    /// 1-based line where the record starts (CSV: the header is line 1).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// A field's text: CSV, the column's value exactly as written (`""` and `NA` included, the
    /// app decides what is missing); JSON lines, the member's value when it is a string.
    /// `None` when there is no such column or member.
    pub fn get(&self, field: &str) -> Option<&str> {
        match &self.body {
            Body::Csv { header, row } => header.position(field).and_then(|i| row.get(i)),
            Body::Json(object) => object.get(field).and_then(Value::as_str),
        }
    }

    /// The JSON object of a JSON-lines record; `None` for CSV.
    pub fn json(&self) -> Option<&Map<String, Value>> {
        match &self.body {
            Body::Json(object) => Some(object),
            Body::Csv { .. } => None,
        }
    }

    /// The header of a CSV record; `None` for JSON lines.
    pub fn header(&self) -> Option<&Header> {
        match &self.body {
            Body::Csv { header, .. } => Some(header),
            Body::Json(_) => None,
        }
    }
}

type Source = Box<dyn Read + Send>;

/// The records of one file, read as they are consumed.
pub struct Records {
    file: String,
    inner: Inner,
    done: bool,
}

enum Inner {
    Csv { reader: csv::Reader<Source>, header: Arc<Header>, breaks: Arc<Mutex<LineBreaks>> },
    Json { reader: BufReader<Source>, line: u64, bytes: u64, buffer: Vec<u8> },
}

impl Records {
    /// Opens an input file by its URL and format: a local file (`file://`, the local runtime and
    /// a mounted store), or a link that needs no credentials (`http(s)://`, e.g. a pre-signed
    /// URL of an object store), read as it streams in.
    pub fn open(input: &InputFile) -> Result<Self, FileError> {
        let reader: Box<dyn Read + Send> = if input.url.starts_with("http://") || input.url.starts_with("https://") {
            Box::new(fetch(input)?)
        } else {
            let path = local_path(input)?;
            Box::new(File::open(&path).map_err(|source| FileError::Open { file: input.name.clone(), path, source })?)
        };
        match input.format {
            Format::Csv => Self::csv(&input.name, reader),
            Format::JsonLines => Ok(Self::json_lines(&input.name, reader)),
        }
    }

    /// CSV records from `reader`; the first row is the header. `name` names the file in errors.
    pub fn csv(name: &str, reader: impl Read + Send + 'static) -> Result<Self, FileError> {
        let breaks = Arc::new(Mutex::new(LineBreaks::default()));
        let source = LineBreaksOf { inner: reader, offset: 0, breaks: Arc::clone(&breaks) };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            // The field count is checked here, so that a short row is a malformed record whose
            // line is known, like any other.
            .flexible(true)
            .buffer_capacity(256 * 1024)
            .from_reader(Box::new(source) as Source);
        let header_error = |reason: String| FileError::Header { file: name.to_owned(), reason };
        let names = reader.headers().map_err(|e| header_error(e.to_string()))?.iter().map(str::to_owned).collect();
        let header = Arc::new(Header::new(names).map_err(header_error)?);
        Ok(Self { file: name.to_owned(), inner: Inner::Csv { reader, header, breaks }, done: false })
    }

    /// JSON-lines records from `reader`: one object per line; blank lines are skipped.
    pub fn json_lines(name: &str, reader: impl Read + Send + 'static) -> Self {
        let reader = BufReader::with_capacity(256 * 1024, Box::new(reader) as Source);
        Self {
            file: name.to_owned(),
            inner: Inner::Json { reader, line: 0, bytes: 0, buffer: Vec::new() },
            done: false,
        }
    }

    /// The CSV header; `None` for JSON lines.
    pub fn header(&self) -> Option<&Header> {
        match &self.inner {
            Inner::Csv { header, .. } => Some(header),
            Inner::Json { .. } => None,
        }
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        match &self.inner {
            Inner::Csv { reader, .. } => reader.position().byte(),
            Inner::Json { bytes, .. } => *bytes,
        }
    }

    fn next_csv(
        file: &str,
        reader: &mut csv::Reader<Source>,
        header: &Arc<Header>,
        breaks: &Mutex<LineBreaks>,
    ) -> Option<Result<Record, ReadError>> {
        // Reading bytes and checking UTF-8 once per record (no copy) is the csv crate's fast
        // path; a record that is not UTF-8 is then one malformed record, not a failed file.
        let mut raw = csv::ByteRecord::with_capacity(128, header.names.len());
        match reader.read_byte_record(&mut raw) {
            Ok(false) => None,
            Ok(true) => {
                let line = record_line(reader, &raw, breaks);
                let malformed = |reason| Err(ReadError::Malformed { file: file.to_owned(), line, reason });
                if raw.len() != header.names.len() {
                    return Some(malformed(format!(
                        "{} fields where the header has {}",
                        raw.len(),
                        header.names.len()
                    )));
                }
                Some(match csv::StringRecord::from_byte_record(raw) {
                    Ok(row) => Ok(Record { line, body: Body::Csv { header: Arc::clone(header), row } }),
                    Err(e) => malformed(format!("field {} is not valid UTF-8", e.utf8_error().field() + 1)),
                })
            }
            // With flexible records and byte records, what is left is reading itself failing.
            Err(error) => {
                let line = reader.position().line();
                Some(Err(ReadError::Io {
                    file: file.to_owned(),
                    line,
                    source: Arc::new(io::Error::other(error.to_string())),
                }))
            }
        }
    }
}

/// The 1-based line a record just read starts on.
///
/// The csv crate's record positions include the blank lines it skipped before the record and, with
/// CRLF line ends, lag one line, so the line is worked out from the end: the reader has consumed
/// the record up to its terminator (a CR or an LF, or nothing at the end of the file); the line
/// breaks before that last byte give the record's last line, and the line breaks inside its
/// quoted fields how many lines it spans.
fn record_line(reader: &csv::Reader<Source>, raw: &csv::ByteRecord, breaks: &Mutex<LineBreaks>) -> u64 {
    let end = reader.position().byte();
    let last_line = 1 + breaks.lock().unwrap_or_else(PoisonError::into_inner).before(end.saturating_sub(1));
    let inside = raw.as_slice().iter().filter(|&&b| b == b'\n').count() as u64;
    last_line.saturating_sub(inside)
}

/// Offsets of the line breaks (LF) read from a source and not yet passed by the reader.
#[derive(Default)]
struct LineBreaks {
    pending: VecDeque<u64>,
    passed: u64,
}

impl LineBreaks {
    /// The number of line breaks before `offset`; offsets asked for never decrease.
    fn before(&mut self, offset: u64) -> u64 {
        while self.pending.front().is_some_and(|&at| at < offset) {
            self.pending.pop_front();
            self.passed += 1;
        }
        self.passed
    }
}

/// A source that notes where its line breaks are as it is read.
struct LineBreaksOf<R> {
    inner: R,
    offset: u64,
    breaks: Arc<Mutex<LineBreaks>>,
}

impl<R: Read> Read for LineBreaksOf<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut breaks = self.breaks.lock().unwrap_or_else(PoisonError::into_inner);
        let offset = self.offset;
        breaks
            .pending
            .extend(buf[..n].iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| offset + i as u64));
        self.offset += n as u64;
        Ok(n)
    }
}

impl Iterator for Records {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = match &mut self.inner {
            Inner::Csv { reader, header, breaks } => Self::next_csv(&self.file, reader, header, breaks),
            Inner::Json { reader, line, bytes, buffer } => loop {
                buffer.clear();
                match reader.read_until(b'\n', buffer) {
                    Ok(0) => break None,
                    Ok(n) => {
                        *line += 1;
                        *bytes += n as u64;
                        let text = buffer.trim_ascii();
                        if text.is_empty() {
                            continue;
                        }
                        break Some(serde_json::from_slice::<Map<String, Value>>(text).map_or_else(
                            |e| {
                                Err(ReadError::Malformed {
                                    file: self.file.clone(),
                                    line: *line,
                                    reason: format!("not a JSON object: {e}"),
                                })
                            },
                            |object| Ok(Record { line: *line, body: Body::Json(object) }),
                        ));
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        break Some(Err(ReadError::Io {
                            file: self.file.clone(),
                            line: *line + 1,
                            source: Arc::new(e),
                        }));
                    }
                }
            },
        };
        if matches!(&item, None | Some(Err(ReadError::Io { .. }))) {
            self.done = true;
        }
        item
    }
}

/// How long connecting and each read of a fetched file may take.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The body of an `http(s)://` input, as a stream.
fn fetch(input: &InputFile) -> Result<impl Read + Send + 'static, FileError> {
    let shown = input.url.split('?').next().unwrap_or_default().to_owned();
    let failed = |reason: String, retryable: bool| FileError::Fetch {
        file: input.name.clone(),
        url: shown.clone(),
        reason,
        retryable,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(FETCH_TIMEOUT))
        .timeout_recv_response(Some(FETCH_TIMEOUT))
        .timeout_recv_body(None)
        .http_status_as_error(false)
        // OpenSSL, as the rest of the platform, with the system's root certificates.
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::NativeTls)
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .build()
        .into();
    let response = agent.get(&input.url).call().map_err(|e| failed(e.to_string(), true))?;
    let status = response.status();
    if !status.is_success() {
        // 5xx: the server failed and may not next time; 4xx: the link itself is refused.
        return Err(failed(format!("the server answered {status}"), status.is_server_error()));
    }
    Ok(response.into_body().into_reader())
}

/// The local path of a `file://` URL. The operator writes paths as they are; a percent-encoded
/// URL (as other producers write) is decoded when the path as written does not exist.
fn local_path(input: &InputFile) -> Result<PathBuf, FileError> {
    let unsupported = || FileError::UnsupportedUrl { file: input.name.clone(), url: input.url.clone() };
    let raw = input.url.strip_prefix("file://").ok_or_else(unsupported)?;
    // file://localhost/path is the same as file:///path.
    let raw = raw.strip_prefix("localhost").unwrap_or(raw);
    if !raw.starts_with('/') {
        return Err(unsupported());
    }
    let path = PathBuf::from(raw);
    if !path.exists()
        && raw.contains('%')
        && let Some(decoded) = percent_decode(raw)
    {
        return Ok(PathBuf::from(decoded));
    }
    Ok(path)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &'static str) -> Records {
        Records::csv("t.csv", text.as_bytes()).unwrap()
    }

    fn lines(records: Records) -> Vec<Result<(u64, Vec<String>), String>> {
        records
            .map(|item| {
                item.map(|r| {
                    let names = r.header().map(|h| h.names().to_vec()).unwrap_or_default();
                    (r.line(), names.iter().map(|n| r.get(n).unwrap_or("-").to_owned()).collect())
                })
                .map_err(|e| e.to_string())
            })
            .collect()
    }

    #[test]
    fn csv_fields_by_header_name_with_line_numbers() {
        let records = csv("a,b,c\n1,NA,x\n\n2,,\"quoted, with comma\"\n3,\"multi\nline\",\"say \"\"hi\"\"\"\n4,5,6");
        assert_eq!(records.header().unwrap().names(), ["a", "b", "c"]);
        let got = lines(records);
        assert_eq!(
            got,
            vec![
                Ok((2, vec!["1".into(), "NA".into(), "x".into()])),
                // The blank line 3 is skipped and counted.
                Ok((4, vec!["2".into(), "".into(), "quoted, with comma".into()])),
                Ok((5, vec!["3".into(), "multi\nline".into(), "say \"hi\"".into()])),
                Ok((7, vec!["4".into(), "5".into(), "6".into()])),
            ]
        );
    }

    #[test]
    fn line_numbers_hold_with_crlf_blank_lines_and_no_final_newline() {
        let text = "\r\na,b\r\n1,2\r\n\r\n\r\n3,\"x\r\ny\"\r\n4,\"\n\"\r\n5,6";
        let got: Vec<u64> = Records::csv("t.csv", text.as_bytes()).unwrap().map(|r| r.unwrap().line()).collect();
        assert_eq!(got, [3, 6, 8, 10]);
        let text = "a,b\n\n\n1,2\n\n";
        let got: Vec<u64> = Records::csv("t.csv", text.as_bytes()).unwrap().map(|r| r.unwrap().line()).collect();
        assert_eq!(got, [4]);
    }

    #[test]
    fn a_bad_csv_row_is_one_error_and_reading_goes_on() {
        let mut records = Records::csv("t.csv", &b"a,b\n1,2\n1,2,3\n\xff,4\n5\n6,7\n"[..]).unwrap();
        assert_eq!(records.next().unwrap().unwrap().get("b"), Some("2"));
        let error = records.next().unwrap().unwrap_err();
        assert!(!error.is_file_level());
        assert_eq!(error.to_string(), "t.csv line 3: 3 fields where the header has 2");
        assert_eq!(records.next().unwrap().unwrap_err().to_string(), "t.csv line 4: field 1 is not valid UTF-8");
        assert!(records.next().unwrap().unwrap_err().to_string().starts_with("t.csv line 5: 1 fields"));
        let last = records.next().unwrap().unwrap();
        assert_eq!((last.line(), last.get("a"), last.get("nope")), (6, Some("6"), None));
        assert!(records.next().is_none());
        assert_eq!(records.bytes_read(), 24);
    }

    #[test]
    fn csv_headers_are_checked() {
        for (text, expected) in [("", "no header row"), ("a,b,a\n1,2,3\n", "column `a` appears twice")] {
            match Records::csv("t.csv", text.as_bytes()) {
                Err(e @ FileError::Header { .. }) => assert!(e.to_string().contains(expected), "{e}"),
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("accepted a bad header {text:?}"),
            }
        }
        // A header alone is a file with no records, and a byte-order mark is not part of a name.
        let mut records = csv("\u{feff}a,b\r\n");
        assert_eq!(records.header().unwrap().names(), ["a", "b"]);
        assert!(records.next().is_none());
        let mut records = csv("\u{feff}x,y\r\n1,2\r\n");
        assert_eq!(records.next().unwrap().unwrap().get("x"), Some("1"));
    }

    #[test]
    fn json_lines_are_objects_with_line_numbers() {
        let text = "{\"faa\":\"04G\",\"alt\":1044}\n\n  \r\n[1,2]\n{\"faa\": \"06A\", \"lat\": 32.46}\r\n{broken\n{\"faa\":\"X\"}";
        let mut records = Records::json_lines("s.jsonl", text.as_bytes());
        let first = records.next().unwrap().unwrap();
        assert_eq!((first.line(), first.get("faa"), first.get("alt")), (1, Some("04G"), None));
        assert_eq!(first.json().unwrap()["alt"], 1044);
        let error = records.next().unwrap().unwrap_err();
        assert!(error.to_string().starts_with("s.jsonl line 4: not a JSON object"), "{error}");
        let third = records.next().unwrap().unwrap();
        assert_eq!((third.line(), third.json().unwrap()["lat"].as_f64()), (5, Some(32.46)));
        assert!(records.next().unwrap().unwrap_err().to_string().starts_with("s.jsonl line 6:"));
        assert_eq!(records.next().unwrap().unwrap().line(), 7);
        assert!(records.next().is_none());
        assert_eq!(records.bytes_read(), text.len() as u64);
    }

    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk gone"))
        }
    }

    #[test]
    fn an_unreadable_file_is_a_file_level_error() {
        let mut records = Records::json_lines("s.jsonl", Failing);
        let error = records.next().unwrap().unwrap_err();
        assert!(error.is_file_level());
        assert!(error.to_string().contains("disk gone"), "{error}");
        assert!(records.next().is_none(), "nothing more after a failed read");

        let missing = InputFile {
            url: "file:///nonexistent/dir/a.csv".into(),
            name: "a.csv".into(),
            format: Format::Csv,
            bytes: 1,
            sha256: String::new(),
        };
        let error = Records::open(&missing).err().unwrap();
        assert!(error.to_string().starts_with("a.csv: cannot open /nonexistent/dir/a.csv"), "{error}");
        let s3 = InputFile { url: "s3://bucket/a.csv".into(), ..missing };
        assert!(matches!(Records::open(&s3), Err(FileError::UnsupportedUrl { .. })));
    }

    /// Serves one HTTP response per connection on loopback, `answers` in turn; the URL.
    fn serve(answers: Vec<(&'static str, &'static str)>) -> String {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url =
            format!("http://{}/bucket/t/processing/id/a.csv?X-Amz-Signature=secret", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for (status, body) in answers {
                let Ok((mut stream, _)) = listener.accept() else { return };
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        url
    }

    #[test]
    fn links_are_read_as_they_stream_and_failures_say_whether_to_retry() {
        let url =
            serve(vec![("200 OK", "year,month\n2013,1\n2013,2\n"), ("403 Forbidden", "expired"), ("503 Busy", "")]);
        let input = InputFile { url, name: "a.csv".into(), format: Format::Csv, bytes: 0, sha256: String::new() };
        let rows: Vec<_> =
            Records::open(&input).unwrap().map(|r| r.unwrap().get("month").unwrap().to_owned()).collect();
        assert_eq!(rows, ["1", "2"]);
        let refused = Records::open(&input).err().unwrap();
        assert!(matches!(refused, FileError::Fetch { retryable: false, .. }), "{refused}");
        assert!(!refused.to_string().contains("secret"), "the signature is not shown: {refused}");
        assert!(matches!(Records::open(&input), Err(FileError::Fetch { retryable: true, .. })));
        let closed = InputFile { url: "http://127.0.0.1:1/a.csv".into(), ..input };
        assert!(matches!(Records::open(&closed), Err(FileError::Fetch { retryable: true, .. })));
    }

    #[test]
    fn percent_encoded_paths_decode() {
        assert_eq!(percent_decode("/a%20b/c%25.csv").as_deref(), Some("/a b/c%.csv"));
        assert_eq!(percent_decode("/a%2"), None);
    }
}
