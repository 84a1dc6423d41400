//! SPDY/3.1 sessions, the multiplexing kubectl and the runtime's streaming server speak for
//! exec, attach and port-forward. One implementation serves both roles: the agent accepts
//! streams from kubectl (port-forward) and opens streams to containerd (exec, attach,
//! port-forward).
//!
//! Frames (draft-mbelshe-httpbis-spdy-00 / SPDY/3): a control frame is `1|version(15) type(16)
//! flags(8) length(24) payload`, a data frame `0|stream id(31) flags(8) length(24) payload`. Header
//! blocks of SYN_STREAM/SYN_REPLY/HEADERS are zlib-compressed, one compression context per
//! direction for the whole session, primed with the protocol's fixed dictionary.
//!
//! Flow control: the Kubernetes peers (moby/spdystream) neither send WINDOW_UPDATE nor wait for
//! one, so windows are not enforced here either; received WINDOW_UPDATE and SETTINGS frames are
//! accepted and ignored.

use bytes::{Buf, Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status CANCEL.
const CANCEL: u32 = 5;
/// Larger frames are a protocol error here (kubectl sends at most 32 KiB of data per frame).
const MAX_FRAME: usize = 16 << 20;

/// The SPDY/3 header-compression dictionary (a protocol constant): length-prefixed common header
/// names and values, then a run of common text.
fn dictionary() -> &'static [u8] {
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
        let mut bytes = Vec::new();
        for word in WORDS {
            bytes.extend_from_slice(&(word.len() as u32).to_be_bytes());
            bytes.extend_from_slice(word.as_bytes());
        }
        bytes.extend_from_slice(TEXT.as_bytes());
        bytes
    })
}

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("spdy connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("spdy protocol error: {0}")]
    Protocol(String),
    #[error("spdy session closed")]
    Closed,
}

pub type Headers = Vec<(String, String)>;

/// Header block (de)compression: one zlib stream per direction for the session's lifetime.
struct HeaderCodec {
    compress: flate2::Compress,
    decompress: flate2::Decompress,
}

impl HeaderCodec {
    fn new() -> Self {
        let mut compress = flate2::Compress::new(flate2::Compression::default(), true);
        // A dictionary set before the first byte puts its id in the zlib header, as peers expect.
        let _ = compress.set_dictionary(dictionary());
        Self { compress, decompress: flate2::Decompress::new(true) }
    }

    fn encode(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            raw.extend_from_slice(&(name.len() as u32).to_be_bytes());
            raw.extend_from_slice(name.as_bytes());
            raw.extend_from_slice(&(value.len() as u32).to_be_bytes());
            raw.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            out.reserve(256);
            let before_in = self.compress.total_in();
            self.compress.compress_vec(input, &mut out, flate2::FlushCompress::Sync).map_err(|e| SpdyError::Protocol(format!("header compression: {e}")))?;
            let consumed = (self.compress.total_in() - before_in) as usize;
            input = &input[consumed..];
            // Done when all input is in and the sync flush left spare room in the output.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    fn decode(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let mut raw = Vec::with_capacity(block.len() * 4 + 256);
        let mut input = block;
        loop {
            raw.reserve(1024);
            let before_in = self.decompress.total_in();
            match self.decompress.decompress_vec(input, &mut raw, flate2::FlushDecompress::Sync) {
                Ok(_) => {}
                Err(error) if error.needs_dictionary().is_some() => {
                    self.decompress.set_dictionary(dictionary()).map_err(|e| SpdyError::Protocol(format!("header dictionary: {e}")))?;
                }
                Err(error) => return Err(SpdyError::Protocol(format!("header decompression: {error}"))),
            }
            let consumed = (self.decompress.total_in() - before_in) as usize;
            input = &input[consumed..];
            if input.is_empty() && raw.len() < raw.capacity() {
                break;
            }
        }
        parse_header_block(&raw)
    }
}

fn parse_header_block(mut raw: &[u8]) -> Result<Headers, SpdyError> {
    let bad = || SpdyError::Protocol("truncated header block".into());
    let take = |raw: &mut &[u8]| -> Result<String, SpdyError> {
        if raw.len() < 4 {
            return Err(bad());
        }
        let length = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
        if raw.len() < 4 + length {
            return Err(bad());
        }
        let text = String::from_utf8_lossy(&raw[4..4 + length]).into_owned();
        *raw = &raw[4 + length..];
        Ok(text)
    };
    if raw.len() < 4 {
        return Err(bad());
    }
    let count = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
    raw = &raw[4..];
    let mut headers = Vec::new();
    for _ in 0..count {
        let name = take(&mut raw)?;
        let value = take(&mut raw)?;
        // Several values of one name are NUL-separated.
        for value in value.split('\0') {
            headers.push((name.clone(), value.to_owned()));
        }
    }
    Ok(headers)
}

