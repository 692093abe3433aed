//! The CSV format of partner files: UTF-8 with an optional BOM, a header row, commas, RFC 4180
//! quoting (a quoted field may hold commas, quotes written `""`, and line breaks), LF or CRLF.
//!
//! The parser is push-based and keeps its memory bounded: bytes go in as they arrive from S3,
//! records come out with their line number, their raw text (for the reject report) and the
//! byte offset just past them (for checkpoints). A record that is malformed is reported and
//! parsing goes on with the next line, so one bad line never costs the valid ones after it.

use std::collections::VecDeque;

/// A record (or a line that cannot become one) longer than this is rejected. A quote that is
/// never closed would otherwise swallow the rest of the file.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// How much of an over-long line the reject report keeps.
const KEPT_OF_LONG_LINE: usize = 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One record of the file, or the reason a line is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The physical line the record starts on (1 = the header).
    pub line: u64,
    /// The record's text as it was in the file, without its final line break.
    pub raw: String,
    /// The fields, or why the record cannot be split into fields.
    pub fields: Result<Vec<String>, String>,
    /// The line after the record, and the byte offset where it starts: where to resume.
    pub next_line: u64,
    pub next_offset: u64,
}

#[derive(Debug)]
struct PhysicalLine {
    number: u64,
    /// Without the line break; a CR before the LF is kept here and dropped at the record's end.
    bytes: Vec<u8>,
    /// Longer than [`MAX_RECORD_BYTES`]: its bytes are cut and it is rejected on its own.
    too_long: bool,
    end_offset: u64,
}

#[derive(Debug)]
pub struct Parser {
    lines: VecDeque<PhysicalLine>,
    /// The first bytes of the file, until we know whether they start with a BOM.
    head: Vec<u8>,
    partial: Vec<u8>,
    partial_too_long: bool,
    next_line_number: u64,
    offset: u64,
    strip_bom: bool,
    finished: bool,
}

impl Parser {
    /// A parser for a file read from `offset`, where the line at that offset is `line`.
    pub fn new(line: u64, offset: u64) -> Self {
        Self {
            lines: VecDeque::new(),
            head: Vec::new(),
            partial: Vec::new(),
            partial_too_long: false,
            next_line_number: line,
            offset,
            strip_bom: offset == 0,
            finished: false,
        }
    }

    /// Feeds the next bytes of the file.
    pub fn push(&mut self, chunk: &[u8]) {
        if !self.strip_bom {
            self.push_lines(chunk);
            return;
        }
        // The BOM may straddle chunks: hold the first bytes until there are enough to tell.
        self.head.extend_from_slice(chunk);
        if self.head.len() >= BOM.len() {
            self.release_head();
        }
    }

    fn release_head(&mut self) {
        self.strip_bom = false;
        let head = std::mem::take(&mut self.head);
        let body = head.strip_prefix(BOM).unwrap_or(&head);
        self.offset += (head.len() - body.len()) as u64;
        self.push_lines(body);
    }

    fn push_lines(&mut self, mut chunk: &[u8]) {
        while let Some(newline) = chunk.iter().position(|&byte| byte == b'\n') {
            self.append_partial(&chunk[..newline]);
            self.offset += newline as u64 + 1;
            self.end_line();
            chunk = &chunk[newline + 1..];
        }
        self.append_partial(chunk);
        self.offset += chunk.len() as u64;
    }

    fn append_partial(&mut self, bytes: &[u8]) {
        if self.partial_too_long {
            return;
        }
        self.partial.extend_from_slice(bytes);
        if self.partial.len() > MAX_RECORD_BYTES {
            self.partial.truncate(KEPT_OF_LONG_LINE);
            self.partial_too_long = true;
        }
    }

    fn end_line(&mut self) {
        let bytes = std::mem::take(&mut self.partial);
        let too_long = std::mem::replace(&mut self.partial_too_long, false);
        self.lines.push_back(PhysicalLine {
            number: self.next_line_number,
            bytes,
            too_long,
            end_offset: self.offset,
        });
        self.next_line_number += 1;
    }

