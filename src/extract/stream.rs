//! Decoding an `/api/query` answer while it streams in, one series at a time: memory holds
//! the decoded columns and about one series' JSON, never the whole body (issue 18: at 1,000 VMs
//! one unit's answer is a 49 MB body, which was held whole while it was decoded).
//!
//! The answer is a JSON array of series. [`AnswerStream`] keeps the bytes not yet decoded. Each
//! element is read by the hand-rolled scanner (`scan::series_at`) once about as many bytes as
//! the previous element took have come; when the scanner stops short, `element_end` finds
//! where the element ends (strings and nesting): not there yet, the stream waits for twice as
//! many bytes; there, the element is not of the plain shape and serde_json reads it on its
//! own (as `[element]`), its error message moved back to the element's place in the whole body
//! (line and column). A body that does not start with `[` is kept whole (it is an error page, a
//! few bytes) for serde_json to say what is wrong with it. So a valid answer decodes to exactly
//! what serde_json reads from the whole body, however its bytes are cut into chunks (property
//! tests in `decode.rs`); an invalid one is refused with serde_json's message, or for the
//! array's own punctuation with the same words.

use super::decode::{DecodeError, DecodeStats, SeriesData, normalize, serde_path};
use super::raw::RawSeries;
use super::scan;

/// Bytes of the start of the body kept for error messages.
const SNIPPET_BYTES: usize = 200;

/// Decodes the answer to a query for `metric`, keeping points with `start_ms <= ts < end_ms`:
/// [`decode_query_response`], plus the check that every series of the answer (with points in
/// the window or not) is of `metric` ([`DecodeError::WrongMetric`] otherwise). So rows always
/// carry the metric the unit asked for, never a name only the server gave.
pub fn decode_query_answer(
    body: &[u8],
    start_ms: i64,
    end_ms: i64,
    metric: &str,
) -> Result<(Vec<SeriesData>, DecodeStats), DecodeError> {
    decode(body, start_ms, end_ms, Some(metric))
}

/// Decodes an `/api/query` body, keeping points with `start_ms <= ts < end_ms`, whatever
/// metrics its series name (see [`decode_query_answer`] for the answer to one query).
pub fn decode_query_response(
    body: &[u8],
    start_ms: i64,
    end_ms: i64,
) -> Result<(Vec<SeriesData>, DecodeStats), DecodeError> {
    decode(body, start_ms, end_ms, None)
}

/// The whole body through [`AnswerStream`], as one piece.
fn decode(
    body: &[u8],
    start_ms: i64,
    end_ms: i64,
    asked: Option<&str>,
) -> Result<(Vec<SeriesData>, DecodeStats), DecodeError> {
    let mut stream = AnswerStream::new(start_ms, end_ms, asked);
    stream.push(body)?;
    stream.finish()
}

/// An `/api/query` answer being decoded as its bytes come: [`AnswerStream::push`] each piece
/// of the decoded body (after gzip), then [`AnswerStream::finish`].
#[derive(Debug)]
pub struct AnswerStream {
    start_ms: i64,
    end_ms: i64,
    /// The metric of the query: a series naming another one fails the answer.
    asked: Option<String>,
    state: State,
    /// Bytes received and not decoded yet; `buf[0]` is byte `base` of the body.
    buf: Vec<u8>,
    /// The next byte of `buf` to look at.
    at: usize,
    /// Where `buf[0]` is in the body: its offset, its line (from 1) and where that line starts.
    base: usize,
    base_line: usize,
    base_line_start: usize,
    /// Bytes the element at `at` is given before the scanner tries it: as many as the last one
    /// took, so that it is usually tried once, whole.
    want: usize,
    /// Points of the last series, the capacity of the next one's columns.
    points_hint: usize,
    /// The start of the body, for error messages.
    head: Vec<u8>,
    series: Vec<SeriesData>,
    stats: DecodeStats,
    /// The first series naming another metric than the query's: the answer's error, unless
    /// the body is also malformed.
    wrong: Option<DecodeError>,
}

/// Where the stream is in the answer's top-level array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the `[` (only whitespace so far).
    Start,
    /// After the `[`: an element or the `]`.
    FirstOrEnd,
    /// After a `,`: an element.
    Element,
    /// After an element: `,` or `]`.
    CommaOrEnd,
    /// After the `]`: only whitespace.
    Done,
    /// The body does not start with `[`: kept whole for serde_json.
    Whole,
}

