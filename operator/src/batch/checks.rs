//! Pure checks of a staged file against the tenant's service agreement: its name, size and the
//! day's allowance before reading it, then its content (format judged by content, structure,
//! required fields) in one pass that also computes its hash. Every refusal names the file,
//! what is wrong, the limit and what to do.

use std::collections::BTreeSet;

use globset::Glob;
use mysimbdp_api::{common::FileFormat, tenant::FileConstraints};
use sha2::{Digest, Sha256};

/// What a day's accepted files of a tenant add up to so far (UTC day).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayUsage {
    /// Files accepted today.
    pub files: u64,
    /// Bytes accepted today.
    pub bytes: u64,
}

/// Why a file was refused. The text is what the tenant reads beside the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The name does not match the agreement's pattern.
    #[error(
        "file `{file}` does not match tenant `{tenant}`'s filename pattern `{pattern}`; rename it to match and stage it again"
    )]
    NamePattern {
        /// The tenant.
        tenant: String,
        /// The file name.
        file: String,
        /// The pattern.
        pattern: String,
    },
    /// Larger than the agreement allows.
    #[error("file `{file}` is {} ({size} bytes); tenant `{tenant}` allows at most {} per file; split it into smaller files", human(*size), human(*max))]
    TooLarge {
        /// The tenant.
        tenant: String,
        /// The file name.
        file: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The day's file allowance is used up.
    #[error(
        "tenant `{tenant}` has already had {max} files accepted today (UTC), its daily limit; stage `{file}` again tomorrow"
    )]
    TooManyFiles {
        /// The tenant.
        tenant: String,
        /// The file name.
        file: String,
        /// The limit.
        max: u64,
    },
    /// The day's byte allowance would be exceeded.
    #[error("file `{file}` ({}) would bring tenant `{tenant}` to {} today (UTC), above its daily limit of {}; stage it again tomorrow", human(*size), human(*used + *size), human(*max))]
    TooManyBytes {
        /// The tenant.
        tenant: String,
        /// The file name.
        file: String,
        /// Its size.
        size: u64,
        /// Bytes accepted today before it.
        used: u64,
        /// The limit.
        max: u64,
    },
    /// Not a data file at all.
    #[error("file `{file}` is not a data file: {detail}")]
    Corrupt {
        /// The file name.
        file: String,
        /// What it looks like instead.
        detail: String,
    },
    /// A format the agreement does not accept.
    #[error("file `{file}` is {} by its content; tenant `{tenant}` accepts {}", .format.as_str(), list(.accepted))]
    FormatNotAccepted {
        /// The tenant.
        tenant: String,
        /// The file name.
        file: String,
        /// The format found.
        format: FileFormat,
        /// The accepted formats.
        accepted: Vec<String>,
    },
    /// A record that breaks the format.
    #[error("file `{file}`, line {line}: {detail}; fix that line and stage the file again")]
    Malformed {
        /// The file name.
        file: String,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        detail: String,
    },
    /// Required fields are missing.
    #[error("file `{file}` lacks the required field(s) {} (required for files matching `{rule}`){}", list(.missing), .line.map(|l| format!(" on line {l}")).unwrap_or_default())]
    MissingFields {
        /// The file name.
        file: String,
        /// The missing fields.
        missing: Vec<String>,
        /// The rule's glob.
        rule: String,
        /// For JSON lines, the first line that lacks them.
        line: Option<u64>,
    },
    /// The same content was accepted before.
    #[error("file `{file}` has the same content as `{original}`, accepted as {original_id}; it was not ingested again")]
    Duplicate {
        /// The file name.
        file: String,
        /// The earlier file's name.
        original: String,
        /// The earlier file's ledger id.
        original_id: String,
    },
    /// No app of the tenant takes the file.
    #[error(
        "no BatchIngestApp of tenant `{tenant}` selects file `{file}` ({format}); create one whose files.pattern or files.formats match it, then stage the file again"
    )]
    NoApp {
        /// The tenant.
        tenant: String,
        /// The file name.
        file: String,
        /// Its format.
        format: &'static str,
    },
    /// The entry is not a regular file; it was neither opened nor followed.
    #[error(
        "`{file}` is {kind}, not a regular file; the platform never follows links nor opens special files: stage the file itself"
    )]
    NotRegular {
        /// The entry's name.
        file: String,
        /// What it is.
        kind: &'static str,
    },
}

