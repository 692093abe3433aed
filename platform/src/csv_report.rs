//! The CSV reports Cezbek writes (an ingested file's rejected rows, a partner's daily figures),
//! written one way with `csv::Writer`: quoting where a cell needs it, and text that came from
//! outside kept from running as a spreadsheet formula.

use std::borrow::Cow;

/// One cell of a report row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    /// Text that came from a partner or an admin: guarded against formula injection.
    Text(&'a str),
    /// An amount Cezbek computed.
    Number(i64),
    /// A count or line number.
    Count(u64),
    /// Nothing (a column that does not apply to the row).
    Empty,
}

/// How rows end: RFC 4180 says CRLF; reports that always ended in LF keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnd {
    Crlf,
    Lf,
}

/// A report being written to memory; take what is written with [`CsvReport::take`] to stream
/// a long report out page by page.
#[derive(Debug)]
pub struct CsvReport {
    writer: csv::Writer<Vec<u8>>,
    line_end: LineEnd,
}

impl CsvReport {
    pub fn new(line_end: LineEnd) -> Self {
        Self { writer: writer(line_end), line_end }
    }

    /// Writes a header row (names Cezbek chose: written as they are).
    pub fn header(&mut self, names: &[&str]) {
        // Writing to a Vec cannot fail.
        let _ = self.writer.write_record(names);
    }

    pub fn row(&mut self, cells: &[Cell<'_>]) {
        for cell in cells {
            let text: Cow<'_, str> = match cell {
                Cell::Text(text) => guard_formula(text),
                Cell::Number(value) => Cow::Owned(value.to_string()),
                Cell::Count(value) => Cow::Owned(value.to_string()),
                Cell::Empty => Cow::Borrowed(""),
            };
            let _ = self.writer.write_field(text.as_bytes());
        }
        let _ = self.writer.write_record(None::<&[u8]>);
    }

    /// The bytes written since the last call.
    pub fn take(&mut self) -> Vec<u8> {
        let written = std::mem::replace(&mut self.writer, writer(self.line_end));
        // Flushing into a Vec cannot fail.
        written.into_inner().unwrap_or_default()
    }

    /// Everything written (since the last [`CsvReport::take`]).
    pub fn into_bytes(mut self) -> Vec<u8> {
        self.take()
    }
}

fn writer(line_end: LineEnd) -> csv::Writer<Vec<u8>> {
    let terminator = match line_end {
        LineEnd::Crlf => csv::Terminator::CRLF,
        LineEnd::Lf => csv::Terminator::Any(b'\n'),
    };
    csv::WriterBuilder::new().terminator(terminator).from_writer(Vec::new())
}

/// A cell that a spreadsheet would run as a formula (it starts with `=`, `+`, `-` or `@`, or
/// a tab or carriage return that some strip before looking) gets a leading `'`, which
/// spreadsheets show as text and do not display (OWASP's advice for CSV injection).
pub fn guard_formula(text: &str) -> Cow<'_, str> {
    match text.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => Cow::Owned(format!("'{text}")),
        _ => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_a_spreadsheet_would_run_is_kept_as_text() {
        let mut report = CsvReport::new(LineEnd::Crlf);
        report.header(&["name", "amount"]);
        for text in ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "plain", "a,b"] {
            report.row(&[Cell::Text(text), Cell::Number(-5)]);
        }
        report.row(&[Cell::Empty, Cell::Number(0)]);
        let written = String::from_utf8(report.into_bytes()).unwrap();
        assert_eq!(
            written,
            "name,amount\r\n\
             \"'=HYPERLINK(\"\"http://x\"\")\",-5\r\n\
             '+1,-5\r\n\
             '-2+3,-5\r\n\
             '@SUM(A1),-5\r\n\
             '\tx,-5\r\n\
             plain,-5\r\n\
             \"a,b\",-5\r\n\
             ,0\r\n"
        );
    }

    #[test]
    fn a_report_streams_in_pieces_with_the_chosen_line_end() {
        let mut report = CsvReport::new(LineEnd::Lf);
        report.header(&["line", "raw"]);
        let first = report.take();
        report.row(&[Cell::Count(2), Cell::Text("x\ny")]);
        let second = report.take();
        assert_eq!(first, b"line,raw\n");
        assert_eq!(second, b"2,\"x\ny\"\n");
        assert!(report.take().is_empty());
    }
}