impl AnswerStream {
    /// A stream keeping the points with `start_ms <= ts < end_ms`, of `asked` only when given
    /// (an answer naming another metric is [`DecodeError::WrongMetric`]).
    pub fn new(start_ms: i64, end_ms: i64, asked: Option<&str>) -> AnswerStream {
        AnswerStream {
            start_ms,
            end_ms,
            asked: asked.map(str::to_string),
            state: State::Start,
            buf: Vec::new(),
            at: 0,
            base: 0,
            base_line: 1,
            base_line_start: 0,
            want: 0,
            points_hint: 0,
            head: Vec::new(),
            series: Vec::new(),
            stats: DecodeStats::default(),
            wrong: None,
        }
    }

    /// Takes the next bytes of the body and decodes every element they complete. After an
    /// error the stream must not be fed again.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        if self.head.len() < SNIPPET_BYTES {
            let take = (SNIPPET_BYTES - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
        }
        if self.buf.is_empty() && self.state != State::Whole {
            // Nothing held: the piece is read where it lies, and only what it leaves (the
            // start of an element) is copied.
            self.at = 0;
            let read = self.advance(bytes, false);
            let done = if self.state == State::Whole {
                0
            } else {
                self.at
            };
            self.consumed(&bytes[..done]);
            self.buf.extend_from_slice(&bytes[done..]);
            self.at -= done;
            return read;
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.extend_from_slice(bytes);
        let read = self.advance(&buf, false);
        self.buf = buf;
        read?;
        self.compact();
        Ok(())
    }

    /// The series and counters of the whole answer, once every byte was pushed.
    pub fn finish(mut self) -> Result<(Vec<SeriesData>, DecodeStats), DecodeError> {
        let buf = std::mem::take(&mut self.buf);
        self.advance(&buf, true)?;
        self.buf = buf;
        match self.state {
            State::Start => return Err(DecodeError::Empty),
            State::Whole => {
                let body = std::mem::take(&mut self.buf);
                let raw = serde_path(&body).map_err(|message| self.malformed(message))?;
                for s in raw {
                    self.keep(s);
                }
            }
            State::FirstOrEnd | State::Element | State::CommaOrEnd => {
                let end = self.buf.len();
                return Err(self.malformed_at(&self.buf, "EOF while parsing a list", end, 0));
            }
            State::Done => {}
        }
        match self.wrong {
            Some(wrong) => Err(wrong),
            None => Ok((self.series, self.stats)),
        }
    }

    /// Decodes what `data` (the bytes held, `buf`, or a piece read in place) holds from `at`,
    /// as far as it goes; `finishing`: nothing more will come, so an element is tried whatever
    /// its size.
    fn advance(&mut self, data: &[u8], finishing: bool) -> Result<(), DecodeError> {
        loop {
            if self.state == State::Whole {
                return Ok(());
            }
            self.skip_whitespace(data);
            let Some(&c) = data.get(self.at) else {
                return Ok(());
            };
            match (self.state, c) {
                (State::Start, b'[') => {
                    self.at += 1;
                    self.state = State::FirstOrEnd;
                }
                (State::Start, _) => self.state = State::Whole,
                (State::FirstOrEnd, b']') | (State::CommaOrEnd, b']') => {
                    self.at += 1;
                    self.state = State::Done;
                }
                (State::Element, b']') => {
                    return Err(self.malformed_at(data, "trailing comma", self.at, 1));
                }
                (State::FirstOrEnd | State::Element, b',') => {
                    return Err(self.malformed_at(data, "expected value", self.at, 1));
                }
                (State::FirstOrEnd | State::Element, _) => {
                    if !self.element(data, finishing)? {
                        return Ok(());
                    }
                    self.state = State::CommaOrEnd;
                }
                (State::CommaOrEnd, b',') => {
                    self.at += 1;
                    self.state = State::Element;
                }
                (State::CommaOrEnd, _) => {
                    return Err(self.malformed_at(data, "expected `,` or `]`", self.at, 1));
                }
                (State::Done, _) => {
                    return Err(self.malformed_at(data, "trailing characters", self.at, 1));
                }
                (State::Whole, _) => unreachable!("returned above"),
            }
        }
    }

    /// Decodes the element at `at` if it is all there: `Ok(false)` to wait for more bytes.
    fn element(&mut self, data: &[u8], finishing: bool) -> Result<bool, DecodeError> {
        let available = data.len() - self.at;
        if !finishing && available < self.want {
            return Ok(false);
        }
        if let Some((raw, end)) = scan::series_at(data, self.at, &mut self.points_hint) {
            self.want = end - self.at;
            self.at = end;
            self.keep(raw);
            return Ok(true);
        }
        // Not read by the scanner: cut short, or not of the plain shape.
        let Some(len) = element_end(&data[self.at..]) else {
            if finishing {
                // The body ends inside the element: serde_json says where and in what.
                let message = serde_element(&data[self.at..], false)
                    .err()
                    .unwrap_or_else(|| "EOF while parsing a list".into());
                return Err(self.relocated(data, &message, self.at));
            }
            self.want = available.saturating_mul(2);
            return Ok(false);
        };
        let element = data[self.at..self.at + len].trim_ascii_end();
        match serde_element(element, true) {
            Ok(raw) => {
                self.want = len;
                self.at += len;
                for s in raw {
                    self.keep(s);
                }
                Ok(true)
            }
            Err(message) => Err(self.relocated(data, &message, self.at)),
        }
    }