/// A header's value, by case-insensitive name.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn control_frame(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(payload);
    frame
}

fn data_frame(stream: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + data.len());
    frame.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(data);
    frame
}

struct Shared {
    /// Compression order must match wire order: frames with header blocks are built and queued
    /// under this lock.
    codec: Mutex<HeaderCodec>,
    out: mpsc::UnboundedSender<Vec<u8>>,
    streams: Mutex<HashMap<u32, mpsc::UnboundedSender<Bytes>>>,
    next_id: Mutex<u32>,
}

/// A SPDY session over one connection.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

/// One stream: its headers, incoming data (ends at the peer's FIN or reset) and a sender.
pub struct Stream {
    pub headers: Headers,
    pub incoming: mpsc::UnboundedReceiver<Bytes>,
    pub sender: StreamSender,
}

/// Writes to one stream; cheap to clone.
#[derive(Clone)]
pub struct StreamSender {
    id: u32,
    shared: Arc<Shared>,
}

impl StreamSender {
    pub fn send(&self, data: &[u8]) -> Result<(), SpdyError> {
        // Keep frames modest so other streams interleave.
        for chunk in data.chunks(32 * 1024) {
            self.shared.out.send(data_frame(self.id, 0, chunk)).map_err(|_| SpdyError::Closed)?;
        }
        Ok(())
    }

    /// Half-closes the stream (FIN): the peer sees end of input.
    pub fn finish(&self) -> Result<(), SpdyError> {
        self.shared.out.send(data_frame(self.id, FLAG_FIN, &[])).map_err(|_| SpdyError::Closed)
    }

    pub fn reset(&self) {
        let mut payload = self.id.to_be_bytes().to_vec();
        payload.extend_from_slice(&CANCEL.to_be_bytes());
        let _ = self.shared.out.send(control_frame(RST_STREAM, 0, &payload));
    }
}