fn list(items: &[String]) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

/// A size for people: `73.0 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} bytes") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// The checks that need only the file's name and size, run before its content is read.
pub fn check_listing(tenant: &str, rules: &FileConstraints, file: &str, size: u64) -> Result<(), Rejection> {
    if let Some(pattern) = &rules.filename_pattern {
        // An invalid pattern is reported on the Tenant; here it simply matches nothing.
        let matches = regex::Regex::new(pattern).is_ok_and(|re| re.is_match(file));
        if !matches {
            return Err(Rejection::NamePattern { tenant: tenant.into(), file: file.into(), pattern: pattern.clone() });
        }
    }
    let max_size = rules.max_file_size.ceil_u64();
    if size > max_size {
        return Err(Rejection::TooLarge { tenant: tenant.into(), file: file.into(), size, max: max_size });
    }
    Ok(())
}

/// The day's allowance, checked last: a tenant first hears what is wrong with the file itself.
pub fn check_allowance(
    tenant: &str,
    rules: &FileConstraints,
    file: &str,
    size: u64,
    today: DayUsage,
) -> Result<(), Rejection> {
    let max_files = u64::from(rules.max_files_per_day);
    if today.files >= max_files {
        return Err(Rejection::TooManyFiles { tenant: tenant.into(), file: file.into(), max: max_files });
    }
    let max_bytes = rules.max_bytes_per_day.ceil_u64();
    if today.bytes + size > max_bytes {
        return Err(Rejection::TooManyBytes {
            tenant: tenant.into(),
            file: file.into(),
            size,
            used: today.bytes,
            max: max_bytes,
        });
    }
    Ok(())
}

/// What reading a file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Its format, by content.
    pub format: FileFormat,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Data records (CSV rows after the header, JSON objects).
    pub records: u64,
}

/// Reads a file's content once: judges its format, checks its structure and the required
/// fields of the rules that match its name, and hashes it.
pub fn inspect(tenant: &str, rules: &FileConstraints, file: &str, content: &[u8]) -> Result<Inspection, Rejection> {
    let sha256 = hex::encode(Sha256::digest(content));
    let corrupt = |detail: String| Rejection::Corrupt { file: file.into(), detail };
    if content.starts_with(&[0x1f, 0x8b]) {
        return Err(corrupt("it is gzip-compressed; stage the uncompressed file".into()));
    }
    if content.starts_with(b"PK\x03\x04") {
        return Err(corrupt("it is a zip archive; stage the data files it contains".into()));
    }
    let text = std::str::from_utf8(content).map_err(|e| {
        corrupt(format!(
            "byte {} is not UTF-8 text (binary or a different encoding); stage it as UTF-8",
            e.valid_up_to()
        ))
    })?;
    if let Some(offset) = text.find('\0') {
        return Err(corrupt(format!("byte {offset} is a NUL character: it is binary, not CSV or JSON lines")));
    }
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    let format = match first {
        None => return Err(corrupt("it is empty".into())),
        Some(line) if line.starts_with('{') => FileFormat::JsonLines,
        Some(_) => FileFormat::Csv,
    };
    if !rules.formats.contains(&format) {
        let accepted = rules.formats.iter().map(|f| f.as_str().to_owned()).collect();
        return Err(Rejection::FormatNotAccepted { tenant: tenant.into(), file: file.into(), format, accepted });
    }
    let required = required_fields(rules, file);
    let records = match format {
        FileFormat::Csv => inspect_csv(file, text, &required)?,
        FileFormat::JsonLines => inspect_json_lines(file, text, &required)?,
    };
    Ok(Inspection { format, sha256, records })
}

