//! Answer bodies as they come off the connection: plain or gzip (`Content-Encoding`), decoded
//! while they stream in, under a cap on the *decoded* size, with both byte counts kept.
//!
//! Both HTTP clients (the metrics endpoint and OVHcloud API v6) send `Accept-Encoding: gzip`
//! and read every answer through a [`BodyDecoder`]. reqwest's own `gzip` feature is not used:
//! it decodes inside reqwest's body type, so the client would only see decoded bytes (the bytes
//! that crossed the network, what a WAN link costs, would be lost, as would the
//! `Content-Length` precheck of the cap), and it builds tower-http and async-compression on top
//! of flate2. Here each chunk read from the connection is counted
//! ([`BodyDecoder::wire_bytes`]), then inflated straight into the answer buffer, which never
//! grows past `limit + 1` bytes: a gzip bomb (a few KiB that inflate to GiB) stops at the cap
//! like any other too-large answer, without ever holding more than the cap in memory. A
//! streaming decoder ([`BodyDecoder::streaming`], used for every successful answer) holds no
//! body at all: it hands each chunk, or each 128 KiB inflated block, to the answer's reader
//! (`/api/query` answers are decoded series by series, `super::stream`), the cap still counted
//! on the decoded bytes.
//!
//! The inflater is flate2's low-level [`Decompress`] (raw deflate; the zlib-rs backend, which
//! the Parquet reader of polars already builds). The gzip framing around it (RFC 1952: the
//! header, the CRC-32 and length trailer, concatenated members) is read here: flate2 offers its
//! framing only behind its `Read`/`Write` adapters, which copy through a buffer of their own
//! (and its `Write` decoder reports a stream cut short as corrupt).

use std::sync::atomic::{AtomicU64, Ordering};

use flate2::{Crc, Decompress, FlushDecompress, Status};
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, HeaderMap, HeaderValue};

/// The headers every request carries: `Accept-Encoding: gzip` when `gzip` (`source.gzip`),
/// none otherwise (the server then answers plain; a gzip answer would still be decoded).
pub fn accept_encoding(gzip: bool) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if gzip {
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    }
    headers
}

/// The encoding of an answer, from its `Content-Encoding`.
pub fn content_encoding(headers: &HeaderMap) -> Result<Encoding, BodyError> {
    Encoding::from_header(headers.get(CONTENT_ENCODING).map(|v| v.as_bytes()))
}

/// Why [`read_body`] stopped before the end of the body.
#[derive(Debug)]
pub enum ReadError {
    /// The connection failed: reset, timeout, a chunked body cut short.
    Transport(reqwest::Error),
    /// The decoder refused the body (too large, corrupt).
    Body(BodyError),
}

/// Reads the rest of `resp`'s body into `decoder` chunk by chunk as it arrives, adding each
/// chunk's size to `wire` before decoding it, so that the bytes of a refused or cut body count.
pub async fn read_body(
    resp: &mut reqwest::Response,
    decoder: &mut BodyDecoder,
    wire: &AtomicU64,
) -> Result<(), ReadError> {
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Transport)? {
        wire.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        decoder.push(&chunk).map_err(ReadError::Body)?;
    }
    Ok(())
}

/// [`read_body`] for a [`BodyDecoder::streaming`] decoder: the decoded bytes go to `sink` as
/// they come ([`BodyDecoder::push_to`]), and the end of a gzip stream is checked.
pub async fn stream_body(
    resp: &mut reqwest::Response,
    decoder: &mut BodyDecoder,
    wire: &AtomicU64,
    sink: &mut (dyn FnMut(&[u8]) -> bool + Send),
) -> Result<(), ReadError> {
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Transport)? {
        wire.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        decoder.push_to(&chunk, sink).map_err(ReadError::Body)?;
    }
    decoder.check_complete().map_err(ReadError::Body)
}

/// Initial buffer when the decoded size is unknown.
const INITIAL_CAPACITY: usize = 64 << 10;

/// Inflated bytes handed on at once by a streaming decoder ([`BodyDecoder::streaming`]): what
/// it holds of a gzip body, whatever the body's size.
const STREAM_BLOCK: usize = 128 << 10;

