//! port-forward: kubectl's SPDY session (tunneled in a WebSocket with subprotocol
//! `SPDY/3.1+portforward.k8s.io`, or a plain SPDY/3.1 upgrade) bridged stream for stream to a
//! SPDY session with the runtime's streaming server, which connects to the port inside the
//! pod's network namespace. kubectl opens, per local connection, a pair of streams (`streamType`
//! error and data, with `port` and `requestID`); each is mirrored with the same headers.

use super::remotecommand::{dial, normal_closure};
use super::spdy::{self, Session, Stream};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

pub const WEBSOCKET_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
pub const SPDY_PROTOCOL: &str = "portforward.k8s.io";

/// A byte stream carried in binary WebSocket messages, as kubectl's tunneling connection sends it.
pub fn websocket_bytes<S>(websocket: tokio_tungstenite::WebSocketStream<S>) -> tokio::io::DuplexStream
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut read_half, mut write_half) = tokio::io::split(theirs);
    let (mut ws_out, mut ws_in) = websocket.split();
    tokio::spawn(async move {
        while let Some(Ok(message)) = ws_in.next().await {
            match message {
                Message::Binary(data) if write_half.write_all(&data).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = write_half.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            match read_half.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if ws_out.send(Message::binary(buffer[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = ws_out.send(normal_closure()).await;
    });
    ours
}

/// Serves kubectl's session `client` (streams it opens arrive on `accepted`) against the runtime.
pub async fn bridge(mut accepted: tokio::sync::mpsc::UnboundedReceiver<Stream>, client: Session, runtime_url: String) {
    let runtime = match dial(&runtime_url, SPDY_PROTOCOL).await {
        Ok(session) => session,
        Err(error) => {
            tracing::warn!(%error, "cannot reach the runtime's port-forward server");
            client.close();
            return;
        }
    };
    while let Some(stream) = accepted.recv().await {
        let upstream = match runtime.open(&stream.headers) {
            Ok(upstream) => upstream,
            Err(_) => break,
        };
        tracing::debug!(port = spdy::header(&stream.headers, "port").unwrap_or_default(), kind = spdy::header(&stream.headers, "streamType").unwrap_or_default(), "port-forward stream");
        pipe(stream, upstream);
    }
    runtime.close();
}

/// Copies both directions between two streams, passing on each side's end (FIN).
fn pipe(a: Stream, b: Stream) {
    let Stream { incoming: mut a_in, sender: a_out, .. } = a;
    let Stream { incoming: mut b_in, sender: b_out, .. } = b;
    tokio::spawn(async move {
        while let Some(data) = a_in.recv().await {
            if b_out.send(&data).is_err() {
                return;
            }
        }
        let _ = b_out.finish();
    });
    tokio::spawn(async move {
        while let Some(data) = b_in.recv().await {
            if a_out.send(&data).is_err() {
                return;
            }
        }
        let _ = a_out.finish();
    });
}
