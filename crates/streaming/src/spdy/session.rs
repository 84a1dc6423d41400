//! A SPDY/3.1 session over one byte stream: a reader task that decodes frames and routes them to
//! streams, a writer task that encodes frames in queue order, and per-stream flow control.
//!
//! Ordering: every frame goes through ONE queue to the writer, which compresses header blocks as
//! it encodes, so compression order is wire order, a stream's SYN_STREAM precedes its data, and
//! stream ids reach the peer in increasing order (moby/spdystream refuses a smaller id than one
//! it has seen). Only DATA counts against the queue's byte budget, so the reader task can always
//! queue its answers (SYN_REPLY, PING, WINDOW_UPDATE) without waiting on a slow connection.
//!
//! Flow control (SPDY/3.1): each stream and the session start with a 64 KiB send window that the
//! peer's WINDOW_UPDATEs grow (stream 0 = the session) and that SETTINGS INITIAL_WINDOW_SIZE
//! shifts for every stream. We grant the peer windows the same way, as our application consumes
//! data. moby/spdystream — the Kubernetes side of every real peer — implements no flow control:
//! it never sends WINDOW_UPDATE and ignores ours. Waiting for window it will never grant would
//! stall every transfer after 64 KiB, so windows are enforced on sending only once the peer has
//! shown it does flow control (a WINDOW_UPDATE, or a SETTINGS with INITIAL_WINDOW_SIZE, which
//! our own sessions send first thing). Windows are counted from the start either way, so the
//! accounting is exact from the moment the peer opts in.

use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Notify, Semaphore};

use super::frame::{
    status, Frame, FrameDecoder, FrameEncoder, Headers, Setting, DEFAULT_WINDOW, GOAWAY_OK, GOAWAY_PROTOCOL_ERROR, SETTINGS_INITIAL_WINDOW_SIZE,
};
use super::SpdyError;

/// Data frames carry at most this much: kubectl copies in 32 KiB pieces, and smaller frames let
/// the streams of a session interleave.
const MAX_CHUNK: usize = 32 * 1024;
/// DATA bytes queued for the writer before `write` waits: backpressure from a slow connection.
const QUEUE_BUDGET: usize = 512 * 1024;
/// Unread bytes a stream may hold before the reader task waits for the application. Only a peer
/// that ignores flow control gets here (a conforming one stops at 64 KiB); waiting then pushes
/// back through TCP instead of buffering without bound.
const HIGH_WATER: usize = 1024 * 1024;
/// After `close`, how long the reader keeps draining before it drops the connection even if the
/// peer never closes its side.
const CLOSE_GRACE: Duration = Duration::from_secs(10);
/// The writer gathers queued frames into one write up to about this size.
const WRITE_BATCH: usize = 64 * 1024;

/// Which end of the connection: the client opens odd stream ids and pings, the server even.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub role: Role,
    /// Send SETTINGS INITIAL_WINDOW_SIZE (the default value) first thing, telling the peer we do
    /// flow control. moby/spdystream ignores it.
    pub announce_flow_control: bool,
}

impl SessionConfig {
    pub fn client() -> Self {
        Self { role: Role::Client, announce_flow_control: true }
    }

    pub fn server() -> Self {
        Self { role: Role::Server, announce_flow_control: true }
    }
}

enum Command {
    /// A frame, and how many bytes of the queue budget it holds.
    Frame(Frame, usize),
    /// Flush, then close our sending direction.
    Shutdown,
}

enum Event {
    Data(Bytes),
    Fin,
    Reset(u32),
    SessionEnded,
}

/// What the reader task and a stream's reader share about unread data.
#[derive(Default)]
struct Inbox {
    buffered: AtomicUsize,
    drained: Notify,
    reader_gone: AtomicBool,
}

impl Inbox {
    async fn wait_below(&self, limit: usize) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.buffered.load(Ordering::Acquire) <= limit || self.reader_gone.load(Ordering::Acquire) {
                return;
            }
            drained.await;
        }
    }
}

struct Entry {
    /// None once the peer's half has ended (FIN) and that was delivered.
    events: Option<mpsc::UnboundedSender<Event>>,
    inbox: Arc<Inbox>,
    send_window: i64,
    /// Bytes the application consumed that the peer has not been granted back yet.
    recv_unacked: u32,
    local_closed: bool,
}