/// Longest gzip member header accepted (an optional extra field of up to 64 KiB, a file name
/// and a comment; servers send 10 bytes).
const MAX_HEADER_BYTES: usize = 128 << 10;

/// How an answer body is encoded, from its `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Sent as is: no `Content-Encoding`, or `identity`.
    Identity,
    /// `gzip` (or its old alias `x-gzip`).
    Gzip,
}

impl Encoding {
    /// The encoding a `Content-Encoding` header value names (`None`: no header, identity).
    /// Anything but identity and gzip is refused: it was never asked for.
    pub fn from_header(value: Option<&[u8]>) -> Result<Encoding, BodyError> {
        let Some(value) = value else {
            return Ok(Encoding::Identity);
        };
        let text = String::from_utf8_lossy(value);
        let name = text.trim();
        if name.is_empty() || name.eq_ignore_ascii_case("identity") {
            Ok(Encoding::Identity)
        } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            Ok(Encoding::Gzip)
        } else {
            Err(BodyError::Unsupported {
                encoding: name.chars().take(64).collect(),
            })
        }
    }
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The decoded body is longer than the cap; it was not read further.
    #[error("the answer decodes to more than {limit} bytes")]
    TooLarge {
        /// The cap on the decoded size, in bytes.
        limit: usize,
    },
    /// The gzip stream is not valid: bad header, bad deflate data, or a CRC-32 or length
    /// that does not match what was decoded.
    #[error("corrupt gzip body ({message}) after {wire} bytes received")]
    Corrupt {
        /// Bytes received when the error was found.
        wire: u64,
        /// What is wrong.
        message: String,
    },
    /// The reader the decoded bytes were handed to refused them ([`BodyDecoder::push_to`]);
    /// it knows why.
    #[error("the answer's reader stopped")]
    Stopped,
    /// The body ended before the end of its gzip stream (a body cut short).
    #[error(
        "the gzip body ended before its end of stream ({wire} bytes received, {decoded} decoded)"
    )]
    Truncated {
        /// Bytes received.
        wire: u64,
        /// Bytes decoded from them.
        decoded: u64,
    },
    /// A `Content-Encoding` other than gzip or identity.
    #[error("unsupported Content-Encoding '{encoding}' (only gzip is asked for)")]
    Unsupported {
        /// The header's value (at most 64 characters).
        encoding: String,
    },
}

/// Decodes one answer body chunk by chunk as it is read: appended as is ([`Encoding::Identity`])
/// or inflated ([`Encoding::Gzip`]), into one buffer that holds at most `limit` bytes of
/// answer (`limit + 1` while inflating, the byte that proves the answer too large).
#[derive(Debug)]
pub struct BodyDecoder {
    out: Vec<u8>,
    limit: usize,
    wire: u64,
    /// Decoded bytes already handed on ([`BodyDecoder::push_to`]): they count against the cap.
    handed: usize,
    gzip: Option<Box<GzipState>>,
}

/// Takes decoded bytes as they come; `false` stops the reading ([`BodyError::Stopped`]).
pub type Sink<'s> = &'s mut dyn FnMut(&[u8]) -> bool;

/// Where decoded bytes go: kept in `buf` (the whole body), or, with a sink, handed on each
/// time `buf` fills and at the end of each chunk.
struct Out<'a, 's> {
    buf: &'a mut Vec<u8>,
    limit: usize,
    handed: &'a mut usize,
    sink: Option<Sink<'s>>,
}

impl Out<'_, '_> {
    /// Decoded bytes so far, handed on or held.
    fn total(&self) -> usize {
        *self.handed + self.buf.len()
    }

    /// Hands what `buf` holds to the sink (with one), once it is known to be within the cap.
    fn flush(&mut self) -> Result<(), BodyError> {
        let total = self.total();
        let Some(sink) = self.sink.as_mut() else {
            return Ok(());
        };
        if total > self.limit {
            return Err(BodyError::TooLarge { limit: self.limit });
        }
        if !self.buf.is_empty() {
            if !sink(self.buf) {
                return Err(BodyError::Stopped);
            }
            *self.handed += self.buf.len();
            self.buf.clear();
        }
        Ok(())
    }
}

