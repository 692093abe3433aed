//! The CSV format of partner files: UTF-8 with an optional BOM, a header row, commas, RFC 4180
//! quoting (a quoted field may hold commas, quotes written `""`, and line breaks), LF or CRLF.
//!
//! `csv-core` tokenizes; this wrapper keeps memory bounded and recovers per line. Bytes go in
//! as they arrive from S3, records come out with their line number, their raw text (for the
//! reject report) and the byte offset just past them (for checkpoints). A record that is
//! malformed is reported and parsing goes on with the next line, so one bad line never costs
//! the valid ones after it: `csv-core` itself never fails (it prefers a lenient parse), so the
//! strictness RFC 4180 asks for (no quote inside an unquoted field, nothing after a closing
//! quote, every quote closed) and the size limit are checked here.

use std::collections::VecDeque;

use csv_core::{ReadRecordResult, Reader, ReaderBuilder, Terminator};

/// A record (or a line that cannot become one) longer than this is rejected. A quote that is
/// never closed would otherwise swallow the rest of the file.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// How much of an over-long line the reject report keeps.
const KEPT_OF_LONG_LINE: usize = 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where a record's fields end, in its raw text when it has no quotes (nothing to unescape:
/// the fields are the raw text between commas, so a record costs no copy of its text) or in
/// its unescaped text otherwise. Fields are separated by one byte either way.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldEnds {
    unescaped: Option<String>,
    ends: Vec<usize>,
}

/// A record's fields, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordFields<'a> {
    text: &'a str,
    ends: &'a [usize],
}

impl<'a> RecordFields<'a> {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The field at `index` (`None` past the last).
    pub fn get(&self, index: usize) -> Option<&'a str> {
        let end = *self.ends.get(index)?;
        let start = index.checked_sub(1).map_or(0, |previous| self.ends[previous] + 1);
        Some(self.text.get(start..end).unwrap_or_default())
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let fields = *self;
        (0..fields.len()).filter_map(move |index| fields.get(index))
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.iter().map(str::to_owned).collect()
    }
}

/// One record of the file, or the reason a line is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The physical line the record starts on (1 = the header).
    pub line: u64,
    /// The record's text as it was in the file, without its final line break.
    pub raw: String,
    /// Where the fields are, or why the record cannot be split into fields.
    fields: Result<FieldEnds, String>,
    /// The line after the record, and the byte offset where it starts: where to resume.
    pub next_line: u64,
    pub next_offset: u64,
}

impl Record {
    /// The fields, or why the record cannot be split into fields.
    pub fn fields(&self) -> Result<RecordFields<'_>, &str> {
        match &self.fields {
            Ok(found) => Ok(RecordFields {
                text: found.unescaped.as_deref().unwrap_or(&self.raw),
                ends: &found.ends,
            }),
            Err(reason) => Err(reason),
        }
    }
}

/// A physical line longer than [`MAX_RECORD_BYTES`] being skipped to its end.
#[derive(Debug)]
struct LongLine {
    kept: Vec<u8>,
}

#[derive(Debug)]
pub struct Parser {
    reader: Reader,
    /// The unescaped bytes of the record being read, and where each of its fields ends.
    output: Vec<u8>,
    output_len: usize,
    ends: Vec<usize>,
    ends_len: usize,
    /// The record being read as it is in the file (from its first byte, blank lines before it
    /// dropped), with the line it starts on and its byte offset.
    raw: Vec<u8>,
    raw_line: u64,
    raw_offset: u64,
    long_line: Option<LongLine>,
    /// The first bytes of the file, until we know whether they start with a BOM.
    head: Vec<u8>,
    strip_bom: bool,
    finished: bool,
    ready: VecDeque<Record>,
}

impl Parser {
    /// A parser for a file read from `offset`, where the line at that offset is `line`.
    pub fn new(line: u64, offset: u64) -> Self {
        Self {
            reader: fresh_reader(),
            output: vec![0; MAX_RECORD_BYTES + 1],
            output_len: 0,
            ends: vec![0; 64],
            ends_len: 0,
            raw: Vec::new(),
            raw_line: line,
            raw_offset: offset,
            long_line: None,
            head: Vec::new(),
            strip_bom: offset == 0,
            finished: false,
            ready: VecDeque::new(),
        }
    }