struct State {
    next_stream_id: u32,
    last_peer_stream_id: u32,
    streams: HashMap<u32, Entry>,
    /// The peer does flow control: enforce its windows.
    flow_control: bool,
    peer_initial_window: i64,
    send_window: i64,
    recv_unacked: u32,
    /// The peer sent GOAWAY: open no more streams.
    going_away: bool,
    /// We closed the session.
    closed: bool,
    /// The reader finished: nothing more arrives, nothing more can be sent.
    ended: bool,
}

struct Shared {
    role: Role,
    out: mpsc::UnboundedSender<Command>,
    budget: Semaphore,
    state: Mutex<State>,
    /// Send windows grew or a stream's state changed: blocked writers look again.
    window: Notify,
    closing: watch::Sender<bool>,
    ended: watch::Sender<bool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than stopping the session would; keep going with it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn send(&self, frame: Frame) -> Result<(), SpdyError> {
        self.out.send(Command::Frame(frame, 0)).map_err(|_| SpdyError::SessionClosed)
    }

    /// Counts bytes that left the session's receive window; grants them back in batches.
    fn credit_session(&self, state: &mut State, bytes: usize) {
        state.recv_unacked = state.recv_unacked.saturating_add(bytes as u32);
        if state.recv_unacked >= DEFAULT_WINDOW / 2 {
            let delta = std::mem::take(&mut state.recv_unacked);
            let _ = self.send(Frame::WindowUpdate { stream_id: 0, delta });
        }
    }

    /// The application consumed `bytes` of stream `id`.
    fn consumed(&self, id: u32, bytes: usize) {
        let mut state = self.lock();
        self.credit_session(&mut state, bytes);
        if let Some(entry) = state.streams.get_mut(&id) {
            entry.recv_unacked = entry.recv_unacked.saturating_add(bytes as u32);
            // A stream whose peer half ended gets no more data: no window to grant.
            if entry.recv_unacked >= DEFAULT_WINDOW / 2 && entry.events.is_some() {
                let delta = std::mem::take(&mut entry.recv_unacked);
                let _ = self.send(Frame::WindowUpdate { stream_id: id, delta });
            }
        }
    }

    /// Forgets a stream once both halves are done.
    fn tidy(state: &mut State, id: u32) {
        if state.streams.get(&id).is_some_and(|e| e.events.is_none() && e.local_closed) {
            state.streams.remove(&id);
        }
    }

    fn new_entry(shared: &Arc<Shared>, state: &State, id: u32, headers: Headers, local_closed: bool) -> (Entry, Stream, mpsc::UnboundedSender<Event>) {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let inbox = Arc::new(Inbox::default());
        let entry = Entry { events: Some(events_tx.clone()), inbox: inbox.clone(), send_window: state.peer_initial_window, recv_unacked: 0, local_closed };
        let stream = Stream {
            headers,
            reader: StreamReader { id, events: events_rx, inbox, shared: shared.clone(), end: None },
            writer: StreamWriter { id, shared: shared.clone() },
        };
        (entry, stream, events_tx)
    }