/// Where the gzip reader is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Reading a member header (bytes gathered in `GzipState::pending`).
    Header,
    /// Inflating a member's deflate data.
    Deflate,
    /// Reading a member's 8-byte trailer (gathered in `GzipState::pending`).
    Trailer,
}

/// The gzip side of a [`BodyDecoder`].
struct GzipState {
    stage: Stage,
    /// Header or trailer bytes received so far.
    pending: Vec<u8>,
    inflate: Decompress,
    /// CRC-32 and length of the current member's decoded bytes.
    crc: Crc,
    /// Members fully read and checked.
    members: u32,
}

impl std::fmt::Debug for GzipState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzipState")
            .field("stage", &self.stage)
            .field("members", &self.members)
            .finish_non_exhaustive()
    }
}

impl BodyDecoder {
    /// A decoder of a body in `encoding` that refuses to hold more than `limit` decoded bytes.
    /// `announced` is the `Content-Length` (the size on the wire), used to size the buffer.
    pub fn new(encoding: Encoding, limit: usize, announced: Option<u64>) -> BodyDecoder {
        let hint = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let (capacity, gzip) = match encoding {
            Encoding::Identity => (announced.map_or(INITIAL_CAPACITY, hint).min(limit), None),
            Encoding::Gzip => (
                // Our JSON inflates about 4 times; the buffer doubles from there if needed.
                announced
                    .map_or(INITIAL_CAPACITY, |n| hint(n).saturating_mul(4))
                    .min(limit.saturating_add(1)),
                Some(Box::new(GzipState {
                    stage: Stage::Header,
                    pending: Vec::new(),
                    inflate: Decompress::new(false),
                    crc: Crc::new(),
                    members: 0,
                })),
            ),
        };
        BodyDecoder {
            out: Vec::with_capacity(capacity),
            limit,
            wire: 0,
            handed: 0,
            gzip,
        }
    }

    /// A decoder that keeps no body: its decoded bytes are handed on as they come
    /// ([`BodyDecoder::push_to`]), a plain chunk as received, a gzip body in blocks of at most
    /// 128 KiB, so what it holds does not depend on the size of the answer.
    pub fn streaming(encoding: Encoding, limit: usize) -> BodyDecoder {
        let mut decoder = BodyDecoder::new(encoding, limit, Some(0));
        if encoding == Encoding::Gzip {
            decoder.out = Vec::with_capacity(STREAM_BLOCK.min(limit.saturating_add(1)));
        }
        decoder
    }

    /// Takes the next chunk read from the connection. After an error the decoder must not be
    /// fed again; what was decoded so far stays readable ([`BodyDecoder::decoded`]).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), BodyError> {
        self.push_into(chunk, None)
    }

    /// Takes the next chunk read from the connection and hands what it decodes to `sink`
    /// before returning (`false` from the sink stops the reading: [`BodyError::Stopped`]).
    /// Nothing past the cap is ever handed on.
    pub fn push_to(
        &mut self,
        chunk: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), BodyError> {
        self.push_into(chunk, Some(sink))
    }

    fn push_into(&mut self, chunk: &[u8], sink: Option<Sink<'_>>) -> Result<(), BodyError> {
        self.wire += chunk.len() as u64;
        let mut out = Out {
            buf: &mut self.out,
            limit: self.limit,
            handed: &mut self.handed,
            sink,
        };
        match self.gzip.as_deref_mut() {
            None => push_identity(&mut out, chunk),
            Some(g) => {
                g.push(chunk, &mut out, self.wire)?;
                out.flush()
            }
        }
    }

    /// That the body is complete, once the connection has delivered everything: a gzip body
    /// must have ended with a complete, checked member.
    pub fn check_complete(&self) -> Result<(), BodyError> {
        match self.gzip.as_deref() {
            None => Ok(()),
            Some(g) if g.stage == Stage::Header && g.pending.is_empty() && g.members > 0 => Ok(()),
            Some(_) => Err(BodyError::Truncated {
                wire: self.wire,
                decoded: (self.handed + self.out.len()) as u64,
            }),
        }
    }

    /// The whole decoded body, once the connection has delivered everything
    /// ([`BodyDecoder::check_complete`]).
    pub fn finish(self) -> Result<Vec<u8>, BodyError> {
        self.check_complete().map(|()| self.out)
    }

    /// What was decoded so far (at most `limit` bytes of it matter): the start of an error
    /// page, even when the page is longer than the cap or its stream is broken.
    pub fn decoded(&self) -> &[u8] {
        &self.out[..self.out.len().min(self.limit)]
    }

    /// Bytes received from the connection so far (compressed, when gzip).
    pub fn wire_bytes(&self) -> u64 {
        self.wire
    }
}