    /// Feeds the next bytes of the file.
    pub fn push(&mut self, chunk: &[u8]) {
        if !self.strip_bom {
            self.feed(chunk);
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
        self.raw_offset += (head.len() - body.len()) as u64;
        self.feed(body);
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
        if let Some(long) = self.long_line.take() {
            let offset = self.raw_offset;
            self.reject_long_line(long, offset);
            return;
        }
        // A quote still open at the end costs its first line; the lines after it are read
        // again, until what is left ends cleanly.
        loop {
            let (result, _, written, ended) = self.reader.read_record(
                &[],
                &mut self.output[self.output_len..],
                &mut self.ends[self.ends_len..],
            );
            self.output_len += written;
            self.ends_len += ended;
            match result {
                ReadRecordResult::OutputEndsFull => self.grow_ends(),
                ReadRecordResult::Record if !self.raw.is_empty() => {
                    let Some(rest) = self.complete_record() else { return };
                    self.feed(&rest);
                }
                _ => return,
            }
        }
    }

    /// The next complete record, if the bytes pushed so far hold one. Blank lines are skipped.
    pub fn next_record(&mut self) -> Option<Record> {
        self.ready.pop_front()
    }

    /// Parses `chunk`; bytes that must be read again after a line was cut out of an
    /// over-long record are fed again, iteratively (each round drops at least one line).
    fn feed(&mut self, chunk: &[u8]) {
        let Some((mut again, consumed)) = self.feed_until_cut(chunk) else { return };
        again.extend_from_slice(&chunk[consumed..]);
        while let Some((mut next, consumed)) = self.feed_until_cut(&again) {
            next.extend_from_slice(&again[consumed..]);
            again = next;
        }
    }

    /// Parses `input` until its end, or until a record had to be cut: then returns the bytes
    /// to read again before the rest of `input`, and how much of `input` was consumed.
    fn feed_until_cut(&mut self, mut input: &[u8]) -> Option<(Vec<u8>, usize)> {
        let total = input.len();
        while !input.is_empty() {
            if self.long_line.is_some() {
                input = self.skip_long_line(input);
                continue;
            }
            let (result, read, written, ended) = self.reader.read_record(
                input,
                &mut self.output[self.output_len..],
                &mut self.ends[self.ends_len..],
            );
            self.raw.extend_from_slice(&input[..read]);
            input = &input[read..];
            self.output_len += written;
            self.ends_len += ended;
            self.drop_leading_blank_lines();
            let again = match result {
                ReadRecordResult::Record => self.complete_record(),
                ReadRecordResult::OutputEndsFull => {
                    self.grow_ends();
                    None
                }
                ReadRecordResult::OutputFull => self.cut_open_record(),
                _ if self.raw.len() > MAX_RECORD_BYTES => self.cut_open_record(),
                _ => None,
            };
            if let Some(again) = again {
                return Some((again, total - input.len()));
            }
        }
        None
    }

    /// `csv-core` skips empty lines before a record; they are counted here, so that `raw`
    /// holds the record alone and its line number is right.
    fn drop_leading_blank_lines(&mut self) {
        let blank = self.raw.iter().take_while(|&&byte| byte == b'\n').count();
        if blank > 0 {
            self.raw.drain(..blank);
            self.raw_line += blank as u64;
            self.raw_offset += blank as u64;
        }
    }

    fn grow_ends(&mut self) {
        let doubled = self.ends.len() * 2;
        self.ends.resize(doubled, 0);
    }

    /// A record that is still open has outgrown the limit: either its first line alone is too
    /// long (skipped to its end), or a quote opened on its first line never closed within
    /// the limit (that line is rejected; the lines after it are read again).
    fn cut_open_record(&mut self) -> Option<Vec<u8>> {
        let mut raw = std::mem::take(&mut self.raw);
        if find_newline(&raw).is_some() {
            return Some(self.cut_first_line(raw));
        }
        self.restart_reader();
        self.raw_offset += raw.len() as u64;
        raw.truncate(KEPT_OF_LONG_LINE);
        self.long_line = Some(LongLine { kept: raw });
        None
    }

    /// Rejects the first physical line of `raw` (all of it when it has no line break) and
    /// returns the bytes after that line, to be read again.
    fn cut_first_line(&mut self, mut raw: Vec<u8>) -> Vec<u8> {
        self.restart_reader();
        let (line_bytes, rest) = match find_newline(&raw) {
            Some(newline) => {
                let rest = raw.split_off(newline + 1);
                raw.truncate(newline);
                (newline + 1, rest)
            }
            None => (raw.len(), Vec::new()),
        };
        let reason = if raw.len() > MAX_RECORD_BYTES {
            raw.truncate(KEPT_OF_LONG_LINE);
            format!("the line is longer than {MAX_RECORD_BYTES} bytes")
        } else {
            "a quoted field is never closed".to_owned()
        };
        strip_cr(&mut raw);
        let line = self.raw_line;
        self.raw_line += 1;
        self.raw_offset += line_bytes as u64;
        self.ready.push_back(Record {
            line,
            raw: String::from_utf8_lossy(&raw).into_owned(),
            fields: Err(reason),
            next_line: self.raw_line,
            next_offset: self.raw_offset,
        });
        rest
    }

    fn skip_long_line<'a>(&mut self, input: &'a [u8]) -> &'a [u8] {
        let Some(long) = &mut self.long_line else { return input };
        let Some(newline) = find_newline(input) else {
            let room = KEPT_OF_LONG_LINE.saturating_sub(long.kept.len());
            long.kept.extend_from_slice(&input[..room.min(input.len())]);
            self.raw_offset += input.len() as u64;
            return &[];
        };
        let room = KEPT_OF_LONG_LINE.saturating_sub(long.kept.len());
        long.kept.extend_from_slice(&input[..room.min(newline)]);
        let Some(long) = self.long_line.take() else { return input };
        let next_offset = self.raw_offset + newline as u64 + 1;
        self.reject_long_line(long, next_offset);
        &input[newline + 1..]
    }

    fn reject_long_line(&mut self, long: LongLine, next_offset: u64) {
        let mut kept = long.kept;
        strip_cr(&mut kept);
        let line = self.raw_line;
        self.raw_line += 1;
        self.raw_offset = next_offset;
        self.ready.push_back(Record {
            line,
            raw: String::from_utf8_lossy(&kept).into_owned(),
            fields: Err(format!("the line is longer than {MAX_RECORD_BYTES} bytes")),
            next_line: self.raw_line,
            next_offset,
        });
    }

    /// `csv-core` found the end of a record (or the file): checks it and queues it. Returns
    /// bytes to read again when the record had to be cut.
    fn complete_record(&mut self) -> Option<Vec<u8>> {
        // The next record is most likely about as long: room for it at once, rather than
        // growing from nothing a few bytes at a time.
        let room = self.raw.len().clamp(64, 1024);
        let mut raw = std::mem::replace(&mut self.raw, Vec::with_capacity(room));
        let (output_len, ends_len) = (self.output_len, self.ends_len);
        self.output_len = 0;
        self.ends_len = 0;
        let consumed = raw.len() as u64;
        let terminated = raw.last() == Some(&b'\n');
        if terminated {
            raw.pop();
        }
        let check = if raw.len() > MAX_RECORD_BYTES { Check::TooLong } else { strictness(&raw) };
        if matches!(check, Check::TooLong | Check::Unclosed) {
            if terminated {
                raw.push(b'\n');
            }
            let rest = self.cut_first_line(raw);
            return Some(rest).filter(|rest| !rest.is_empty());
        }
        let line = self.raw_line;
        // Only a quoted field holds line breaks.
        let lines = match check {
            Check::Unquoted => 1,
            _ => 1 + memchr::memchr_iter(b'\n', &raw).count() as u64,
        };
        self.raw_line += lines;
        self.raw_offset += consumed;
        let ended_with_cr = strip_cr(&mut raw);
        // A blank line written with CRLF is a record of one empty field to csv-core.
        if raw.is_empty() {
            return None;
        }
        let (raw, fields) = match (String::from_utf8(raw), check) {
            (Err(error), _) => (
                String::from_utf8_lossy(error.as_bytes()).into_owned(),
                Err("the line is not valid UTF-8".to_owned()),
            ),
            (Ok(raw), Check::Malformed(reason)) => (raw, Err(reason)),
            (Ok(raw), Check::Unquoted) => {
                let ends = self.raw_ends(ends_len, raw.len());
                (raw, Ok(FieldEnds { unescaped: None, ends }))
            }
            (Ok(raw), _) => (raw, Ok(self.unescaped(output_len, ends_len, ended_with_cr))),
        };
        self.ready.push_back(Record {
            line,
            raw,
            fields,
            next_line: self.raw_line,
            next_offset: self.raw_offset,
        });
        None
    }

    /// Where the fields of a record without quotes end in its raw text: `csv-core`'s output
    /// is the raw text without its commas (and the CR of a CRLF line end, which the raw text
    /// has lost, at the end of the last field).
    fn raw_ends(&self, ends_len: usize, raw_len: usize) -> Vec<usize> {
        let ends = self.ends[..ends_len].iter().enumerate();
        ends.map(|(commas, &end)| (end + commas).min(raw_len)).collect()
    }

    /// The fields of a record with quotes, unescaped from `csv-core`'s output and separated by
    /// a comma each. The raw record is valid UTF-8 and fields end at commas, so every field is
    /// too.
    fn unescaped(&self, output_len: usize, ends_len: usize, ended_with_cr: bool) -> FieldEnds {
        let mut output = &self.output[..output_len];
        // The CR of a CRLF line end is data to csv-core (lines end at LF); it belongs to no field.
        if ended_with_cr && output.last() == Some(&b'\r') {
            output = &output[..output.len() - 1];
        }
        let mut text = Vec::with_capacity(output.len() + ends_len);
        let mut ends = Vec::with_capacity(ends_len);
        let mut start = 0;
        for &end in &self.ends[..ends_len] {
            let end = end.min(output.len());
            if !ends.is_empty() {
                text.push(b',');
            }
            text.extend_from_slice(&output[start.min(end)..end]);
            ends.push(text.len());
            start = end;
        }
        let text = String::from_utf8(text)
            .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned());
        FieldEnds { unescaped: Some(text), ends }
    }

    fn restart_reader(&mut self) {
        self.reader = fresh_reader();
        self.output_len = 0;
        self.ends_len = 0;
    }
}