/// The fields a file must have, with the glob of the rule that asks for each.
fn required_fields(rules: &FileConstraints, file: &str) -> Vec<(String, String)> {
    rules
        .required_fields
        .iter()
        .filter(|r| Glob::new(&r.files).is_ok_and(|g| g.compile_matcher().is_match(file)))
        .flat_map(|r| r.fields.iter().map(|f| (f.clone(), r.files.clone())))
        .collect()
}

fn missing_rejection(file: &str, missing: &[&(String, String)], line: Option<u64>) -> Rejection {
    Rejection::MissingFields {
        file: file.into(),
        missing: missing.iter().map(|(f, _)| f.clone()).collect(),
        rule: missing.first().map(|(_, r)| r.clone()).unwrap_or_default(),
        line,
    }
}

fn inspect_csv(file: &str, text: &str, required: &[(String, String)]) -> Result<u64, Rejection> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| Rejection::Malformed { file: file.into(), line: 1, detail: e.to_string() })?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    if let Some(empty) = header.iter().position(String::is_empty) {
        let detail = format!("column {} of the header has no name", empty + 1);
        return Err(Rejection::Malformed { file: file.into(), line: 1, detail });
    }
    let mut seen = BTreeSet::new();
    if let Some(dup) = header.iter().find(|h| !seen.insert(h.as_str())) {
        return Err(Rejection::Malformed {
            file: file.into(),
            line: 1,
            detail: format!("the header names column `{dup}` twice"),
        });
    }
    let missing: Vec<_> = required.iter().filter(|(f, _)| !header.contains(f)).collect();
    if !missing.is_empty() {
        return Err(missing_rejection(file, &missing, None));
    }
    let mut record = csv::ByteRecord::new();
    let mut records = 0;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => records += 1,
            Err(e) => {
                let line = e.position().map_or(records + 2, |p| p.line());
                let detail = match e.kind() {
                    csv::ErrorKind::UnequalLengths { len, expected_len, .. } => {
                        format!("it has {len} fields; the header has {expected_len}")
                    }
                    _ => e.to_string(),
                };
                return Err(Rejection::Malformed { file: file.into(), line, detail });
            }
        }
    }
    if records == 0 {
        return Err(Rejection::Corrupt { file: file.into(), detail: "it has a header but no data rows".into() });
    }
    Ok(records)
}