    /// Waits until stream `id` may send, and takes up to `want` bytes of its windows.
    async fn reserve(&self, id: u32, want: usize) -> Result<usize, SpdyError> {
        loop {
            let changed = self.window.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut guard = self.lock();
                let state = &mut *guard;
                if state.ended || state.closed {
                    return Err(SpdyError::SessionClosed);
                }
                let session_window = state.send_window;
                let flow_control = state.flow_control;
                let entry = state.streams.get_mut(&id).ok_or(SpdyError::StreamClosed(id))?;
                if entry.local_closed {
                    return Err(SpdyError::StreamClosed(id));
                }
                let available = if flow_control { entry.send_window.min(session_window) } else { i64::MAX };
                if available > 0 {
                    let taken = (want as i64).min(available);
                    // Counted even while not enforced, so the windows are right if the peer opts in.
                    entry.send_window -= taken;
                    state.send_window -= taken;
                    return Ok(taken as usize);
                }
            }
            changed.await;
        }
    }

    fn send_data(&self, id: u32, data: Bytes, fin: bool, budget: usize) -> Result<(), SpdyError> {
        let mut state = self.lock();
        let open = state.streams.get(&id).is_some_and(|e| !e.local_closed);
        if !open || state.ended || state.closed {
            drop(state);
            self.budget.add_permits(budget);
            return Err(SpdyError::StreamClosed(id));
        }
        if fin {
            if let Some(entry) = state.streams.get_mut(&id) {
                entry.local_closed = true;
            }
            Shared::tidy(&mut state, id);
        }
        self.out.send(Command::Frame(Frame::Data { stream_id: id, fin, data }, budget)).map_err(|_| SpdyError::SessionClosed)
    }

    fn reset(&self, id: u32, status: u32) {
        let mut state = self.lock();
        if let Some(entry) = state.streams.remove(&id) {
            if let Some(events) = entry.events {
                let _ = events.send(Event::Reset(status));
            }
            let _ = self.send(Frame::RstStream { stream_id: id, status });
        }
        drop(state);
        self.window.notify_waiters();
    }

    fn close(&self) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        state.closed = true;
        // As Kubernetes' httpstream connection does on Close: reset every stream that is still
        // open, so nothing waits on a half-closed stream, then GOAWAY and close our direction.
        let mut open: Vec<(u32, Entry)> = state.streams.drain().collect();
        open.sort_by_key(|(id, _)| *id);
        for (id, entry) in open {
            if let Some(events) = entry.events {
                let _ = events.send(Event::Reset(status::CANCEL));
            }
            let _ = self.send(Frame::RstStream { stream_id: id, status: status::CANCEL });
        }
        let _ = self.send(Frame::GoAway { last_good_stream_id: state.last_peer_stream_id, status: GOAWAY_OK });
        let _ = self.out.send(Command::Shutdown);
        drop(state);
        self.closing.send_replace(true);
        self.window.notify_waiters();
    }

    /// Handles one frame from the peer. Returns the inbox to wait on when a stream holds too
    /// much unread data.
    fn handle(self: &Arc<Self>, frame: Frame, accepted: &mpsc::UnboundedSender<Stream>) -> Result<Option<Arc<Inbox>>, SpdyError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        match frame {
            Frame::Data { stream_id, fin, data } => {
                let length = data.len();
                let Some(entry) = state.streams.get_mut(&stream_id) else {
                    // A stream we reset or never knew: drop the data, keep the session window honest.
                    self.credit_session(state, length);
                    return Ok(None);
                };
                let mut wait = None;
                match &entry.events {
                    Some(events) if !entry.inbox.reader_gone.load(Ordering::Acquire) => {
                        if length > 0 {
                            let buffered = entry.inbox.buffered.fetch_add(length, Ordering::AcqRel) + length;
                            let _ = events.send(Event::Data(data));
                            if buffered > HIGH_WATER {
                                wait = Some(entry.inbox.clone());
                            }
                        }
                    }
                    _ => self.credit_session(state, length),
                }
                if fin {
                    if let Some(entry) = state.streams.get_mut(&stream_id) {
                        if let Some(events) = entry.events.take() {
                            let _ = events.send(Event::Fin);
                        }
                    }
                    Shared::tidy(state, stream_id);
                }
                Ok(wait)
            }
            Frame::SynStream { stream_id, unidirectional, fin, headers, .. } => {
                let peer_parity = match self.role {
                    Role::Server => 1,
                    Role::Client => 0,
                };
                if stream_id % 2 != peer_parity || stream_id <= state.last_peer_stream_id {
                    self.send(Frame::RstStream { stream_id, status: status::PROTOCOL_ERROR })?;
                    return Ok(None);
                }
                state.last_peer_stream_id = stream_id;
                if state.closed {
                    self.send(Frame::RstStream { stream_id, status: status::REFUSED_STREAM })?;
                    return Ok(None);
                }
                let (mut entry, stream, events) = Shared::new_entry(self, state, stream_id, headers, unidirectional);
                // The reply goes out before the application can write, so it precedes any data
                // (spdystream drops data on a stream it has no reply for).
                if !unidirectional {
                    self.send(Frame::SynReply { stream_id, fin: false, headers: Vec::new() })?;
                }
                if fin {
                    let _ = events.send(Event::Fin);
                    entry.events = None;
                }
                state.streams.insert(stream_id, entry);
                Shared::tidy(state, stream_id);
                if accepted.send(stream).is_err() {
                    // Nobody takes streams on this session.
                    state.streams.remove(&stream_id);
                    self.send(Frame::RstStream { stream_id, status: status::REFUSED_STREAM })?;
                }
                Ok(None)
            }
            Frame::SynReply { stream_id, fin, .. } | Frame::Headers { stream_id, fin, .. } => {
                if fin {
                    if let Some(entry) = state.streams.get_mut(&stream_id) {
                        if let Some(events) = entry.events.take() {
                            let _ = events.send(Event::Fin);
                        }
                    }
                    Shared::tidy(state, stream_id);
                }
                Ok(None)
            }
            Frame::RstStream { stream_id, status } => {
                if let Some(entry) = state.streams.remove(&stream_id) {
                    if let Some(events) = entry.events {
                        let _ = events.send(Event::Reset(status));
                    }
                }
                drop(guard);
                self.window.notify_waiters();
                Ok(None)
            }
            Frame::Settings { entries, .. } => {
                for Setting { id, value, .. } in entries {
                    if id == SETTINGS_INITIAL_WINDOW_SIZE {
                        if value > 0x7fff_ffff {
                            return Err(SpdyError::Protocol(format!("initial window of {value} bytes")));
                        }
                        let delta = i64::from(value) - state.peer_initial_window;
                        for entry in state.streams.values_mut() {
                            entry.send_window += delta;
                        }
                        state.peer_initial_window = i64::from(value);
                        state.flow_control = true;
                    }
                }
                drop(guard);
                self.window.notify_waiters();
                Ok(None)
            }
            Frame::Ping { id } => {
                // Our own pings have our parity (client odd, server even); answer the peer's.
                let ours = match self.role {
                    Role::Client => 1,
                    Role::Server => 0,
                };
                if id % 2 != ours {
                    self.send(Frame::Ping { id })?;
                }
                Ok(None)
            }
            Frame::GoAway { .. } => {
                // Streams already open carry on; the peer closes the connection when it is done.
                state.going_away = true;
                Ok(None)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                state.flow_control = true;
                if stream_id == 0 {
                    state.send_window += i64::from(delta);
                } else if let Some(entry) = state.streams.get_mut(&stream_id) {
                    entry.send_window += i64::from(delta);
                }
                drop(guard);
                self.window.notify_waiters();
                Ok(None)
            }
            // CREDENTIAL and anything newer: ignored, as the protocol asks.
            Frame::Unknown { .. } => Ok(None),
        }
    }

    /// The reader is done: every stream's input ends, nothing more can be sent.
    fn finish_reading(&self) {
        let mut state = self.lock();
        state.ended = true;
        for (_, entry) in state.streams.drain() {
            if let Some(events) = entry.events {
                let _ = events.send(Event::SessionEnded);
            }
        }
        drop(state);
        // Close our direction too, so a peer waiting for our end sees it.
        let _ = self.out.send(Command::Shutdown);
        self.window.notify_waiters();
        self.ended.send_replace(true);
    }
}