/// Appends a plain chunk: up to the cap, then [`BodyError::TooLarge`] (the start is kept for
/// error pages). The buffer doubles as needed, never past the cap. With a sink, the chunk is
/// handed on as it is, unless it goes past the cap.
fn push_identity(out: &mut Out<'_, '_>, chunk: &[u8]) -> Result<(), BodyError> {
    let limit = out.limit;
    let needed = out.total().saturating_add(chunk.len());
    if let Some(sink) = out.sink.as_mut() {
        if needed > limit {
            return Err(BodyError::TooLarge { limit });
        }
        if !sink(chunk) {
            return Err(BodyError::Stopped);
        }
        *out.handed = needed;
        return Ok(());
    }
    let buf = &mut *out.buf;
    let take = chunk.len().min(limit - buf.len());
    if needed.min(limit) > buf.capacity() {
        let grown = (buf.capacity() * 2).max(needed).min(limit);
        buf.reserve_exact(grown - buf.len());
    }
    buf.extend_from_slice(&chunk[..take]);
    if needed > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(())
}

impl GzipState {
    fn push(
        &mut self,
        mut input: &[u8],
        out: &mut Out<'_, '_>,
        wire: u64,
    ) -> Result<(), BodyError> {
        let corrupt = |message: String| BodyError::Corrupt { wire, message };
        while !input.is_empty() {
            input = match self.stage {
                Stage::Header => {
                    // Parsed in place when the chunk holds it whole (the usual case), else
                    // gathered across chunks.
                    let before = self.pending.len();
                    let parsed = if before == 0 {
                        header_len(input)
                    } else {
                        self.pending.extend_from_slice(input);
                        header_len(&self.pending)
                    };
                    match parsed.map_err(corrupt)? {
                        Some(len) => {
                            self.pending.clear();
                            self.stage = Stage::Deflate;
                            &input[len - before..]
                        }
                        None => {
                            if before == 0 {
                                self.pending.extend_from_slice(input);
                            }
                            if self.pending.len() > MAX_HEADER_BYTES {
                                return Err(corrupt(format!(
                                    "a member header longer than {MAX_HEADER_BYTES} bytes"
                                )));
                            }
                            &[]
                        }
                    }
                }
                Stage::Deflate => self.inflate(input, out, wire)?,
                Stage::Trailer => self.trailer(input, wire)?,
            };
        }
        Ok(())
    }