/// A reader for LF-terminated records (a CR before the LF is dropped by the wrapper) that
/// will not take a BOM for its own: the wrapper strips one at the start of the file only.
fn fresh_reader() -> Reader {
    let mut reader = ReaderBuilder::new().terminator(Terminator::Any(b'\n')).build();
    // csv-core strips a BOM from its first input; a blank line read first (skipped, as every
    // blank line is) makes a BOM-like start of a later line data, as it is.
    let _ = reader.read_record(b"\n", &mut [0; 1], &mut [0; 1]);
    reader
}

fn find_newline(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

/// Drops a final CR; says whether there was one.
fn strip_cr(bytes: &mut Vec<u8>) -> bool {
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
        return true;
    }
    false
}

/// What the strictness check found in a record.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    /// No quote at all: the fields are the raw text between commas.
    Unquoted,
    Fine,
    Malformed(String),
    /// A quote that is open at the end of the record: only at the end of the file.
    Unclosed,
    TooLong,
}

/// RFC 4180's rules that `csv-core` leaves to its caller. A quote opens a quoted field only at
/// the start of a field: a quote inside an unquoted field is data that makes the line
/// malformed, never the start of a field that runs on into the next lines.
///
/// Every row of a file passes here, so it jumps from quote to quote and from comma to comma
/// (`memchr`) rather than looking at each byte.
fn strictness(raw: &[u8]) -> Check {
    if memchr::memchr(b'"', raw).is_none() {
        return Check::Unquoted;
    }
    let body = raw.strip_suffix(b"\r").unwrap_or(raw);
    let mut field = 1usize;
    let mut problem = None;
    let mut at = 0;
    loop {
        // At the start of a field.
        if body.get(at) == Some(&b'"') {
            at += 1;
            // To the closing quote; `""` is a quote inside the field.
            loop {
                let Some(quote) = memchr::memchr(b'"', &body[at..]) else {
                    return Check::Unclosed;
                };
                at += quote + 1;
                if body.get(at) != Some(&b'"') {
                    break;
                }
                at += 1;
            }
            match body.get(at) {
                None => break,
                Some(b',') => {
                    at += 1;
                    field += 1;
                    continue;
                }
                Some(_) => {
                    problem.get_or_insert_with(|| {
                        format!("field {field} has characters after its closing quote")
                    });
                    at += 1;
                }
            }
        }
        // An unquoted field (or the rest of a broken one), to its comma.
        loop {
            let Some(next) = memchr::memchr2(b',', b'"', &body[at..]) else {
                return problem.map_or(Check::Fine, Check::Malformed);
            };
            at += next;
            if body[at] == b',' {
                break;
            }
            problem.get_or_insert_with(|| {
                format!(
                    "field {field} contains a quote but is not quoted; write it as \"…\" with \"\" for each quote"
                )
            });
            at += 1;
        }
        at += 1;
        field += 1;
    }
    problem.map_or(Check::Fine, Check::Malformed)
}

