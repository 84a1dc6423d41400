//! SPDY/3.1, the multiplexing kubectl and the container runtime's streaming server
//! (k8s.io/kubelet/pkg/cri/streaming, on moby/spdystream) speak for exec, attach and
//! port-forward. Our own implementation: no permissively licensed Rust crate does it.
//!
//! One session type serves both roles: as a client it opens streams toward containerd (exec,
//! attach), as a server it accepts them (the fake runtimes of the tests, or any peer that opens
//! streams).

mod frame;
mod session;

pub use frame::{
    dictionary, header, status, Frame, FrameDecoder, FrameEncoder, HeaderDecoder, HeaderEncoder, Headers, Setting, DEFAULT_WINDOW,
    FLAG_FIN, GOAWAY_OK, SETTINGS_INITIAL_WINDOW_SIZE,
};
pub use session::{Acceptor, Role, Session, SessionConfig, Stream, StreamReader, StreamWriter};

/// What can go wrong on a SPDY session or stream.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("spdy connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("spdy protocol error: {0}")]
    Protocol(String),
    #[error("spdy header compression: {0}")]
    Compression(String),
    #[error("spdy stream {stream_id} was reset by the peer (status {status})")]
    Reset { stream_id: u32, status: u32 },
    #[error("spdy stream {0} is closed for writing")]
    StreamClosed(u32),
    #[error("spdy session closed")]
    SessionClosed,
    #[error("spdy session is going away: no new streams")]
    GoingAway,
}