    /// Inflates `input` into `out`, growing its buffer up to `limit + 1` bytes (or, with a
    /// sink, handing the buffer on each time it is full); returns the input left after the end
    /// of the deflate stream (the trailer and beyond), empty otherwise.
    fn inflate<'a>(
        &mut self,
        mut input: &'a [u8],
        out: &mut Out<'_, '_>,
        wire: u64,
    ) -> Result<&'a [u8], BodyError> {
        let limit = out.limit;
        let ceiling = limit.saturating_add(1);
        loop {
            if out.buf.len() == out.buf.capacity() {
                if out.sink.is_some() && !out.buf.is_empty() {
                    out.flush()?;
                } else {
                    // Never full at the ceiling: that is one byte over the cap, refused below.
                    let grown = (out.buf.capacity() * 2).max(INITIAL_CAPACITY).min(ceiling);
                    out.buf.reserve_exact(grown - out.buf.len());
                }
            }
            let handed = *out.handed;
            let out = &mut *out.buf;
            let (in_before, len_before) = (self.inflate.total_in(), out.len());
            let status = self
                .inflate
                .decompress_vec(input, out, FlushDecompress::None)
                .map_err(|e| BodyError::Corrupt {
                    wire,
                    message: e.to_string(),
                })?;
            let used = (self.inflate.total_in() - in_before) as usize;
            input = &input[used..];
            self.crc.update(&out[len_before..]);
            if handed + out.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            if status == Status::StreamEnd {
                self.stage = Stage::Trailer;
                return Ok(input);
            }
            let full = out.len() == out.capacity();
            if !full && input.is_empty() {
                // Everything inflated: wait for the next chunk.
                return Ok(input);
            }
            if !full && used == 0 && out.len() == len_before {
                return Err(BodyError::Corrupt {
                    wire,
                    message: "the deflate stream makes no progress".into(),
                });
            }
            // The buffer is full: grow it and let the inflater drain what it holds.
        }
    }

    /// Gathers the 8-byte trailer from `input` and, once complete, checks it and gets ready for
    /// another member. Returns the input left after it.
    fn trailer<'a>(&mut self, input: &'a [u8], wire: u64) -> Result<&'a [u8], BodyError> {
        let take = (8 - self.pending.len()).min(input.len());
        self.pending.extend_from_slice(&input[..take]);
        if self.pending.len() < 8 {
            return Ok(&[]);
        }
        let word = |i: usize| {
            u32::from_le_bytes([
                self.pending[i],
                self.pending[i + 1],
                self.pending[i + 2],
                self.pending[i + 3],
            ])
        };
        let (crc, size) = (word(0), word(4));
        if crc != self.crc.sum() {
            return Err(BodyError::Corrupt {
                wire,
                message: format!(
                    "CRC-32 {:08x} of the decoded data, the trailer says {crc:08x}",
                    self.crc.sum()
                ),
            });
        }
        if size != self.crc.amount() {
            return Err(BodyError::Corrupt {
                wire,
                message: format!(
                    "{} bytes decoded (mod 2^32), the trailer says {size}",
                    self.crc.amount()
                ),
            });
        }
        self.members += 1;
        self.pending.clear();
        self.stage = Stage::Header;
        self.inflate.reset(false);
        self.crc.reset();
        Ok(&input[take..])
    }
}