/// Splits one record's text into fields, with the same rules as the parser (a stored header
/// row is read again this way).
pub fn split_fields(record: &str) -> Result<Vec<String>, String> {
    let mut parser = Parser::new(2, 1);
    parser.push(record.as_bytes());
    parser.finish();
    match parser.next_record() {
        Some(record) => record.fields().map(|fields| fields.to_strings()).map_err(str::to_owned),
        None => Ok(vec![String::new()]),
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
        record.fields().unwrap().iter().collect()
    }

    /// RFC 4180's quoting rules as a state machine over every byte: the reference the
    /// faster [`strictness`] is checked against.
    fn strictness_byte_by_byte(raw: &[u8]) -> Check {
        #[derive(Clone, Copy, PartialEq)]
        enum Quoting {
            FieldStart,
            Unquoted,
            Quoted,
            QuoteInQuoted,
        }
        if !raw.contains(&b'"') {
            return Check::Unquoted;
        }
        let mut state = Quoting::FieldStart;
        let mut field = 1usize;
        let mut problem = None;
        for &byte in raw.strip_suffix(b"\r").unwrap_or(raw) {
            state = match (state, byte) {
                (Quoting::FieldStart, b'"') => Quoting::Quoted,
                (Quoting::FieldStart | Quoting::Unquoted | Quoting::QuoteInQuoted, b',') => {
                    field += 1;
                    Quoting::FieldStart
                }
                (Quoting::Quoted, b'"') => Quoting::QuoteInQuoted,
                (Quoting::Quoted, _) | (Quoting::QuoteInQuoted, b'"') => Quoting::Quoted,
                (Quoting::Unquoted, b'"') => {
                    problem.get_or_insert_with(|| {
                        format!(
                            "field {field} contains a quote but is not quoted; write it as \"…\" with \"\" for each quote"
                        )
                    });
                    Quoting::Unquoted
                }
                (Quoting::QuoteInQuoted, _) => {
                    problem.get_or_insert_with(|| {
                        format!("field {field} has characters after its closing quote")
                    });
                    Quoting::Unquoted
                }
                (Quoting::FieldStart | Quoting::Unquoted, _) => Quoting::Unquoted,
            };
        }
        if state == Quoting::Quoted {
            return Check::Unclosed;
        }
        problem.map_or(Check::Fine, Check::Malformed)
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
        assert_eq!(records[1].fields(), Err("a quoted field is never closed"));
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
            assert!(records[1].fields().unwrap_err().contains("field 2 contains a quote"));
            assert_eq!(records[1].raw, "1,12\" screen,3");
            assert_eq!(fields(&records[2]), ["2", "x", "y"]);
            assert_eq!(fields(&records[3]), ["3", "q", "w"]);
            assert!(records[4].fields().is_err(), "an even number of stray quotes too");
            assert_eq!((records[4].line, records[4].next_line), (5, 6));
            assert_eq!(fields(&records[5]), ["5", "ok", "multi\nline"]);
        }
        // Text after a closing quote is that line's error, and the next line stands alone.
        let records = parse_in_chunks(b"h\n\"a\"b\"c,1\nok,2\n", 2);
        assert_eq!(records.len(), 3, "{records:?}");
        assert!(records[1].fields().is_err());
        assert_eq!(fields(&records[2]), ["ok", "2"]);
    }

    #[test]
    fn an_over_long_line_is_rejected_and_cut() {
        let long = "x".repeat(MAX_RECORD_BYTES + 10);
        let data = format!("h\n{long}\nok\n");
        let records = parse_in_chunks(data.as_bytes(), 4096);
        assert_eq!(records.len(), 3);
        assert!(records[1].fields().unwrap_err().contains("longer than"));
        assert_eq!(records[1].raw.len(), KEPT_OF_LONG_LINE);
        assert_eq!(fields(&records[2]), ["ok"]);
        assert_eq!(records[2].line, 3);
    }

    #[test]
    fn stray_quotes_and_bad_utf8_are_reasons() {
        assert!(split_fields("a,b\"c").unwrap_err().contains("field 2"));
        assert!(split_fields("\"a\"x,b").unwrap_err().contains("after its closing quote"));
        let records = parse_in_chunks(b"h\n\xff\xfe,1\n", 100);
        assert_eq!(records[1].fields(), Err("the line is not valid UTF-8"));
    }

    #[test]
    fn empty_input_and_header_only() {
        assert!(parse_in_chunks(b"", 10).is_empty());
        assert!(parse_in_chunks(b"\xEF\xBB\xBF", 1).is_empty());
        let header_only = parse_in_chunks(b"\xEF\xBB\xBFa,b", 1);
        assert_eq!(header_only.len(), 1);
        assert_eq!(fields(&header_only[0]), ["a", "b"]);
    }

    /// Bytes that are mostly CSV's own: quotes, commas, line breaks (LF and CRLF), invalid
    /// UTF-8, a BOM, and now and then a line far over the limit.
    fn csv_like_bytes(max_tokens: usize) -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let token = prop_oneof![
            8 => Just(b"a".to_vec()),
            4 => Just(b",".to_vec()),
            4 => Just(b"\"".to_vec()),
            4 => Just(b"\n".to_vec()),
            2 => Just(b"\r\n".to_vec()),
            1 => Just(b"\r".to_vec()),
            1 => Just(b"\xff".to_vec()),
            1 => Just(BOM.to_vec()),
            1 => Just(vec![b'x'; MAX_RECORD_BYTES + 100]),
            1 => Just(vec![b'y'; MAX_RECORD_BYTES / 2]),
        ];
        proptest::collection::vec(token, 0..max_tokens).prop_map(|tokens| tokens.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Whatever the bytes: no panic, the same records however they are chunked, offsets
        /// that move forward within the file, and a resume from any record's checkpoint that
        /// gives exactly the records after it.
        #[test]
        fn any_bytes_parse_the_same_in_chunks_and_resume_from_every_checkpoint(
            data in csv_like_bytes(60),
            chunk in 1usize..5000,
        ) {
            let whole = parse_in_chunks(&data, data.len().max(1));
            let chunked = parse_in_chunks(&data, chunk);
            proptest::prop_assert_eq!(&whole, &chunked);
            let mut previous = 0;
            for record in &whole {
                proptest::prop_assert!(record.next_offset > previous);
                proptest::prop_assert!(record.next_offset <= data.len() as u64);
                proptest::prop_assert!(record.raw.len() <= MAX_RECORD_BYTES);
                previous = record.next_offset;
            }
            for (index, record) in whole.iter().enumerate() {
                let mut parser = Parser::new(record.next_line, record.next_offset);
                parser.push(&data[record.next_offset as usize..]);
                parser.finish();
                let mut rest = Vec::new();
                while let Some(next) = parser.next_record() {
                    rest.push(next);
                }
                proptest::prop_assert_eq!(&rest[..], &whole[index + 1..]);
            }
        }

        /// The strictness check jumps between quotes and commas; it must find what a plain
        /// walk over every byte finds.
        #[test]
        fn strictness_agrees_with_a_walk_over_every_byte(raw in csv_like_bytes(30)) {
            proptest::prop_assert_eq!(strictness(&raw), strictness_byte_by_byte(&raw));
        }

        /// A well-formed line after broken ones is never lost: whatever came before it (open
        /// quotes, stray quotes, bad UTF-8, over-long lines), it comes out with its fields.
        #[test]
        fn a_well_formed_line_after_broken_ones_is_never_lost(
            broken in csv_like_bytes(40),
            chunk in 1usize..5000,
            number in 0u32..1_000_000,
        ) {
            let good = format!("ok,{number},last");
            let mut data = broken.clone();
            data.extend_from_slice(b"\n");
            data.extend_from_slice(good.as_bytes());
            data.extend_from_slice(b"\r\nok,2,end\n");
            let records = parse_in_chunks(&data, chunk);
            let found = records.iter().find(|record| record.raw == good);
            let found = found.ok_or_else(|| {
                proptest::test_runner::TestCaseError::fail(format!("{good:?} is lost"))
            })?;
            let fields = found.fields().map_err(|reason| {
                proptest::test_runner::TestCaseError::fail(reason.to_owned())
            })?;
            proptest::prop_assert_eq!(fields.to_strings(), vec!["ok".to_owned(), number.to_string(), "last".to_owned()]);
            let last = records.last().map(|record| record.raw.as_str());
            proptest::prop_assert_eq!(last, Some("ok,2,end"));
        }
    }
}