/// A SPDY session. Cheap to clone; every clone is the same session.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

/// Streams the peer opens, already answered with SYN_REPLY. Dropping it refuses further ones.
pub struct Acceptor {
    streams: mpsc::UnboundedReceiver<Stream>,
}

impl Acceptor {
    /// The next stream the peer opened, or None once the session ended.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.streams.recv().await
    }
}

impl Session {
    /// Starts a session on `io` (an upgraded connection). The tasks run until the connection
    /// ends, or `close` plus a short grace.
    pub fn start<T>(io: T, config: SessionConfig) -> (Session, Acceptor)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (accepted_tx, accepted_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            role: config.role,
            out: out_tx,
            budget: Semaphore::new(QUEUE_BUDGET),
            state: Mutex::new(State {
                next_stream_id: if config.role == Role::Client { 1 } else { 2 },
                last_peer_stream_id: 0,
                streams: HashMap::new(),
                flow_control: false,
                peer_initial_window: i64::from(DEFAULT_WINDOW),
                send_window: i64::from(DEFAULT_WINDOW),
                recv_unacked: 0,
                going_away: false,
                closed: false,
                ended: false,
            }),
            window: Notify::new(),
            closing: watch::channel(false).0,
            ended: watch::channel(false).0,
        });
        if config.announce_flow_control {
            let entries = vec![Setting { flags: 0, id: SETTINGS_INITIAL_WINDOW_SIZE, value: DEFAULT_WINDOW }];
            let _ = shared.send(Frame::Settings { clear: false, entries });
        }
        tokio::spawn(write_loop(writer, shared.clone(), out_rx));
        tokio::spawn(read_loop(reader, shared.clone(), accepted_tx));
        (Session { shared }, Acceptor { streams: accepted_rx })
    }

    /// Opens a stream with `headers` (SYN_STREAM). Does not wait for the peer's SYN_REPLY:
    /// data the peer sends before replying is delivered all the same.
    pub fn open(&self, headers: Headers) -> Result<Stream, SpdyError> {
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        if state.ended || state.closed {
            return Err(SpdyError::SessionClosed);
        }
        if state.going_away {
            return Err(SpdyError::GoingAway);
        }
        let id = state.next_stream_id;
        if id > 0x7fff_ffff {
            return Err(SpdyError::Protocol("stream ids exhausted".into()));
        }
        state.next_stream_id += 2;
        let (entry, stream, _) = Shared::new_entry(&self.shared, state, id, headers.clone(), false);
        // Queued under the lock: ids reach the wire in increasing order.
        self.shared.send(Frame::SynStream { stream_id: id, associated_to: 0, priority: 0, unidirectional: false, fin: false, headers })?;
        state.streams.insert(id, entry);
        Ok(stream)
    }

    /// Resets every open stream, says GOAWAY and closes our direction of the connection.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Waits until the peer's side of the connection has ended (or the session was dropped
    /// after `close`).
    pub async fn closed(&self) {
        let mut ended = self.shared.ended.subscribe();
        let _ = ended.wait_for(|ended| *ended).await;
    }

    /// Whether the peer sent GOAWAY.
    pub fn peer_going_away(&self) -> bool {
        self.shared.lock().going_away
    }
}