/// The length of the gzip member header at the start of `h` (RFC 1952 §2.3), `None` while it is
/// incomplete, or what makes it invalid.
fn header_len(h: &[u8]) -> Result<Option<usize>, String> {
    const FHCRC: u8 = 0x02;
    const FEXTRA: u8 = 0x04;
    const FNAME: u8 = 0x08;
    const FCOMMENT: u8 = 0x10;
    if h.first().is_some_and(|b| *b != 0x1f) || h.get(1).is_some_and(|b| *b != 0x8b) {
        let start = String::from_utf8_lossy(&h[..h.len().min(24)]).into_owned();
        return Err(format!("not a gzip stream: it starts with {start:?}"));
    }
    if h.len() < 10 {
        return Ok(None);
    }
    if h[2] != 8 {
        return Err(format!("compression method {} is not deflate", h[2]));
    }
    let flags = h[3];
    if flags & 0xe0 != 0 {
        return Err(format!("reserved header flags set ({flags:#04x})"));
    }
    let mut pos = 10;
    if flags & FEXTRA != 0 {
        let Some(len) = h.get(pos..pos + 2) else {
            return Ok(None);
        };
        pos += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
        if h.len() < pos {
            return Ok(None);
        }
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            match h[pos..].iter().position(|b| *b == 0) {
                Some(zero) => pos += zero + 1,
                None => return Ok(None),
            }
        }
    }
    if flags & FHCRC != 0 {
        let Some(sum) = h.get(pos..pos + 2) else {
            return Ok(None);
        };
        let mut crc = Crc::new();
        crc.update(&h[..pos]);
        if u16::from_le_bytes([sum[0], sum[1]]) != (crc.sum() & 0xffff) as u16 {
            return Err("the header CRC does not match".into());
        }
        pos += 2;
    }
    Ok(Some(pos))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A JSON-like answer of about `n` bytes.
    fn answer(n: usize) -> Vec<u8> {
        let mut s = String::from("[{\"metric\":\"vscope.vm.cpu.usage.perc\",\"dps\":{");
        let mut i = 0u64;
        while s.len() < n {
            s.push_str(&format!(
                "\"{}\":{}.{},",
                1_793_491_200 + i * 60,
                i % 89,
                i % 7
            ));
            i += 1;
        }
        s.push_str("}}]");
        s.into_bytes()
    }

    /// Feeds `body` in chunks of `size` bytes, then finishes.
    fn decode(
        encoding: Encoding,
        body: &[u8],
        size: usize,
        limit: usize,
    ) -> Result<Vec<u8>, BodyError> {
        let mut d = BodyDecoder::new(encoding, limit, None);
        for chunk in body.chunks(size) {
            d.push(chunk)?;
        }
        assert_eq!(d.wire_bytes(), body.len() as u64);
        d.finish()
    }

    #[test]
    fn content_encoding_names_are_read() {
        assert_eq!(Encoding::from_header(None), Ok(Encoding::Identity));
        assert_eq!(
            Encoding::from_header(Some(b"identity")),
            Ok(Encoding::Identity)
        );
        assert_eq!(Encoding::from_header(Some(b" GZip ")), Ok(Encoding::Gzip));
        assert_eq!(Encoding::from_header(Some(b"x-gzip")), Ok(Encoding::Gzip));
        let e = Encoding::from_header(Some(b"br")).unwrap_err();
        assert!(e.to_string().contains("'br'"), "{e}");
    }

    /// Plain bodies: passed through whatever the chunking, up to exactly the cap; one byte
    /// more is refused, and the start of the body stays readable.
    #[test]
    fn identity_bodies_pass_through_up_to_the_cap() {
        let body = answer(10_000);
        for size in [1, 7, 4096, body.len()] {
            assert_eq!(
                decode(Encoding::Identity, &body, size, body.len()).unwrap(),
                body
            );
        }
        let mut d = BodyDecoder::new(Encoding::Identity, body.len() - 1, None);
        assert_eq!(
            d.push(&body),
            Err(BodyError::TooLarge {
                limit: body.len() - 1
            })
        );
        assert_eq!(d.decoded(), &body[..body.len() - 1]);
        assert!(d.out.capacity() < body.len(), "never more than the cap");
    }

    /// gzip bodies decode to the same bytes whatever the chunking (a header split over many
    /// chunks included), and much fewer bytes travel.
    #[test]
    fn gzip_bodies_decode_whatever_the_chunking() {
        let body = answer(300_000);
        let packed = gzip(&body);
        assert!(packed.len() * 3 < body.len(), "{} bytes", packed.len());
        for size in [1, 3, 11, 1000, 16 << 10, packed.len()] {
            assert!(
                decode(Encoding::Gzip, &packed, size, body.len()).unwrap() == body,
                "chunks of {size}"
            );
        }
    }

    /// A gzip body decoding to exactly the cap is taken; one byte less of cap refuses it.
    #[test]
    fn the_cap_applies_to_the_decoded_size() {
        let body = answer(200_000);
        let packed = gzip(&body);
        assert!(decode(Encoding::Gzip, &packed, 4096, body.len()).unwrap() == body);
        assert_eq!(
            decode(Encoding::Gzip, &packed, 4096, body.len() - 1),
            Err(BodyError::TooLarge {
                limit: body.len() - 1
            })
        );
    }

    /// A gzip bomb (256 MiB of zeros in a quarter of a MiB) stops at the cap: the buffer never
    /// grows past it and the rest of the body is not read.
    #[test]
    fn a_gzip_bomb_stops_at_the_cap_without_growing_memory() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..256 {
            e.write_all(&zeros).unwrap();
        }
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
        let limit = 4 << 20;
        let mut d = BodyDecoder::new(Encoding::Gzip, limit, Some(bomb.len() as u64));
        let mut refused = None;
        for chunk in bomb.chunks(16 << 10) {
            if let Err(e) = d.push(chunk) {
                refused = Some(e);
                break;
            }
        }
        assert_eq!(refused, Some(BodyError::TooLarge { limit }));
        assert!(d.out.capacity() <= limit + 1, "{}", d.out.capacity());
        assert!(
            d.wire_bytes() < bomb.len() as u64 / 8,
            "stopped early: {} of {} bytes read",
            d.wire_bytes(),
            bomb.len()
        );
    }

    /// Damaged streams are refused with what is wrong: not gzip at all, bad deflate data, a
    /// trailer that does not match; a stream cut short is `Truncated`, as is an empty body.
    #[test]
    fn corrupt_and_cut_streams_are_refused() {
        let body = answer(50_000);
        let packed = gzip(&body);
        let corrupt = |r: Result<Vec<u8>, BodyError>| match r {
            Err(BodyError::Corrupt { message, .. }) => message,
            other => panic!("expected Corrupt, got {other:?}"),
        };
        // An HTML page sent as gzip.
        let m = corrupt(decode(Encoding::Gzip, b"<html>oops</html>", 64, 1 << 20));
        assert!(
            m.contains("not a gzip stream") && m.contains("<html>"),
            "{m}"
        );
        // A flipped CRC byte in the trailer.
        let mut bad_crc = packed.clone();
        let n = bad_crc.len();
        bad_crc[n - 8] ^= 0xff;
        assert!(corrupt(decode(Encoding::Gzip, &bad_crc, 4096, 1 << 20)).contains("CRC"));
        // A wrong length in the trailer.
        let mut bad_len = packed.clone();
        bad_len[n - 1] ^= 0x01;
        assert!(corrupt(decode(Encoding::Gzip, &bad_len, 4096, 1 << 20)).contains("trailer"));
        // Garbage in the deflate data: a deflate error, or a CRC error if it still inflates, or
        // a stream that never ends; never a clean answer.
        let mut garbage = packed.clone();
        for b in &mut garbage[20..60] {
            *b = 0xff;
        }
        assert!(matches!(
            decode(Encoding::Gzip, &garbage, 4096, 1 << 20),
            Err(BodyError::Corrupt { .. } | BodyError::Truncated { .. })
        ));
        // Not deflate.
        let mut method = packed.clone();
        method[2] = 7;
        assert!(corrupt(decode(Encoding::Gzip, &method, 4096, 1 << 20)).contains("method"));
        // Cut anywhere before the end of the trailer.
        for cut in [0, 5, 10, packed.len() / 2, packed.len() - 1] {
            match decode(Encoding::Gzip, &packed[..cut], 4096, 1 << 20) {
                Err(BodyError::Truncated { wire, .. }) => assert_eq!(wire, cut as u64),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    /// Concatenated members are one body (RFC 1952 §2.2); optional header fields (extra field,
    /// name, comment, header CRC) are skipped; data after the last member that is not another
    /// member is corrupt.
    #[test]
    fn members_and_optional_header_fields_are_read() {
        let (a, b) = (answer(5_000), answer(7_000));
        let mut two = gzip(&a);
        let mut e = flate2::GzBuilder::new()
            .filename("answer.json")
            .comment("vscope")
            .extra(vec![1, 2, 3, 4])
            .write(Vec::new(), flate2::Compression::fast());
        e.write_all(&b).unwrap();
        two.extend(e.finish().unwrap());
        for size in [1, 13, two.len()] {
            let got = decode(Encoding::Gzip, &two, size, 1 << 20).unwrap();
            assert!(
                got.len() == a.len() + b.len()
                    && got[..a.len()] == a[..]
                    && got[a.len()..] == b[..]
            );
        }
        // A header with FHCRC, written by hand: flags 0x02, then the CRC-16 of the 10 bytes.
        let plain = gzip(&a);
        let mut head = plain[..10].to_vec();
        head[3] = 0x02;
        let mut crc = Crc::new();
        crc.update(&head);
        let mut with_hcrc = head.clone();
        with_hcrc.extend_from_slice(&((crc.sum() & 0xffff) as u16).to_le_bytes());
        with_hcrc.extend_from_slice(&plain[10..]);
        assert!(decode(Encoding::Gzip, &with_hcrc, 5, 1 << 20).unwrap() == a);
        let mut bad_hcrc = with_hcrc.clone();
        bad_hcrc[10] ^= 1;
        assert!(matches!(
            decode(Encoding::Gzip, &bad_hcrc, 5, 1 << 20),
            Err(BodyError::Corrupt { .. })
        ));
        let mut trailing = gzip(&a);
        trailing.extend_from_slice(b"\0\0\0\0");
        assert!(matches!(
            decode(Encoding::Gzip, &trailing, 4096, 1 << 20),
            Err(BodyError::Corrupt { .. })
        ));
    }
}
