//! SPDY/3.1 frames on the wire (draft-mbelshe-httpbis-spdy-00 with the 3.1 flow-control
//! changes) and the zlib header-block codec.
//!
//! A control frame is `1 | version(15) | type(16) | flags(8) | length(24) | payload`; a data frame
//! is `0 | stream-id(31) | flags(8) | length(24) | data`. The header blocks of SYN_STREAM,
//! SYN_REPLY and HEADERS are compressed with zlib, ONE compression context per direction for the
//! whole session, primed with the protocol's fixed dictionary: a block can only be decoded after
//! every earlier block of the same direction, in wire order. That is why the encoder and decoder
//! here are stateful and owned by exactly one writer and one reader.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::SpdyError;

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;

pub const TYPE_SYN_STREAM: u16 = 1;
pub const TYPE_SYN_REPLY: u16 = 2;
pub const TYPE_RST_STREAM: u16 = 3;
pub const TYPE_SETTINGS: u16 = 4;
pub const TYPE_PING: u16 = 6;
pub const TYPE_GOAWAY: u16 = 7;
pub const TYPE_HEADERS: u16 = 8;
pub const TYPE_WINDOW_UPDATE: u16 = 9;

/// FIN on data frames, SYN_STREAM, SYN_REPLY and HEADERS: the sender's half of the stream ends.
pub const FLAG_FIN: u8 = 0x01;
/// SYN_STREAM only: the receiver must not send on this stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// SETTINGS only.
pub const FLAG_SETTINGS_CLEAR: u8 = 0x01;

/// RST_STREAM status codes.
pub mod status {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const UNSUPPORTED_VERSION: u32 = 4;
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
    pub const FLOW_CONTROL_ERROR: u32 = 7;
    pub const STREAM_IN_USE: u32 = 8;
    pub const STREAM_ALREADY_CLOSED: u32 = 9;
    pub const FRAME_TOO_LARGE: u32 = 11;
}

/// GOAWAY status codes.
pub const GOAWAY_OK: u32 = 0;
pub const GOAWAY_PROTOCOL_ERROR: u32 = 1;

/// The SETTINGS id that matters to a session here (the others are advisory).
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

/// The initial stream and session window of SPDY/3.1 (64 KiB).
pub const DEFAULT_WINDOW: u32 = 64 * 1024;
/// Largest payload the 24-bit length field can describe.
pub const MAX_PAYLOAD: usize = 0x00ff_ffff;
/// A decompressed header block larger than this is refused: the kubernetes peers send a handful
/// of short headers, and a zlib bomb must not exhaust memory.
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Header names (lower case on the wire) and values, in order. A name repeated here is sent once
/// with its values NUL-separated, as the protocol requires.
pub type Headers = Vec<(String, String)>;

/// A header's first value, by case-insensitive name.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data { stream_id: u32, fin: bool, data: Bytes },
    SynStream { stream_id: u32, associated_to: u32, priority: u8, unidirectional: bool, fin: bool, headers: Headers },
    SynReply { stream_id: u32, fin: bool, headers: Headers },
    RstStream { stream_id: u32, status: u32 },
    Settings { clear: bool, entries: Vec<Setting> },
    Ping { id: u32 },
    GoAway { last_good_stream_id: u32, status: u32 },
    Headers { stream_id: u32, fin: bool, headers: Headers },
    WindowUpdate { stream_id: u32, delta: u32 },
    /// A control frame type this implementation does not interpret (CREDENTIAL, or an
    /// extension): the protocol says to ignore it.
    Unknown { kind: u16, flags: u8, payload: Bytes },
}

