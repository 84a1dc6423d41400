//! exec and attach: kubectl's WebSocket (`v5.channel.k8s.io`, or `v4`) bridged to the runtime's
//! streaming server over SPDY (`v4.channel.k8s.io`), which — unlike its WebSocket form — can
//! carry the end of stdin that `kubectl cp` and `exec -i` rely on.
//!
//! WebSocket messages are binary, first byte = channel: 0 stdin, 1 stdout, 2 stderr, 3 error
//! (a metav1.Status), 4 resize; v5 adds `[255, channel]`, the client closing a channel.

use super::spdy::{Session, SpdyError};
use super::targets::StreamOptions;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

pub const WEBSOCKET_PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// Dials a runtime streaming URL (`http://127.0.0.1:PORT/exec/TOKEN`) and upgrades to SPDY/3.1
/// with `protocol`.
pub async fn dial(url: &str, protocol: &str) -> Result<Session, SpdyError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| SpdyError::Protocol(format!("unsupported runtime streaming URL {url}")))?;
    let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut tcp = tokio::net::TcpStream::connect(authority).await?;
    tcp.set_nodelay(true)?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\nContent-Length: 0\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await? == 0 || head.len() > 16 * 1024 {
            return Err(SpdyError::Protocol("the runtime's streaming server closed the upgrade".into()));
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    if !text.starts_with("HTTP/1.1 101") {
        let status = text.lines().next().unwrap_or_default().to_owned();
        return Err(SpdyError::Protocol(format!("the runtime's streaming server refused the upgrade: {status}")));
    }
    Ok(Session::start(tcp, true).0)
}

/// A close frame with code 1000: kubectl's reader treats anything else (even an empty close) as
/// an error.
pub fn normal_closure() -> Message {
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))
}

fn status_success() -> Vec<u8> {
    br#"{"metadata":{},"status":"Success"}"#.to_vec()
}

/// Bridges an upgraded kubectl WebSocket to the runtime's exec/attach URL until the command ends.
pub async fn bridge<S>(websocket: tokio_tungstenite::WebSocketStream<S>, runtime_url: String, options: StreamOptions)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut ws_out, mut ws_in) = websocket.split();
    let session = match dial(&runtime_url, "v4.channel.k8s.io").await {
        Ok(session) => session,
        Err(error) => {
            let status = serde_json::json!({"metadata": {}, "status": "Failure", "message": error.to_string(), "reason": "InternalError", "code": 500});
            let mut frame = vec![ERROR];
            frame.extend_from_slice(status.to_string().as_bytes());
            let _ = ws_out.send(Message::binary(frame)).await;
            let _ = ws_out.send(normal_closure()).await;
            return;
        }
    };
    let open = |kind: &str| session.open(&vec![("streamType".to_owned(), kind.to_owned())]);
    // kubectl's order: the error stream first, then the data streams.
    let opened = (|| -> Result<_, SpdyError> {
        let error = open("error")?;
        let stdin = if options.stdin { Some(open("stdin")?) } else { None };
        let stdout = if options.stdout { Some(open("stdout")?) } else { None };
        let stderr = if options.stderr && !options.tty { Some(open("stderr")?) } else { None };
        let resize = if options.tty { Some(open("resize")?) } else { None };
        Ok((error, stdin, stdout, stderr, resize))
    })();
    let Ok((mut error, stdin, stdout, stderr, resize)) = opened else {
        let _ = ws_out.send(normal_closure()).await;
        return;
    };

    // kubectl → runtime.
    let stdin_sender = stdin.as_ref().map(|s| s.sender.clone());
    let resize_sender = resize.as_ref().map(|s| s.sender.clone());
    let upstream = tokio::spawn(async move {
        while let Some(Ok(message)) = ws_in.next().await {
            let data = match message {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&channel, payload)) = data.split_first() else { continue };
            match channel {
                STDIN => {
                    if let Some(sender) = &stdin_sender {
                        let _ = sender.send(payload);
                    }
                }
                RESIZE => {
                    if let Some(sender) = &resize_sender {
                        let _ = sender.send(payload);
                    }
                }
                CLOSE if payload.first() == Some(&STDIN) => {
                    if let Some(sender) = &stdin_sender {
                        let _ = sender.finish();
                    }
                }
                _ => {}
            }
        }
    });

    // runtime → kubectl: output until both output streams end, then the status.
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let mut pumps = Vec::new();
    for (channel, stream) in [(STDOUT, stdout), (STDERR, stderr)] {
        if let Some(mut stream) = stream {
            let out = out_tx.clone();
            pumps.push(tokio::spawn(async move {
                while let Some(data) = stream.incoming.recv().await {
                    let mut frame = Vec::with_capacity(data.len() + 1);
                    frame.push(channel);
                    frame.extend_from_slice(&data);
                    if out.send(frame).is_err() {
                        break;
                    }
                }
            }));
        }
    }
    drop(out_tx);
    let writer = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if ws_out.send(Message::binary(frame)).await.is_err() {
                break;
            }
        }
        ws_out
    });
    let mut status = Vec::new();
    while let Some(data) = error.incoming.recv().await {
        status.extend_from_slice(&data);
    }
    for pump in pumps {
        let _ = pump.await;
    }
    if let Ok(mut ws_out) = writer.await {
        let mut frame = vec![ERROR];
        frame.extend_from_slice(if status.is_empty() { status_success() } else { status }.as_slice());
        let _ = ws_out.send(Message::binary(frame)).await;
        let _ = ws_out.send(normal_closure()).await;
    }
    upstream.abort();
    session.close();
    drop(stdin);
    drop(resize);
}
