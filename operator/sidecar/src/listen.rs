//! The sidecar's side of the measurement line protocol: it accepts TCP connections (the app's
//! reporter reconnects whenever it lost the connection, and a restarted app connects anew),
//! reads one JSON [`Measurement`] per line and hands each to the aggregation loop. A line that is
//! not a measurement is logged and skipped; a line longer than
//! [`MAX_MEASUREMENT_LINE`] closes its connection, so a confused peer cannot grow the
//! sidecar's memory.

use std::net::SocketAddr;

use mysimbdp_ingest_sdk::contract::{MAX_MEASUREMENT_LINE, Measurement};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tracing::{debug, info, warn};

/// Decodes one line through the contract's checks: `Ok(None)` for a blank line, the reason
/// when it is not a measurement.
pub fn parse_line(line: &[u8]) -> Result<Option<Measurement>, String> {
    Measurement::decode(line).map_err(|refused| refused.to_string())
}

/// Accepts connections on `listener` for ever, each read on a task of its own.
pub async fn serve(listener: TcpListener, sink: mpsc::Sender<Measurement>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                info!(%peer, "app connected");
                tokio::spawn(read_lines(stream, peer, sink.clone()));
            }
            Err(e) => {
                // E.g. out of file descriptors: wait a moment rather than spin.
                warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

async fn read_lines(stream: TcpStream, peer: SocketAddr, sink: mpsc::Sender<Measurement>) {
    let mut reader = BufReader::with_capacity(4096, stream);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let limit = (MAX_MEASUREMENT_LINE + 1) as u64;
        match (&mut reader).take(limit).read_until(b'\n', &mut line).await {
            Ok(0) => {
                info!(%peer, "app disconnected");
                return;
            }
            Ok(_) if !line.ends_with(b"\n") && line.len() > MAX_MEASUREMENT_LINE => {
                warn!(%peer, limit = MAX_MEASUREMENT_LINE, "measurement line too long; closing the connection");
                return;
            }
            Ok(_) => match parse_line(&line) {
                Ok(Some(measurement)) => {
                    if sink.send(measurement).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(reason) => warn!(%peer, %reason, "skipping a line that is not a measurement"),
            },
            Err(e) => {
                debug!(%peer, error = %e, "reading from the app failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_measurements_blank_or_refused() {
        let m = parse_line(b"{\"messages\":3,\"bytes\":9,\"ingestionMs\":1.5,\"deadLettered\":1}\n").unwrap().unwrap();
        assert_eq!(m, Measurement { messages: 3, bytes: 9, ingestion_ms: 1.5, dead_lettered: 1 });
        let partial = parse_line(b"{\"messages\":3,\"future\":true}\r\n").unwrap().unwrap();
        assert_eq!((partial.messages, partial.bytes), (3, 0), "missing fields are zero, unknown ones ignored");
        assert_eq!(parse_line(b"  \n").unwrap(), None);
        assert!(parse_line(b"messages=3\n").unwrap_err().contains("not valid JSON"));
        assert!(parse_line(b"{\"messages\":-1}\n").is_err());
        assert!(parse_line(b"{\"messages\":18446744073709551615}\n").unwrap_err().contains("messages"));
        assert!(parse_line(b"\xff\n").unwrap_err().contains("not valid JSON"));
    }
}