/// The SPDY/3 header-compression dictionary (a protocol constant, 1423 bytes): length-prefixed
/// common header names and values, then a run of common text. zlib peers check its Adler-32
/// (0xe3c6a7c2) in the stream header, so it must be byte-exact.
pub fn dictionary() -> &'static [u8] {
    static DICTIONARY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DICTIONARY.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding", "accept-language",
            "accept-ranges", "age", "allow", "authorization", "cache-control", "connection", "content-base", "content-encoding",
            "content-language", "content-length", "content-location", "content-md5", "content-range", "content-type", "date", "etag",
            "expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since",
            "last-modified", "location", "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
            "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
            "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive",
            "origin",
        ];
        const TEXT: &str = concat!(
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized",
            "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable",
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
            "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        );
        let mut bytes = Vec::with_capacity(1423);
        for word in WORDS {
            bytes.extend_from_slice(&(word.len() as u32).to_be_bytes());
            bytes.extend_from_slice(word.as_bytes());
        }
        bytes.extend_from_slice(TEXT.as_bytes());
        bytes
    })
}

/// Serializes a header block (before compression): count, then length-prefixed names and values.
fn raw_header_block(headers: &Headers) -> Vec<u8> {
    // Merge repeated names (case-insensitively): Go's framer rejects a block naming a header twice.
    let mut merged: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                existing.push('\0');
                existing.push_str(value);
            }
            None => merged.push((name, value.clone())),
        }
    }
    let mut raw = Vec::with_capacity(4 + merged.iter().map(|(n, v)| 8 + n.len() + v.len()).sum::<usize>());
    raw.extend_from_slice(&(merged.len() as u32).to_be_bytes());
    for (name, value) in &merged {
        raw.extend_from_slice(&(name.len() as u32).to_be_bytes());
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(&(value.len() as u32).to_be_bytes());
        raw.extend_from_slice(value.as_bytes());
    }
    raw
}

fn parse_raw_header_block(mut raw: &[u8]) -> Result<Headers, SpdyError> {
    fn take<'a>(raw: &mut &'a [u8]) -> Result<&'a [u8], SpdyError> {
        if raw.len() < 4 {
            return Err(SpdyError::Protocol("truncated header block".into()));
        }
        let length = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
        if raw.len() - 4 < length {
            return Err(SpdyError::Protocol("truncated header block".into()));
        }
        let (field, rest) = raw[4..].split_at(length);
        *raw = rest;
        Ok(field)
    }
    if raw.len() < 4 {
        return Err(SpdyError::Protocol("truncated header block".into()));
    }
    let count = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
    raw = &raw[4..];
    // Every pair takes at least 8 bytes: a count larger than that is a lie, not an allocation hint.
    if count as usize > raw.len() / 8 {
        return Err(SpdyError::Protocol(format!("header block claims {count} headers in {} bytes", raw.len())));
    }
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        // Names arrive lower case from conforming peers; lowering again is harmless.
        let name = String::from_utf8_lossy(take(&mut raw)?).to_ascii_lowercase();
        let value = String::from_utf8_lossy(take(&mut raw)?).into_owned();
        for value in value.split('\0') {
            headers.push((name.clone(), value.to_owned()));
        }
    }
    Ok(headers)
}

/// Compresses header blocks for one direction of a session.
pub struct HeaderEncoder {
    zlib: flate2::Compress,
}

impl Default for HeaderEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderEncoder {
    pub fn new() -> Self {
        let mut zlib = flate2::Compress::new(flate2::Compression::default(), true);
        // Set before the first byte, the dictionary's id goes into the zlib header (FDICT), which
        // is how Go's reader knows to use it; a failure here means a broken zlib build, and the
        // first encode reports it.
        let _ = zlib.set_dictionary(dictionary());
        Self { zlib }
    }