/// One stream: the headers it was opened with, and its two halves.
pub struct Stream {
    headers: Headers,
    reader: StreamReader,
    writer: StreamWriter,
}

impl Stream {
    pub fn id(&self) -> u32 {
        self.writer.id
    }

    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    pub fn split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }

    pub async fn read(&mut self) -> Result<Option<Bytes>, SpdyError> {
        self.reader.read().await
    }

    pub async fn write(&self, data: &[u8]) -> Result<(), SpdyError> {
        self.writer.write(data).await
    }

    pub fn finish(&self) -> Result<(), SpdyError> {
        self.writer.finish()
    }

    pub fn reset(&self, status: u32) {
        self.writer.reset(status)
    }
}

/// The receiving half of a stream.
pub struct StreamReader {
    id: u32,
    events: mpsc::UnboundedReceiver<Event>,
    inbox: Arc<Inbox>,
    shared: Arc<Shared>,
    /// How the input ended, once it did: None = still open.
    end: Option<Result<(), (u32, bool)>>,
}

impl StreamReader {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The next piece of data; Ok(None) once the peer finished the stream (FIN). A reset by the
    /// peer, or the end of the session without FIN, is an error.
    pub async fn read(&mut self) -> Result<Option<Bytes>, SpdyError> {
        let ended = |end: &Result<(), (u32, bool)>, id| match end {
            Ok(()) => Ok(None),
            Err((_, true)) => Err(SpdyError::SessionClosed),
            Err((status, false)) => Err(SpdyError::Reset { stream_id: id, status: *status }),
        };
        if let Some(end) = &self.end {
            return ended(end, self.id);
        }
        let end = match self.events.recv().await {
            Some(Event::Data(data)) => {
                self.inbox.buffered.fetch_sub(data.len(), Ordering::AcqRel);
                self.inbox.drained.notify_waiters();
                self.shared.consumed(self.id, data.len());
                return Ok(Some(data));
            }
            Some(Event::Fin) => Ok(()),
            Some(Event::Reset(status)) => Err((status, false)),
            Some(Event::SessionEnded) | None => Err((0, true)),
        };
        let result = ended(&end, self.id);
        self.end = Some(end);
        result
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        self.inbox.reader_gone.store(true, Ordering::Release);
        self.inbox.drained.notify_waiters();
        // Unread data still counts against the session's receive window: grant it back.
        let mut unread = 0;
        while let Ok(event) = self.events.try_recv() {
            if let Event::Data(data) = event {
                unread += data.len();
            }
        }
        if unread > 0 {
            let mut state = self.shared.lock();
            self.shared.credit_session(&mut state, unread);
        }
    }
}

/// The sending half of a stream. Clones write to the same stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    shared: Arc<Shared>,
}

impl StreamWriter {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Sends `data`, waiting for flow-control window and queue room as needed.
    pub async fn write(&self, data: &[u8]) -> Result<(), SpdyError> {
        let mut rest = data;
        while !rest.is_empty() {
            let size = self.shared.reserve(self.id, rest.len().min(MAX_CHUNK)).await?;
            let permit = self.shared.budget.acquire_many(size as u32).await.map_err(|_| SpdyError::SessionClosed)?;
            // The writer task returns the permits once the bytes are on the connection.
            permit.forget();
            self.shared.send_data(self.id, Bytes::copy_from_slice(&rest[..size]), false, size)?;
            rest = &rest[size..];
        }
        Ok(())
    }