impl Session {
    /// Starts a session on `io`. `client` decides stream-id parity (clients open odd ids).
    /// Streams the peer opens arrive on the returned receiver (already answered with SYN_REPLY).
    pub fn start<T>(io: T, client: bool) -> (Session, mpsc::UnboundedReceiver<Stream>)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (reader, mut writer) = tokio::io::split(io);
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let shared = Arc::new(Shared {
            codec: Mutex::new(HeaderCodec::new()),
            out: out_tx,
            streams: Mutex::default(),
            next_id: Mutex::new(if client { 1 } else { 2 }),
        });
        tokio::spawn(async move {
            while let Some(frame) = out_rx.recv().await {
                if writer.write_all(&frame).await.is_err() {
                    break;
                }
            }
            let _ = writer.shutdown().await;
        });
        let (accepted_tx, accepted_rx) = mpsc::unbounded_channel();
        let session = Session { shared: shared.clone() };
        let reader_session = session.clone();
        tokio::spawn(async move {
            if let Err(error) = reader_session.read_frames(reader, accepted_tx).await {
                tracing::debug!(%error, "spdy session ended");
            }
            // Every stream's input ends with the session.
            reader_session.shared.streams.lock().unwrap_or_else(|p| p.into_inner()).clear();
        });
        (session, accepted_rx)
    }

    /// Opens a stream with `headers`.
    pub fn open(&self, headers: &Headers) -> Result<Stream, SpdyError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut codec = self.shared.codec.lock().unwrap_or_else(|p| p.into_inner());
        let id = {
            let mut next = self.shared.next_id.lock().unwrap_or_else(|p| p.into_inner());
            let id = *next;
            *next += 2;
            id
        };
        self.shared.streams.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx);
        let block = codec.encode(headers)?;
        let mut payload = Vec::with_capacity(10 + block.len());
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&0u32.to_be_bytes());
        payload.extend_from_slice(&[0, 0]);
        payload.extend_from_slice(&block);
        self.shared.out.send(control_frame(SYN_STREAM, 0, &payload)).map_err(|_| SpdyError::Closed)?;
        Ok(Stream { headers: headers.clone(), incoming: rx, sender: StreamSender { id, shared: self.shared.clone() } })
    }

    async fn read_frames<R: AsyncRead + Unpin>(&self, mut reader: R, accepted: mpsc::UnboundedSender<Stream>) -> Result<(), SpdyError> {
        let mut head = [0u8; 8];
        loop {
            if let Err(error) = reader.read_exact(&mut head).await {
                return if error.kind() == std::io::ErrorKind::UnexpectedEof { Ok(()) } else { Err(error.into()) };
            }
            let flags = head[4];
            let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
            if length > MAX_FRAME {
                return Err(SpdyError::Protocol(format!("frame of {length} bytes")));
            }
            let mut payload = BytesMut::zeroed(length);
            reader.read_exact(&mut payload).await?;
            let mut payload = payload.freeze();
            if head[0] & 0x80 == 0 {
                let id = u32::from_be_bytes(head[..4].try_into().unwrap_or_default()) & 0x7fff_ffff;
                let mut streams = self.shared.streams.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(stream) = streams.get(&id) {
                    if !payload.is_empty() {
                        let _ = stream.send(payload);
                    }
                }
                if flags & FLAG_FIN != 0 {
                    streams.remove(&id);
                }
                continue;
            }
            let kind = u16::from_be_bytes([head[2], head[3]]);
            match kind {
                SYN_STREAM => {
                    if payload.len() < 10 {
                        return Err(SpdyError::Protocol("short SYN_STREAM".into()));
                    }
                    let id = payload.get_u32() & 0x7fff_ffff;
                    payload.advance(6);
                    let headers = self.shared.codec.lock().unwrap_or_else(|p| p.into_inner()).decode(&payload)?;
                    let (tx, rx) = mpsc::unbounded_channel();
                    if flags & FLAG_FIN == 0 {
                        self.shared.streams.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx);
                    }
                    self.reply(id)?;
                    let stream = Stream { headers, incoming: rx, sender: StreamSender { id, shared: self.shared.clone() } };
                    if accepted.send(stream).is_err() {
                        StreamSender { id, shared: self.shared.clone() }.reset();
                    }
                }
                SYN_REPLY if payload.len() >= 4 => {
                    let id = payload.get_u32() & 0x7fff_ffff;
                    // Keep the decompression context in step even though the headers are unused.
                    self.shared.codec.lock().unwrap_or_else(|p| p.into_inner()).decode(&payload)?;
                    if flags & FLAG_FIN != 0 {
                        self.shared.streams.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                    }
                }
                RST_STREAM if payload.len() >= 4 => {
                    let id = payload.get_u32() & 0x7fff_ffff;
                    self.shared.streams.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                }
                PING => {
                    // Answer the peer's pings (ours would have our parity; we send none).
                    let _ = self.shared.out.send(control_frame(PING, 0, &payload));
                }
                GOAWAY => return Ok(()),
                // HEADERS would need decoding to keep the context in step.
                8 if payload.len() >= 4 => {
                    payload.advance(4);
                    self.shared.codec.lock().unwrap_or_else(|p| p.into_inner()).decode(&payload)?;
                }
                // SETTINGS, WINDOW_UPDATE, CREDENTIAL: nothing to do.
                _ => {}
            }
        }
    }

    fn reply(&self, id: u32) -> Result<(), SpdyError> {
        let mut codec = self.shared.codec.lock().unwrap_or_else(|p| p.into_inner());
        let block = codec.encode(&Vec::new())?;
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend_from_slice(&block);
        self.shared.out.send(control_frame(SYN_REPLY, 0, &payload)).map_err(|_| SpdyError::Closed)
    }

    /// Ends the session: GOAWAY, then the connection closes once queued frames are out.
    pub fn close(&self) {
        let _ = self.shared.out.send(control_frame(GOAWAY, 0, &[0; 8]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_the_protocols() {
        // SPDY/3's dictionary is 1423 bytes long.
        assert_eq!(dictionary().len(), 1423);
        assert!(dictionary().ends_with(b"enq=0."));
    }

    #[test]
    fn header_blocks_round_trip_across_one_compression_context() {
        let (mut sender, mut receiver) = (HeaderCodec::new(), HeaderCodec::new());
        for round in 0..3 {
            let headers: Headers = vec![("streamType".into(), "data".into()), ("port".into(), format!("80{round}")), ("requestID".into(), round.to_string())];
            let block = sender.encode(&headers).unwrap();
            let decoded = receiver.decode(&block).unwrap();
            assert_eq!(header(&decoded, "streamtype"), Some("data"));
            assert_eq!(header(&decoded, "port"), Some(format!("80{round}").as_str()));
        }
    }

    #[tokio::test]
    async fn streams_carry_data_and_half_close_both_ways() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (client, _) = Session::start(a, true);
        let (_server, mut accepted) = Session::start(b, false);
        let mut opened = client.open(&vec![("streamtype".into(), "stdin".into())]).unwrap();
        let mut incoming = accepted.recv().await.unwrap();
        assert_eq!(header(&incoming.headers, "streamType"), Some("stdin"));
        opened.sender.send(b"hello").unwrap();
        opened.sender.finish().unwrap();
        assert_eq!(&incoming.incoming.recv().await.unwrap()[..], b"hello");
        assert!(incoming.incoming.recv().await.is_none(), "FIN ends the input");
        incoming.sender.send(b"back").unwrap();
        assert_eq!(&opened.incoming.recv().await.unwrap()[..], b"back");
    }
}