fn inspect_json_lines(file: &str, text: &str, required: &[(String, String)]) -> Result<u64, Rejection> {
    let mut records = 0;
    for (index, line) in text.lines().enumerate() {
        let line_no = index as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let object: std::collections::HashMap<&str, serde::de::IgnoredAny> = match serde_json::from_str(line) {
            Ok(object) => object,
            Err(e) => {
                let detail = if line.trim_start().starts_with('{') {
                    format!("it is not valid JSON ({e})")
                } else {
                    "it is not a JSON object".to_owned()
                };
                return Err(Rejection::Malformed { file: file.into(), line: line_no, detail });
            }
        };
        let missing: Vec<_> = required.iter().filter(|(f, _)| !object.contains_key(f.as_str())).collect();
        if !missing.is_empty() {
            return Err(missing_rejection(file, &missing, Some(line_no)));
        }
        records += 1;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> FileConstraints {
        serde_yaml::from_str(yaml).expect("fixture")
    }

    fn csv_rules() -> FileConstraints {
        rules(
            "{formats: [Csv], maxFileSize: 100, maxFilesPerDay: 3, maxBytesPerDay: 250, filenamePattern: '^f_[0-9]+\\.csv$',
              requiredFields: [{files: 'f_*.csv', fields: [year, carrier]}, {files: 'p_*.csv', fields: [tailnum]}]}",
        )
    }

    #[test]
    fn listing_checks_name_the_limit_and_the_fix() {
        let r = csv_rules();
        let ok = DayUsage { files: 1, bytes: 100 };
        assert_eq!(check_listing("acme", &r, "f_1.csv", 50), Ok(()));
        assert_eq!(check_allowance("acme", &r, "f_1.csv", 50, ok), Ok(()));
        let cases = [
            (check_listing("acme", &r, "flights.csv", 50), "does not match tenant `acme`'s filename pattern"),
            (
                check_listing("acme", &r, "f_1.csv", 101),
                "is 101 bytes (101 bytes); tenant `acme` allows at most 100 bytes per file",
            ),
            (
                check_allowance("acme", &r, "f_1.csv", 50, DayUsage { files: 3, bytes: 0 }),
                "already had 3 files accepted today",
            ),
            (
                check_allowance("acme", &r, "f_1.csv", 60, DayUsage { files: 1, bytes: 200 }),
                "above its daily limit of 250 bytes",
            ),
        ];
        for (result, expected) in cases {
            let message = result.unwrap_err().to_string();
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human(73 * 1024 * 1024), "73.0 MiB");
        assert_eq!(human(512), "512 bytes");
    }

    #[test]
    fn csv_content_is_judged_counted_and_hashed() {
        let r = csv_rules();
        let found = inspect("acme", &r, "f_1.csv", b"year,carrier,x\n2013,UA,\"a,b\"\n2013,AA,c\n").unwrap();
        assert_eq!((found.format, found.records), (FileFormat::Csv, 2));
        assert_eq!(found.sha256.len(), 64);
        let again = inspect("acme", &r, "f_2.csv", b"year,carrier,x\n2013,UA,\"a,b\"\n2013,AA,c\n").unwrap();
        assert_eq!(found.sha256, again.sha256, "same content, same hash");
    }

    #[test]
    fn bad_content_is_refused_with_where_and_why() {
        let r = csv_rules();
        let cases: [(&[u8], &str); 9] = [
            (b"", "it is empty"),
            (b"\x1f\x8b\x08\x00", "gzip-compressed"),
            (b"year,carrier\n\xff\xfe,UA\n", "byte 13 is not UTF-8"),
            (b"year,carrier\n2013\0,UA\n", "NUL character"),
            (b"year,carrier\n", "header but no data rows"),
            (b"year,carrier\n2013,UA\n2013,AA,extra\n", "line 3: it has 3 fields; the header has 2"),
            (b"year,x\n2013,1\n", "lacks the required field(s) `carrier` (required for files matching `f_*.csv`)"),
            (b"year,carrier,year\n1,2,3\n", "names column `year` twice"),
            (b"{\"year\": 2013}\n", "is JsonLines by its content; tenant `acme` accepts `Csv`"),
        ];
        for (content, expected) in cases {
            let message = inspect("acme", &r, "f_1.csv", content).unwrap_err().to_string();
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
            assert!(message.contains("f_1.csv"), "{message:?} names the file");
        }
    }

    #[test]
    fn json_lines_need_objects_with_the_required_fields_on_every_line() {
        let r = rules(
            "{formats: [JsonLines], maxFileSize: 1Mi, maxFilesPerDay: 9, maxBytesPerDay: 1Gi, requiredFields: [{fields: [faa, lat]}]}",
        );
        let ok = inspect(
            "nimbus",
            &r,
            "s.jsonl",
            b"{\"faa\":\"JFK\",\"lat\":40.6}\n\n{\"faa\":\"LGA\",\"lat\":40.7,\"x\":[1]}\n",
        )
        .unwrap();
        assert_eq!((ok.format, ok.records), (FileFormat::JsonLines, 2));
        let cases: [(&[u8], &str); 3] = [
            (
                b"{\"faa\":\"JFK\",\"lat\":1}\n{\"faa\":\"LGA\"}\n",
                "lacks the required field(s) `lat` (required for files matching `*`) on line 2",
            ),
            (b"{\"faa\":\"JFK\",\"lat\":1}\n{\"faa\": \n", "line 2: it is not valid JSON"),
            (b"{\"faa\":\"JFK\",\"lat\":1}\n[1,2]\n", "line 2: it is not a JSON object"),
        ];
        for (content, expected) in cases {
            let message = inspect("nimbus", &r, "s.jsonl", content).unwrap_err().to_string();
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
        let csv = inspect("nimbus", &r, "s.jsonl", b"faa,lat\nJFK,1\n").unwrap_err().to_string();
        assert!(csv.contains("is Csv by its content"), "{csv}");
    }
}