    /// Files one series of the answer: clipped, sorted and de-duplicated; a summary element
    /// (no metric) is not a series.
    fn keep(&mut self, s: RawSeries) {
        let Some(metric) = s.metric else { return };
        if let Some(asked) = self.asked.as_deref().filter(|&a| a != metric) {
            if self.wrong.is_none() {
                self.wrong = Some(DecodeError::WrongMetric {
                    asked: asked.to_string(),
                    answered: metric,
                });
            }
            return;
        }
        let mut dps = s.dps;
        self.stats.null_values += dps.null_values;
        self.stats.invalid_values += dps.invalid_values;
        let (ts, values, dropped, dups) =
            normalize(&mut dps.ts, &mut dps.values, self.start_ms, self.end_ms);
        self.stats.out_of_window += dropped;
        self.stats.duplicates += dups;
        self.stats.points += ts.len() as u64;
        if !ts.is_empty() {
            self.series.push(SeriesData {
                metric,
                tags: s.tags,
                ts,
                values,
            });
        }
    }

    fn skip_whitespace(&mut self, data: &[u8]) {
        while data
            .get(self.at)
            .is_some_and(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t'))
        {
            self.at += 1;
        }
    }

    /// Drops the decoded bytes once they are most of the buffer (so each byte is moved about
    /// once), keeping the line count for error messages.
    fn compact(&mut self) {
        if self.state == State::Whole || self.at == 0 || self.at * 2 < self.buf.len() {
            return;
        }
        let buf = std::mem::take(&mut self.buf);
        self.consumed(&buf[..self.at]);
        self.buf = buf;
        self.buf.drain(..self.at);
        self.at = 0;
    }

    /// Moves the start of what is held past `done`, the bytes decoded, keeping the line count
    /// for error messages (answers are usually one line: memchr finds none, fast).
    fn consumed(&mut self, done: &[u8]) {
        let lines = memchr::memchr_iter(b'\n', done).count();
        if lines > 0 {
            self.base_line += lines;
            let last = memchr::memrchr(b'\n', done).expect("counted");
            self.base_line_start = self.base + last + 1;
        }
        self.base += done.len();
    }

    /// The line (from 1) and the column (from 0) of `data[at]` in the body (`data` starts at
    /// byte `base`).
    fn position(&self, data: &[u8], at: usize) -> (usize, usize) {
        let before = &data[..at];
        let lines = before.iter().filter(|&&c| c == b'\n').count();
        let line_start = match before.iter().rposition(|&c| c == b'\n') {
            Some(last) => self.base + last + 1,
            None => self.base_line_start,
        };
        (self.base_line + lines, self.base + at - line_start)
    }

    /// A malformed-answer error with `what` at `buf[at]`; `column_shift` 1 names the byte
    /// itself (serde_json's column once it has read the byte), 0 the place before it.
    fn malformed_at(&self, data: &[u8], what: &str, at: usize, column_shift: usize) -> DecodeError {
        let (line, column) = self.position(data, at);
        self.malformed(format!(
            "{what} at line {line} column {}",
            column + column_shift
        ))
    }

    /// serde_json's `message` about `[element]`, the element starting at `buf[at]`, with its
    /// position moved to the element's place in the body.
    fn relocated(&self, data: &[u8], message: &str, at: usize) -> DecodeError {
        let Some((what, line, column)) = split_position(message) else {
            return self.malformed(message.to_string());
        };
        let (element_line, element_column) = self.position(data, at);
        // `[element]` has the `[` before the element on its first line.
        let (line, column) = if line == 1 {
            (element_line, (element_column + column).saturating_sub(1))
        } else {
            (element_line + line - 1, column)
        };
        self.malformed(format!("{what} at line {line} column {column}"))
    }

    fn malformed(&self, message: String) -> DecodeError {
        DecodeError::Malformed {
            message,
            snippet: String::from_utf8_lossy(&self.head).into_owned(),
        }
    }
}

/// serde_json's reading of one element, as the element of an array (`[element]`, or `[element`
/// when the body ends inside it, for the message).
fn serde_element(element: &[u8], closed: bool) -> Result<Vec<RawSeries>, String> {
    let mut wrapped = Vec::with_capacity(element.len() + 2);
    wrapped.push(b'[');
    wrapped.extend_from_slice(element);
    if closed {
        wrapped.push(b']');
    }
    serde_path(&wrapped)
}

/// Splits serde_json's "<what> at line L column C".
fn split_position(message: &str) -> Option<(&str, usize, usize)> {
    let (rest, column) = message.rsplit_once(" column ")?;
    let (what, line) = rest.rsplit_once(" at line ")?;
    Some((what, line.parse().ok()?, column.parse().ok()?))
}

/// The length of the array element at the start of `b`: up to the `,` or `]` that ends it
/// (outside strings and nested values), or `None` when `b` ends first. Brackets are only
/// counted, not matched: an element with mismatched ones is still cut somewhere, and
/// serde_json refuses it.
fn element_end(b: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                loop {
                    match b.get(i)? {
                        b'"' => break,
                        b'\\' => i += 2,
                        _ => i += 1,
                    }
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            b']' if depth == 0 => return Some(i),
            b']' => depth -= 1,
            b',' if depth == 0 => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(
        body: &[u8],
        piece: usize,
    ) -> Result<(Vec<SeriesData>, DecodeStats), DecodeError> {
        let mut s = AnswerStream::new(0, i64::MAX, None);
        for chunk in body.chunks(piece.max(1)) {
            s.push(chunk)?;
        }
        s.finish()
    }

    #[test]
    fn elements_are_found_past_strings_and_nesting() {
        assert_eq!(element_end(br#"{"a":"],}","b":[1,2]} ,"#), Some(22));
        assert_eq!(element_end(br#"{"a":"\"]"}]"#), Some(11));
        assert_eq!(element_end(b"NaN]"), Some(3));
        assert_eq!(element_end(br#"{"a":[1,2"#), None);
        assert_eq!(element_end(br#"{"a":"x\"#), None);
    }

    /// The array's own punctuation is refused with serde_json's words, at the place in the
    /// body where serde_json puts it, whatever the pieces.
    #[test]
    fn punctuation_errors_name_serde_jsons_place() {
        for (body, expected) in [
            ("[{},]", "trailing comma at line 1 column 5"),
            ("[,{}]", "expected value at line 1 column 2"),
            ("[]  x", "trailing characters at line 1 column 5"),
            (
                "[\n{\"metric\":\"m\"} {}]",
                "expected `,` or `]` at line 2 column 16",
            ),
            ("[\n", "EOF while parsing a list at line 2 column 0"),
        ] {
            let whole = serde_path(body.as_bytes())
                .err()
                .expect("serde_json refuses it");
            assert_eq!(whole, expected, "serde_json on {body:?}");
            for piece in [1, 2, 64] {
                let err = decode_in_pieces(body.as_bytes(), piece).unwrap_err();
                assert!(
                    err.to_string().contains(expected),
                    "{body:?} in pieces of {piece}: {err}"
                );
            }
        }
    }

    /// An odd element (an escape) met after plain ones, on a later line, is read by
    /// serde_json and an error in it is reported where the whole body has it.
    #[test]
    fn errors_inside_odd_elements_are_placed_in_the_whole_body() {
        let body =
            "[{\"metric\":\"m\",\"dps\":{\"1\":1}},\n  {\"metric\":\"\\u006d\",\"dps\":{\"2\":x}}]";
        let whole = serde_path(body.as_bytes())
            .err()
            .expect("serde_json refuses it");
        for piece in [1, 3, 7, 1000] {
            let err = decode_in_pieces(body.as_bytes(), piece).unwrap_err();
            assert!(
                err.to_string().contains(&whole),
                "{piece}: {err} vs {whole}"
            );
        }
        let ok =
            "[{\"metric\":\"m\",\"dps\":{\"1\":1}},\n  {\"metric\":\"\\u006d\",\"dps\":{\"2\":2}}]";
        for piece in [1, 3, 7, 1000] {
            let (s, st) = decode_in_pieces(ok.as_bytes(), piece).unwrap();
            assert_eq!((s.len(), st.points), (2, 2));
        }
    }

    /// The buffer holds about one element, not the body: after many elements fed in small
    /// pieces, what is kept is of the size of one element.
    #[test]
    fn memory_holds_about_one_element() {
        let element = r#"{"metric":"m","tags":{"vm":"v"},"dps":{"1":1,"2":2,"3":3}}"#;
        let mut s = AnswerStream::new(0, i64::MAX, None);
        s.push(b"[").unwrap();
        for i in 0..10_000 {
            if i > 0 {
                s.push(b",").unwrap();
            }
            for piece in element.as_bytes().chunks(7) {
                s.push(piece).unwrap();
            }
            assert!(
                s.buf.len() <= 4 * element.len(),
                "{} bytes held",
                s.buf.len()
            );
        }
        s.push(b"]").unwrap();
        let (series, stats) = s.finish().unwrap();
        assert_eq!((series.len(), stats.points), (10_000, 30_000));
    }
}
