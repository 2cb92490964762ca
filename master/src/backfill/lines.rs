//! The lines of an archive file, each held at most [`MAX_LINE_BYTES`] long.
//!
//! A real archive line is under 200 bytes (an SPS30's, the widest, about
//! 150). A file that is one endless line (a 200 MB blob, `/dev/zero` under
//! a `.csv` name) would otherwise be buffered whole by a line or CSV reader
//! before the first row could be refused; here a line past the cap is
//! skipped to its end without being kept, and reported as
//! [`Line::TooLong`] so that the caller counts it as a rejected row. The
//! memory of a file being read is its read buffer plus this cap, whatever
//! the file holds.

use std::io::{self, BufRead};

/// Longest line kept, without its line ending. Hundreds of times a real
/// line, so no real row is ever cut.
pub const MAX_LINE_BYTES: usize = 64 << 10;

/// One line of the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The line's bytes, without `\n` or `\r\n`.
    Text(&'a [u8]),
    /// A line longer than the cap; `bytes` is how long it was. Its bytes are
    /// gone: they were skipped, not buffered.
    TooLong { bytes: u64 },
}

/// Reads `input` line by line with a buffer of at most `max` bytes.
pub struct Lines<R> {
    input: R,
    line: Vec<u8>,
    max: usize,
}

impl<R: BufRead> Lines<R> {
    pub fn new(input: R) -> Lines<R> {
        Lines::with_max(input, MAX_LINE_BYTES)
    }

    pub fn with_max(input: R, max: usize) -> Lines<R> {
        Lines {
            input,
            line: Vec::new(),
            max,
        }
    }

    /// The next line, `None` at the end of the input. A last line without a
    /// line ending is a line.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.line.clear();
        let mut bytes: u64 = 0;
        let mut too_long = false;
        let mut ended = false;
        loop {
            let available = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                break;
            }
            let newline = available.iter().position(|&b| b == b'\n');
            let part = &available[..newline.unwrap_or(available.len())];
            bytes += part.len() as u64;
            if !too_long {
                if self.line.len() + part.len() > self.max {
                    // From here on the line is only measured. Its first
                    // part is dropped too: a cut row must not pass as a
                    // shorter valid one.
                    too_long = true;
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(part);
                }
            }
            let used = newline.map_or(available.len(), |i| i + 1);
            self.input.consume(used);
            if newline.is_some() {
                ended = true;
                break;
            }
        }
        if !ended && bytes == 0 {
            return Ok(None);
        }
        if too_long {
            return Ok(Some(Line::TooLong { bytes }));
        }
        let text = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        Ok(Some(Line::Text(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Read};

    fn all(input: &[u8], max: usize) -> Vec<Result<String, u64>> {
        let mut lines = Lines::with_max(BufReader::with_capacity(4, input), max);
        let mut out = Vec::new();
        while let Some(line) = lines.next_line().expect("reads") {
            out.push(match line {
                Line::Text(t) => Ok(String::from_utf8_lossy(t).into_owned()),
                Line::TooLong { bytes } => Err(bytes),
            });
        }
        out
    }

    #[test]
    fn lines_endings_and_the_cap() {
        assert_eq!(all(b"", 8), []);
        assert_eq!(
            all(b"a;b\r\nc\n\nd", 8),
            [
                Ok("a;b".into()),
                Ok("c".into()),
                Ok("".into()),
                Ok("d".into())
            ]
        );
        assert_eq!(all(b"12345678\n", 8), [Ok("12345678".into())]);
        assert_eq!(
            all(b"123456789\nok\n0123456789abcdef", 8),
            [Err(9), Ok("ok".into()), Err(16)]
        );
    }

    /// An endless line is skipped in constant memory: 64 MiB of zeros
    /// without a newline, read through a 64 KiB cap, leaves the line buffer
    /// no larger than the cap.
    #[test]
    fn an_endless_line_is_not_buffered() {
        let zeros = io::repeat(0).take(64 << 20);
        let mut lines = Lines::new(BufReader::with_capacity(64 << 10, zeros));
        assert_eq!(
            lines.next_line().expect("reads"),
            Some(Line::TooLong { bytes: 64 << 20 })
        );
        assert!(
            lines.line.capacity() <= 2 * MAX_LINE_BYTES,
            "{}",
            lines.line.capacity()
        );
        assert_eq!(lines.next_line().expect("reads"), None);
    }
}