    /// Half-closes the stream (an empty DATA frame with FIN): the peer reads end of input.
    pub fn finish(&self) -> Result<(), SpdyError> {
        self.shared.send_data(self.id, Bytes::new(), true, 0)
    }

    /// Aborts the stream in both directions (RST_STREAM).
    pub fn reset(&self, status: u32) {
        self.shared.reset(self.id, status);
    }
}

async fn read_loop<R>(mut io: R, shared: Arc<Shared>, accepted: mpsc::UnboundedSender<Stream>)
where
    R: AsyncRead + Unpin,
{
    let mut closing = shared.closing.subscribe();
    let reading = async {
        let mut decoder = FrameDecoder::new();
        let mut buffer = BytesMut::with_capacity(64 * 1024);
        loop {
            while let Some(frame) = decoder.decode(&mut buffer)? {
                if let Some(inbox) = shared.handle(frame, &accepted)? {
                    inbox.wait_below(HIGH_WATER).await;
                }
            }
            if io.read_buf(&mut buffer).await? == 0 {
                return Ok::<(), SpdyError>(());
            }
        }
    };
    let grace = async {
        let _ = closing.wait_for(|closing| *closing).await;
        tokio::time::sleep(CLOSE_GRACE).await;
    };
    tokio::select! {
        result = reading => match result {
            Ok(()) => tracing::trace!("spdy session: the peer closed the connection"),
            Err(SpdyError::Io(error)) => tracing::debug!(%error, "spdy session: connection error"),
            Err(error) => {
                tracing::debug!(%error, "spdy session: protocol error");
                let _ = shared.send(Frame::GoAway { last_good_stream_id: shared.lock().last_peer_stream_id, status: GOAWAY_PROTOCOL_ERROR });
            }
        },
        () = grace => tracing::debug!("spdy session: the peer did not close after GOAWAY"),
    }
    drop(accepted);
    shared.finish_reading();
}