    /// The end of the file: a last line without a line break still counts.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.strip_bom {
            self.release_head();
        }
        if !self.partial.is_empty() || self.partial_too_long {
            self.end_line();
        }
    }

    /// The next complete record, if the bytes pushed so far hold one. Blank lines are skipped.
    pub fn next_record(&mut self) -> Option<Record> {
        loop {
            let first = self.lines.front()?;
            if first.too_long {
                let line = self.lines.pop_front()?;
                return Some(reject(
                    &line,
                    &line,
                    format!("the line is longer than {MAX_RECORD_BYTES} bytes"),
                ));
            }
            if first.bytes.is_empty() || first.bytes == b"\r" {
                self.lines.pop_front();
                continue;
            }
            return self.assemble();
        }
    }

    /// Joins physical lines while a quoted field is open (only a quoted field may span lines).
    fn assemble(&mut self) -> Option<Record> {
        let mut quoting = Quoting::FieldStart;
        let mut size = 0usize;
        let mut complete_at = None;
        for (index, line) in self.lines.iter().enumerate() {
            if line.too_long {
                break;
            }
            if index > 0 {
                quoting = quoting.next(b'\n');
            }
            quoting = line.bytes.iter().fold(quoting, |state, &byte| state.next(byte));
            size += line.bytes.len() + 1;
            if size > MAX_RECORD_BYTES {
                break;
            }
            if quoting != Quoting::Quoted {
                complete_at = Some(index);
                break;
            }
        }
        let Some(last) = complete_at else {
            let cannot_grow = self.finished
                || size > MAX_RECORD_BYTES
                || self.lines.iter().any(|line| line.too_long);
            if !cannot_grow {
                return None;
            }
            // The quote opened on the first line never closes: that line alone is bad, and the
            // lines after it are read again as records of their own.
            let line = self.lines.pop_front()?;
            return Some(reject(&line, &line, "a quoted field is never closed".into()));
        };
        let lines: Vec<PhysicalLine> = self.lines.drain(..=last).collect();
        let (first, end) = (&lines[0], &lines[lines.len() - 1]);
        let mut bytes = Vec::with_capacity(size);
        for (index, line) in lines.iter().enumerate() {
            if index > 0 {
                bytes.push(b'\n');
            }
            bytes.extend_from_slice(&line.bytes);
        }
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let (raw, fields) = match String::from_utf8(bytes) {
            Ok(text) => {
                let fields = split_fields(&text);
                (text, fields)
            }
            Err(error) => (
                String::from_utf8_lossy(error.as_bytes()).into_owned(),
                Err("the line is not valid UTF-8".to_owned()),
            ),
        };
        Some(Record {
            line: first.number,
            raw,
            fields,
            next_line: end.number + 1,
            next_offset: end.end_offset,
        })
    }
}

/// Where a record's scan stands, by RFC 4180: a quote opens a quoted field only at the start
/// of a field. A quote inside an unquoted field is data that makes the line malformed (its
/// own error, from [`split_fields`]), never the start of a field that runs on into the next
/// lines: a stray quote would otherwise swallow every line after it up to the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: its end, or the first of `""`.
    QuoteInQuoted,
}

impl Quoting {
    fn next(self, byte: u8) -> Self {
        match (self, byte) {
            (Self::FieldStart, b'"') => Self::Quoted,
            (Self::FieldStart | Self::Unquoted | Self::QuoteInQuoted, b',') => Self::FieldStart,
            (Self::Quoted, b'"') => Self::QuoteInQuoted,
            (Self::Quoted, _) | (Self::QuoteInQuoted, b'"') => Self::Quoted,
            // After a closing quote anything but a comma is malformed; the line ends the record.
            (Self::FieldStart | Self::Unquoted | Self::QuoteInQuoted, _) => Self::Unquoted,
        }
    }
}

fn reject(first: &PhysicalLine, end: &PhysicalLine, reason: String) -> Record {
    let mut bytes = first.bytes.as_slice();
    if bytes.last() == Some(&b'\r') {
        bytes = &bytes[..bytes.len() - 1];
    }
    Record {
        line: first.number,
        raw: String::from_utf8_lossy(bytes).into_owned(),
        fields: Err(reason),
        next_line: end.number + 1,
        next_offset: end.end_offset,
    }
}