    /// One header block, ended with a zlib sync flush so the peer can decode it on its own.
    pub fn encode(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let raw = raw_header_block(headers);
        let mut out = Vec::with_capacity(raw.len() / 2 + 64);
        let mut input = &raw[..];
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let before = self.zlib.total_in();
            self.zlib
                .compress_vec(input, &mut out, flate2::FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(format!("header compression: {e}")))?;
            input = &input[(self.zlib.total_in() - before) as usize..];
            // zlib finished the flush when it consumed everything and still had output room.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Decompresses header blocks for one direction of a session.
pub struct HeaderDecoder {
    zlib: flate2::Decompress,
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecoder {
    pub fn new() -> Self {
        Self { zlib: flate2::Decompress::new(true) }
    }

    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        if block.is_empty() {
            // Nothing was compressed; the context is untouched on both sides.
            return Ok(Vec::new());
        }
        let mut raw = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            if raw.capacity() - raw.len() < 256 {
                raw.reserve(1024);
            }
            let (before_in, before_out) = (self.zlib.total_in(), self.zlib.total_out());
            let mut dictionary_set = false;
            match self.zlib.decompress_vec(input, &mut raw, flate2::FlushDecompress::Sync) {
                Ok(_) => {}
                // The zlib header names a preset dictionary: the session's first block.
                Err(error) if error.needs_dictionary().is_some() => {
                    self.zlib
                        .set_dictionary(dictionary())
                        .map_err(|e| SpdyError::Compression(format!("header dictionary: {e}")))?;
                    dictionary_set = true;
                }
                Err(error) => return Err(SpdyError::Compression(format!("header decompression: {error}"))),
            }
            let consumed = (self.zlib.total_in() - before_in) as usize;
            let produced = self.zlib.total_out() - before_out;
            input = &input[consumed..];
            if raw.len() > MAX_HEADER_BLOCK {
                return Err(SpdyError::Protocol(format!("header block larger than {MAX_HEADER_BLOCK} bytes")));
            }
            // Done when zlib took everything and still had output room (nothing left pending).
            if input.is_empty() && raw.len() < raw.capacity() {
                break;
            }
            if consumed == 0 && produced == 0 && !dictionary_set {
                return Err(SpdyError::Compression("header block does not decompress".into()));
            }
        }
        parse_raw_header_block(&raw)
    }
}

fn control_header(out: &mut BytesMut, kind: u16, flags: u8, length: usize) -> Result<(), SpdyError> {
    if length > MAX_PAYLOAD {
        return Err(SpdyError::Protocol(format!("control frame of {length} bytes")));
    }
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u8(flags);
    out.put_uint(length as u64, 3);
    Ok(())
}

/// Turns frames into bytes; owns the sending direction's compression context.
#[derive(Default)]
pub struct FrameEncoder {
    headers: HeaderEncoder,
}

impl FrameEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
        let fin = |fin: bool| if fin { FLAG_FIN } else { 0 };
        match frame {
            Frame::Data { stream_id, fin: is_fin, data } => {
                if data.len() > MAX_PAYLOAD {
                    return Err(SpdyError::Protocol(format!("data frame of {} bytes", data.len())));
                }
                out.reserve(8 + data.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u8(fin(*is_fin));
                out.put_uint(data.len() as u64, 3);
                out.put_slice(data);
            }
            Frame::SynStream { stream_id, associated_to, priority, unidirectional, fin: is_fin, headers } => {
                let block = self.headers.encode(headers)?;
                let flags = fin(*is_fin) | if *unidirectional { FLAG_UNIDIRECTIONAL } else { 0 };
                control_header(out, TYPE_SYN_STREAM, flags, 10 + block.len())?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(associated_to & 0x7fff_ffff);
                out.put_u8((priority & 0x07) << 5);
                out.put_u8(0); // credential slot: unused
                out.put_slice(&block);
            }
            Frame::SynReply { stream_id, fin: is_fin, headers } => {
                let block = self.headers.encode(headers)?;
                control_header(out, TYPE_SYN_REPLY, fin(*is_fin), 4 + block.len())?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_slice(&block);
            }
            Frame::Headers { stream_id, fin: is_fin, headers } => {
                let block = self.headers.encode(headers)?;
                control_header(out, TYPE_HEADERS, fin(*is_fin), 4 + block.len())?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control_header(out, TYPE_RST_STREAM, 0, 8)?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::Settings { clear, entries } => {
                control_header(out, TYPE_SETTINGS, if *clear { FLAG_SETTINGS_CLEAR } else { 0 }, 4 + 8 * entries.len())?;
                out.put_u32(entries.len() as u32);
                for entry in entries {
                    out.put_u8(entry.flags);
                    out.put_uint(u64::from(entry.id & 0x00ff_ffff), 3);
                    out.put_u32(entry.value);
                }
            }
            Frame::Ping { id } => {
                control_header(out, TYPE_PING, 0, 4)?;
                out.put_u32(*id);
            }
            Frame::GoAway { last_good_stream_id, status } => {
                control_header(out, TYPE_GOAWAY, 0, 8)?;
                out.put_u32(last_good_stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_header(out, TYPE_WINDOW_UPDATE, 0, 8)?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(delta & 0x7fff_ffff);
            }
            Frame::Unknown { kind, flags, payload } => {
                control_header(out, *kind, *flags, payload.len())?;
                out.put_slice(payload);
            }
        }
        Ok(())
    }
}

/// Turns bytes into frames; owns the receiving direction's decompression context.
#[derive(Default)]
pub struct FrameDecoder {
    headers: HeaderDecoder,
}

fn need(payload: &Bytes, length: usize, what: &str) -> Result<(), SpdyError> {
    if payload.len() < length {
        return Err(SpdyError::Protocol(format!("{what} frame of {} bytes is too short", payload.len())));
    }
    Ok(())
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next whole frame from the front of `buffer`, or None until more bytes arrive.
    pub fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buffer.len() < 8 {
            return Ok(None);
        }
        let length = u32::from_be_bytes([0, buffer[5], buffer[6], buffer[7]]) as usize;
        if buffer.len() < 8 + length {
            buffer.reserve(8 + length - buffer.len());
            return Ok(None);
        }
        let head = buffer.split_to(8);
        let mut payload = buffer.split_to(length).freeze();
        let flags = head[4];
        if head[0] & 0x80 == 0 {
            let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
            if stream_id == 0 {
                return Err(SpdyError::Protocol("data frame on stream 0".into()));
            }
            return Ok(Some(Frame::Data { stream_id, fin: flags & FLAG_FIN != 0, data: payload }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Err(SpdyError::Protocol(format!("SPDY version {version}; only 3 is spoken")));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let fin = flags & FLAG_FIN != 0;
        let frame = match kind {
            TYPE_SYN_STREAM => {
                need(&payload, 10, "SYN_STREAM")?;
                let stream_id = payload.get_u32() & 0x7fff_ffff;
                let associated_to = payload.get_u32() & 0x7fff_ffff;
                let priority = payload.get_u8() >> 5;
                payload.advance(1);
                // Decode before any check that could skip it: the context must stay in step.
                let headers = self.headers.decode(&payload)?;
                if stream_id == 0 {
                    return Err(SpdyError::Protocol("SYN_STREAM for stream 0".into()));
                }
                Frame::SynStream { stream_id, associated_to, priority, unidirectional: flags & FLAG_UNIDIRECTIONAL != 0, fin, headers }
            }
            TYPE_SYN_REPLY => {
                need(&payload, 4, "SYN_REPLY")?;
                let stream_id = payload.get_u32() & 0x7fff_ffff;
                Frame::SynReply { stream_id, fin, headers: self.headers.decode(&payload)? }
            }
            TYPE_HEADERS => {
                need(&payload, 4, "HEADERS")?;
                let stream_id = payload.get_u32() & 0x7fff_ffff;
                Frame::Headers { stream_id, fin, headers: self.headers.decode(&payload)? }
            }
            TYPE_RST_STREAM => {
                need(&payload, 8, "RST_STREAM")?;
                Frame::RstStream { stream_id: payload.get_u32() & 0x7fff_ffff, status: payload.get_u32() }
            }
            TYPE_SETTINGS => {
                need(&payload, 4, "SETTINGS")?;
                let count = payload.get_u32() as usize;
                if payload.len() / 8 < count {
                    return Err(SpdyError::Protocol(format!("SETTINGS frame claims {count} entries in {} bytes", payload.len())));
                }
                let entries = (0..count)
                    .map(|_| {
                        let word = payload.get_u32();
                        Setting { flags: (word >> 24) as u8, id: word & 0x00ff_ffff, value: payload.get_u32() }
                    })
                    .collect();
                Frame::Settings { clear: flags & FLAG_SETTINGS_CLEAR != 0, entries }
            }
            TYPE_PING => {
                need(&payload, 4, "PING")?;
                Frame::Ping { id: payload.get_u32() }
            }
            TYPE_GOAWAY => {
                // SPDY/3 adds the status; a 4-byte (SPDY/2-sized) GOAWAY still says goodbye.
                need(&payload, 4, "GOAWAY")?;
                let last_good_stream_id = payload.get_u32() & 0x7fff_ffff;
                let status = if payload.len() >= 4 { payload.get_u32() } else { GOAWAY_OK };
                Frame::GoAway { last_good_stream_id, status }
            }
            TYPE_WINDOW_UPDATE => {
                need(&payload, 8, "WINDOW_UPDATE")?;
                Frame::WindowUpdate { stream_id: payload.get_u32() & 0x7fff_ffff, delta: payload.get_u32() & 0x7fff_ffff }
            }
            _ => Frame::Unknown { kind, flags, payload },
        };
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adler32(bytes: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for byte in bytes {
            a = (a + u32::from(*byte)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    fn round_trip(frames: &[Frame]) -> Vec<Frame> {
        let (mut encoder, mut decoder) = (FrameEncoder::new(), FrameDecoder::new());
        let mut wire = BytesMut::new();
        for frame in frames {
            encoder.encode(frame, &mut wire).unwrap();
        }
        let mut decoded = Vec::new();
        while let Some(frame) = decoder.decode(&mut wire).unwrap() {
            decoded.push(frame);
        }
        assert!(wire.is_empty(), "every byte belongs to a frame");
        decoded
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_dictionary_is_the_protocols() {
        assert_eq!(dictionary().len(), 1423);
        // The id Go's zlib writer puts in the stream header (seen in captured frames: 78 f9 e3 c6 a7 c2).
        assert_eq!(adler32(dictionary()), 0xe3c6_a7c2);
    }

    #[test]
    fn first_header_block_announces_the_dictionary() {
        let block = HeaderEncoder::new().encode(&headers(&[("streamtype", "error")])).unwrap();
        // zlib header: CMF 0x78, FLG with FDICT (0x20) set, then the dictionary's Adler-32.
        assert_eq!(block[0], 0x78);
        assert_ne!(block[1] & 0x20, 0, "FDICT must be set or Go's reader ignores the dictionary");
        assert_eq!(u32::from_be_bytes([block[2], block[3], block[4], block[5]]), 0xe3c6_a7c2);
        assert_eq!(u16::from_be_bytes([block[0], block[1]]) % 31, 0, "zlib header check bits");
    }

    #[test]
    fn decodes_a_syn_stream_captured_from_gos_spdystream() {
        // A SYN_STREAM for stream 1 with `streamtype: stdout`, as written by moby/spdystream's
        // framer (Go's compress/zlib at best compression with the SPDY dictionary).
        let captured: &[u8] = b"\x80\x03\x00\x01\x00\x00\x00\x2b\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x78\xf9\xe3\xc6\xa7\xc2\x62\x60\x60\x60\x04\xa7\xb3\x92\xa2\xd4\xc4\x5c\x68\x51\xc2\x56\x5c\x92\x92\x5f\x5a\x02\x00\x00\x00\xff\xff";
        let mut wire = BytesMut::from(captured);
        let frame = FrameDecoder::new().decode(&mut wire).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame::SynStream { stream_id: 1, associated_to: 0, priority: 0, unidirectional: false, fin: false, headers: headers(&[("streamtype", "stdout")]) }
        );
    }

    #[test]
    fn every_frame_type_round_trips() {
        let frames = vec![
            Frame::SynStream { stream_id: 1, associated_to: 0, priority: 3, unidirectional: false, fin: false, headers: headers(&[("streamtype", "error"), ("port", "80")]) },
            Frame::SynReply { stream_id: 1, fin: false, headers: Vec::new() },
            Frame::Data { stream_id: 1, fin: false, data: Bytes::from_static(b"hello") },
            Frame::Data { stream_id: 1, fin: true, data: Bytes::new() },
            Frame::Headers { stream_id: 1, fin: true, headers: headers(&[("x", "y")]) },
            Frame::RstStream { stream_id: 3, status: status::CANCEL },
            Frame::Settings { clear: false, entries: vec![Setting { flags: 0, id: SETTINGS_INITIAL_WINDOW_SIZE, value: 1 << 20 }] },
            Frame::Ping { id: 7 },
            Frame::GoAway { last_good_stream_id: 5, status: GOAWAY_OK },
            Frame::WindowUpdate { stream_id: 0, delta: 32768 },
            Frame::Unknown { kind: 10, flags: 0, payload: Bytes::from_static(b"cred") },
        ];
        assert_eq!(round_trip(&frames), frames);
    }

    #[test]
    fn header_blocks_share_one_compression_context_across_frames() {
        // The same headers again compress to far fewer bytes: the second block refers back into
        // the first, so it only decodes with the context the first one left behind.
        let mut encoder = HeaderEncoder::new();
        let repeated = headers(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")]);
        let first = encoder.encode(&repeated).unwrap();
        let second = encoder.encode(&repeated).unwrap();
        assert!(second.len() < first.len(), "{} vs {}", second.len(), first.len());
        let mut fresh = HeaderDecoder::new();
        assert!(fresh.decode(&second).is_err(), "a block out of context must not decode");
        let mut decoder = HeaderDecoder::new();
        assert_eq!(decoder.decode(&first).unwrap(), repeated);
        assert_eq!(decoder.decode(&second).unwrap(), repeated);
        for round in 0..50 {
            let varied = headers(&[("streamtype", "data"), ("requestid", &round.to_string())]);
            assert_eq!(decoder.decode(&encoder.encode(&varied).unwrap()).unwrap(), varied);
        }
    }

    #[test]
    fn repeated_names_travel_nul_separated_and_names_are_lowered() {
        let mut encoder = HeaderEncoder::new();
        let block = encoder.encode(&headers(&[("X-Stream-Protocol-Version", "v4"), ("x-stream-protocol-version", "v3")])).unwrap();
        let mut decoder = flate2::Decompress::new(true);
        let mut raw = Vec::with_capacity(4096);
        let error = decoder.decompress_vec(&block, &mut raw, flate2::FlushDecompress::Sync).unwrap_err();
        assert!(error.needs_dictionary().is_some());
        decoder.set_dictionary(dictionary()).unwrap();
        decoder.decompress_vec(&block[decoder.total_in() as usize..], &mut raw, flate2::FlushDecompress::Sync).unwrap();
        let expected = b"\x00\x00\x00\x01\x00\x00\x00\x19x-stream-protocol-version\x00\x00\x00\x05v4\x00v3";
        assert_eq!(raw, expected);
    }

    #[test]
    fn partial_input_waits_for_the_rest() {
        let mut wire = BytesMut::new();
        FrameEncoder::new().encode(&Frame::Data { stream_id: 3, fin: false, data: Bytes::from_static(b"abcdef") }, &mut wire).unwrap();
        let mut decoder = FrameDecoder::new();
        let mut partial = BytesMut::from(&wire[..10]);
        assert_eq!(decoder.decode(&mut partial).unwrap(), None);
        partial.extend_from_slice(&wire[10..]);
        assert!(matches!(decoder.decode(&mut partial).unwrap(), Some(Frame::Data { stream_id: 3, .. })));
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let mut decoder = FrameDecoder::new();
        // A RST_STREAM whose payload is too short.
        let mut short = BytesMut::from(&b"\x80\x03\x00\x03\x00\x00\x00\x02\x00\x01"[..]);
        assert!(decoder.decode(&mut short).is_err());
        // A wrong version.
        let mut version = BytesMut::from(&b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01"[..]);
        assert!(FrameDecoder::new().decode(&mut version).is_err());
        // A header block that claims more headers than it holds.
        assert!(parse_raw_header_block(b"\xff\xff\xff\xff\x00\x00\x00\x01").is_err());
        // Garbage where a compressed block should be.
        assert!(HeaderDecoder::new().decode(b"\x78\x9c\xff\xff\xff\xff").is_err());
    }
}