async fn write_loop<W>(mut io: W, shared: Arc<Shared>, mut queue: mpsc::UnboundedReceiver<Command>)
where
    W: AsyncWrite + Unpin,
{
    let mut encoder = FrameEncoder::new();
    let mut buffer = BytesMut::with_capacity(WRITE_BATCH);
    'session: while let Some(first) = queue.recv().await {
        let mut credit = 0;
        let mut shutdown = false;
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Frame(frame, budget) => {
                    if let Err(error) = encoder.encode(&frame, &mut buffer) {
                        tracing::debug!(%error, "spdy session: cannot encode a frame");
                        break 'session;
                    }
                    credit += budget;
                }
                Command::Shutdown => {
                    shutdown = true;
                    break;
                }
            }
            if buffer.len() < WRITE_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if io.write_all(&buffer).await.is_err() || io.flush().await.is_err() {
            break;
        }
        buffer.clear();
        shared.budget.add_permits(credit);
        if shutdown {
            let _ = io.shutdown().await;
            break;
        }
    }
    // Writers waiting for queue room learn that the session is gone.
    shared.budget.close();
    queue.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spdy::frame::header;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    /// The far end of a connection, spoken frame by frame by the test.
    struct RawPeer {
        io: tokio::io::DuplexStream,
        encoder: FrameEncoder,
        decoder: FrameDecoder,
        buffer: BytesMut,
    }

    impl RawPeer {
        fn new(io: tokio::io::DuplexStream) -> Self {
            Self { io, encoder: FrameEncoder::new(), decoder: FrameDecoder::new(), buffer: BytesMut::new() }
        }

        async fn send(&mut self, frame: Frame) {
            let mut out = BytesMut::new();
            self.encoder.encode(&frame, &mut out).unwrap();
            self.io.write_all(&out).await.unwrap();
        }

        /// The next frame, or None at end of connection.
        async fn next(&mut self) -> Option<Frame> {
            loop {
                if let Some(frame) = self.decoder.decode(&mut self.buffer).unwrap() {
                    return Some(frame);
                }
                if self.io.read_buf(&mut self.buffer).await.unwrap() == 0 {
                    return None;
                }
            }
        }

        /// The next frame that is not SETTINGS (sessions announce flow control first).
        async fn next_significant(&mut self) -> Option<Frame> {
            loop {
                match self.next().await? {
                    Frame::Settings { .. } => continue,
                    frame => return Some(frame),
                }
            }
        }
    }

    fn pair() -> (Session, Acceptor, Session, Acceptor) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (client, client_accept) = Session::start(a, SessionConfig::client());
        let (server, server_accept) = Session::start(b, SessionConfig::server());
        (client, client_accept, server, server_accept)
    }

    async fn read_all(reader: &mut StreamReader) -> Result<Vec<u8>, SpdyError> {
        let mut all = Vec::new();
        while let Some(data) = reader.read().await? {
            all.extend_from_slice(&data);
        }
        Ok(all)
    }

    #[tokio::test]
    async fn streams_carry_data_and_half_close_in_both_directions() {
        let (client, _, _server, mut accept) = pair();
        let opened = client.open(headers(&[("streamType", "stdin")])).unwrap();
        let incoming = accept.accept().await.unwrap();
        assert_eq!(header(incoming.headers(), "streamtype"), Some("stdin"));
        let (mut opened_in, opened_out) = opened.split();
        let (mut incoming_in, incoming_out) = incoming.split();
        opened_out.write(b"hello ").await.unwrap();
        opened_out.write(b"world").await.unwrap();
        opened_out.finish().unwrap();
        assert_eq!(read_all(&mut incoming_in).await.unwrap(), b"hello world");
        assert!(opened_out.write(b"late").await.is_err(), "no writes after FIN");
        // The other direction is still open after the first one finished.
        incoming_out.write(&vec![7u8; 200_000]).await.unwrap();
        incoming_out.finish().unwrap();
        assert_eq!(read_all(&mut opened_in).await.unwrap(), vec![7u8; 200_000]);
    }

    #[tokio::test]
    async fn reset_ends_the_peers_reads_with_an_error_and_close_ends_the_session() {
        let (client, _, server, mut accept) = pair();
        let first = client.open(headers(&[("streamtype", "a")])).unwrap();
        let second = client.open(headers(&[("streamtype", "b")])).unwrap();
        let (mut first_in, first_out) = accept.accept().await.unwrap().split();
        let (mut second_in, _second_out) = accept.accept().await.unwrap().split();
        first.write(b"before").await.unwrap();
        first.reset(status::CANCEL);
        assert_eq!(&first_in.read().await.unwrap().unwrap()[..], b"before", "data sent before the reset still arrives");
        assert!(matches!(first_in.read().await, Err(SpdyError::Reset { status: status::CANCEL, .. })));
        assert!(first_out.write(b"x").await.is_err(), "a reset stream takes no more data");
        client.close();
        assert!(matches!(second_in.read().await, Err(SpdyError::Reset { .. })), "close resets open streams");
        server.closed().await;
        client.closed().await;
        drop(second);
        assert!(accept.accept().await.is_none());
    }

    #[tokio::test]
    async fn pings_from_the_peer_are_answered_and_syn_reply_precedes_data() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (_session, mut accept) = Session::start(a, SessionConfig::server());
        let mut peer = RawPeer::new(b);
        peer.send(Frame::Ping { id: 1 }).await;
        assert_eq!(peer.next_significant().await, Some(Frame::Ping { id: 1 }));
        peer.send(Frame::SynStream { stream_id: 1, associated_to: 0, priority: 0, unidirectional: false, fin: false, headers: headers(&[("streamtype", "data")]) })
            .await;
        let stream = accept.accept().await.unwrap();
        stream.write(b"x").await.unwrap();
        assert_eq!(peer.next_significant().await, Some(Frame::SynReply { stream_id: 1, fin: false, headers: Vec::new() }));
        assert_eq!(peer.next_significant().await, Some(Frame::Data { stream_id: 1, fin: false, data: Bytes::from_static(b"x") }));
        // A client must open odd ids, each larger than the last.
        peer.send(Frame::SynStream { stream_id: 1, associated_to: 0, priority: 0, unidirectional: false, fin: false, headers: Vec::new() }).await;
        assert_eq!(peer.next_significant().await, Some(Frame::RstStream { stream_id: 1, status: status::PROTOCOL_ERROR }));
    }

    #[tokio::test]
    async fn client_stream_ids_are_odd_and_increasing_on_the_wire() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (session, _) = Session::start(a, SessionConfig::client());
        let mut peer = RawPeer::new(b);
        let opened: Vec<Stream> = (0..3).map(|i| session.open(headers(&[("n", &i.to_string())])).unwrap()).collect();
        for (i, stream) in opened.iter().enumerate() {
            match peer.next_significant().await {
                Some(Frame::SynStream { stream_id, headers: h, .. }) => {
                    assert_eq!(stream_id, 1 + 2 * i as u32);
                    assert_eq!(stream_id, stream.id());
                    assert_eq!(header(&h, "n"), Some(i.to_string().as_str()));
                }
                other => panic!("expected SYN_STREAM, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn sending_stays_within_the_windows_a_flow_controlling_peer_grants() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let (session, _) = Session::start(a, SessionConfig::client());
        let mut peer = RawPeer::new(b);
        // The peer opts in, as our own sessions do.
        peer.send(Frame::Settings { clear: false, entries: vec![Setting { flags: 0, id: SETTINGS_INITIAL_WINDOW_SIZE, value: DEFAULT_WINDOW }] }).await;
        // Make sure the SETTINGS is processed before the stream exists: a PING round trip.
        peer.send(Frame::Ping { id: 3 }).await;
        assert_eq!(peer.next_significant().await, Some(Frame::Ping { id: 3 }));
        let stream = session.open(headers(&[("streamtype", "data")])).unwrap();
        let total = 300_000usize;
        let sender = tokio::spawn(async move {
            stream.write(&vec![1u8; total]).await.unwrap();
            stream.finish().unwrap();
            stream
        });
        let (mut stream_granted, mut session_granted) = (u64::from(DEFAULT_WINDOW), u64::from(DEFAULT_WINDOW));
        let mut received = 0u64;
        loop {
            match peer.next_significant().await.expect("the session ended early") {
                Frame::SynStream { .. } => {}
                Frame::Data { stream_id: 1, fin, data } => {
                    received += data.len() as u64;
                    assert!(received <= stream_granted && received <= session_granted, "sent {received} bytes with only {stream_granted}/{session_granted} granted");
                    if fin {
                        break;
                    }
                    // Grant little and late: only once everything granted so far has arrived.
                    if received == stream_granted.min(session_granted) {
                        peer.send(Frame::WindowUpdate { stream_id: 1, delta: 10_000 }).await;
                        peer.send(Frame::WindowUpdate { stream_id: 0, delta: 10_000 }).await;
                        stream_granted += 10_000;
                        session_granted += 10_000;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(received, total as u64);
        sender.await.unwrap();
    }

    #[tokio::test]
    async fn a_peer_without_flow_control_is_not_waited_for() {
        // moby/spdystream neither sends WINDOW_UPDATE nor SETTINGS: everything must flow anyway.
        let (a, b) = tokio::io::duplex(1 << 20);
        let (session, _) = Session::start(a, SessionConfig::client());
        let mut peer = RawPeer::new(b);
        let stream = session.open(headers(&[("streamtype", "stdout")])).unwrap();
        tokio::spawn(async move {
            stream.write(&vec![2u8; 500_000]).await.unwrap();
            stream.finish().unwrap();
        });
        let mut received = 0;
        loop {
            match peer.next_significant().await.expect("the session ended early") {
                Frame::Data { fin, data, .. } => {
                    received += data.len();
                    if fin {
                        break;
                    }
                }
                Frame::SynStream { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(received, 500_000);
    }

    #[tokio::test]
    async fn window_is_granted_back_only_as_the_application_reads() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let (_session, mut accept) = Session::start(a, SessionConfig::server());
        let mut peer = RawPeer::new(b);
        peer.send(Frame::SynStream { stream_id: 1, associated_to: 0, priority: 0, unidirectional: false, fin: false, headers: Vec::new() }).await;
        let mut stream = accept.accept().await.unwrap();
        assert!(matches!(peer.next_significant().await, Some(Frame::SynReply { stream_id: 1, .. })));
        for _ in 0..4 {
            peer.send(Frame::Data { stream_id: 1, fin: false, data: Bytes::from(vec![0u8; 16 * 1024]) }).await;
        }
        // The frames are handled in order: the PING answer proves the data was processed, and
        // nothing was granted while the application read nothing.
        peer.send(Frame::Ping { id: 5 }).await;
        assert_eq!(peer.next_significant().await, Some(Frame::Ping { id: 5 }));
        let mut read = 0;
        while read < 64 * 1024 {
            read += stream.read().await.unwrap().unwrap().len();
        }
        let mut granted = (0u32, 0u32);
        while granted.0 < 64 * 1024 || granted.1 < 64 * 1024 {
            match peer.next_significant().await {
                Some(Frame::WindowUpdate { stream_id: 0, delta }) => granted.0 += delta,
                Some(Frame::WindowUpdate { stream_id: 1, delta }) => granted.1 += delta,
                other => panic!("expected WINDOW_UPDATE, got {other:?}"),
            }
        }
        assert_eq!(granted, (64 * 1024, 64 * 1024));
    }
}