/// Splits one record into fields (RFC 4180).
pub fn split_fields(record: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::with_capacity(12);
    let mut rest = record;
    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut remaining = quoted;
            loop {
                let Some(quote) = remaining.find('"') else {
                    return Err("a quoted field is never closed".into());
                };
                value.push_str(&remaining[..quote]);
                remaining = &remaining[quote + 1..];
                if let Some(after_escape) = remaining.strip_prefix('"') {
                    value.push('"');
                    remaining = after_escape;
                    continue;
                }
                break;
            }
            fields.push(value);
            if remaining.is_empty() {
                return Ok(fields);
            }
            let Some(next) = remaining.strip_prefix(',') else {
                return Err(format!(
                    "field {} has characters after its closing quote",
                    fields.len()
                ));
            };
            rest = next;
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let value = &rest[..end];
            if value.contains('"') {
                return Err(format!(
                    "field {} contains a quote but is not quoted; write it as \"…\" with \"\" for each quote",
                    fields.len() + 1
                ));
            }
            fields.push(value.to_owned());
            if end == rest.len() {
                return Ok(fields);
            }
            rest = &rest[end + 1..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_chunks(data: &[u8], chunk: usize) -> Vec<Record> {
        let mut parser = Parser::new(1, 0);
        let mut records = Vec::new();
        for piece in data.chunks(chunk.max(1)) {
            parser.push(piece);
            while let Some(record) = parser.next_record() {
                records.push(record);
            }
        }
        parser.finish();
        while let Some(record) = parser.next_record() {
            records.push(record);
        }
        records
    }

    fn fields(record: &Record) -> Vec<&str> {
        record.fields.as_ref().unwrap().iter().map(String::as_str).collect()
    }

    #[test]
    fn bom_crlf_quotes_and_newlines_in_fields() {
        let data =
            "\u{feff}a,b,c\r\n1,\"x, y\",\"say \"\"hi\"\"\"\r\n2,\"two\r\nlines\",z\r\n\r\n3,,last";
        for chunk in [1, 2, 3, 7, 1000] {
            let records = parse_in_chunks(data.as_bytes(), chunk);
            assert_eq!(records.len(), 4, "chunk {chunk}: {records:?}");
            assert_eq!(fields(&records[0]), ["a", "b", "c"], "chunk {chunk}");
            assert_eq!(fields(&records[1]), ["1", "x, y", "say \"hi\""]);
            assert_eq!(fields(&records[2]), ["2", "two\r\nlines", "z"]);
            assert_eq!(records[2].line, 3);
            assert_eq!(records[2].raw, "2,\"two\r\nlines\",z");
            assert_eq!(fields(&records[3]), ["3", "", "last"]);
            assert_eq!(records[3].line, 6);
            assert_eq!(records[3].next_offset, data.len() as u64);
        }
    }

    #[test]
    fn offsets_let_a_parser_resume_mid_file() {
        let data = "h1,h2\nA,1\n\"B\nB\",2\nC,3\n";
        let all = parse_in_chunks(data.as_bytes(), 4);
        let resume_after = &all[1];
        let mut parser = Parser::new(resume_after.next_line, resume_after.next_offset);
        parser.push(&data.as_bytes()[resume_after.next_offset as usize..]);
        parser.finish();
        let mut rest = Vec::new();
        while let Some(record) = parser.next_record() {
            rest.push(record);
        }
        assert_eq!(rest, all[2..].to_vec());
        assert_eq!(rest[0].line, 3);
        assert_eq!(rest[1].line, 5);
    }

    #[test]
    fn an_unclosed_quote_costs_only_its_own_line() {
        let data = "h\n\"broken,1\nok,2\nok,3\n";
        let records = parse_in_chunks(data.as_bytes(), 5);
        assert_eq!(records.len(), 4);
        assert_eq!(records[1].fields, Err("a quoted field is never closed".into()));
        assert_eq!(records[1].raw, "\"broken,1");
        assert_eq!(fields(&records[2]), ["ok", "2"]);
        assert_eq!(fields(&records[3]), ["ok", "3"]);
    }

    #[test]
    fn a_stray_quote_in_an_unquoted_field_costs_only_its_own_line() {
        let data = "h,a,b\n1,12\" screen,3\n2,x,y\n3,\"q\",w\n4,a\"b\"c,z\n5,ok,\"multi\nline\"\n";
        for chunk in [1, 3, 1000] {
            let records = parse_in_chunks(data.as_bytes(), chunk);
            assert_eq!(records.len(), 6, "chunk {chunk}: {records:?}");
            assert!(records[1].fields.as_ref().unwrap_err().contains("field 2 contains a quote"));
            assert_eq!(records[1].raw, "1,12\" screen,3");
            assert_eq!(fields(&records[2]), ["2", "x", "y"]);
            assert_eq!(fields(&records[3]), ["3", "q", "w"]);
            assert!(records[4].fields.is_err(), "an even number of stray quotes too");
            assert_eq!((records[4].line, records[4].next_line), (5, 6));
            assert_eq!(fields(&records[5]), ["5", "ok", "multi\nline"]);
        }
        // Text after a closing quote is that line's error, and the next line stands alone.
        let records = parse_in_chunks(b"h\n\"a\"b\"c,1\nok,2\n", 2);
        assert_eq!(records.len(), 3, "{records:?}");
        assert!(records[1].fields.is_err());
        assert_eq!(fields(&records[2]), ["ok", "2"]);
    }

    #[test]
    fn an_over_long_line_is_rejected_and_cut() {
        let long = "x".repeat(MAX_RECORD_BYTES + 10);
        let data = format!("h\n{long}\nok\n");
        let records = parse_in_chunks(data.as_bytes(), 4096);
        assert_eq!(records.len(), 3);
        assert!(records[1].fields.as_ref().unwrap_err().contains("longer than"));
        assert_eq!(records[1].raw.len(), KEPT_OF_LONG_LINE);
        assert_eq!(fields(&records[2]), ["ok"]);
        assert_eq!(records[2].line, 3);
    }

    #[test]
    fn stray_quotes_and_bad_utf8_are_reasons() {
        assert!(split_fields("a,b\"c").unwrap_err().contains("field 2"));
        assert!(split_fields("\"a\"x,b").unwrap_err().contains("after its closing quote"));
        let records = parse_in_chunks(b"h\n\xff\xfe,1\n", 100);
        assert_eq!(records[1].fields, Err("the line is not valid UTF-8".into()));
    }

    #[test]
    fn empty_input_and_header_only() {
        assert!(parse_in_chunks(b"", 10).is_empty());
        assert!(parse_in_chunks(b"\xEF\xBB\xBF", 1).is_empty());
        let header_only = parse_in_chunks(b"\xEF\xBB\xBFa,b", 1);
        assert_eq!(header_only.len(), 1);
        assert_eq!(fields(&header_only[0]), ["a", "b"]);
    }
}
