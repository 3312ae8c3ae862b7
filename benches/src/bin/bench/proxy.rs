//! Counting database round trips exactly: a pass-through proxy between a server and
//! PostgreSQL that parses the frontend (client -> server) protocol stream.
//!
//! Every `Sync` ('S') of the extended protocol and every simple `Query` ('Q') makes the
//! client wait for the server's `ReadyForQuery`: one round trip each. A `Sync` preceded by
//! an `Execute` finishes a statement; a bare `Sync` is a liveness ping (sqlx sends one when
//! a connection goes back to the pool, and another before lending it out unless
//! `test_before_acquire(false)`). pg_stat_statements cannot see pings, hence this.
//!
//! The proxy adds latency, so it is used only in a separate, short counting pass, never
//! while throughput is measured.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream, UnixStream},
};

/// Where the real server listens.
#[derive(Debug, Clone)]
pub enum Upstream {
    Unix(PathBuf),
    Tcp(String),
}

#[derive(Debug, Default)]
pub struct Counters {
    statement_syncs: AtomicU64,
    empty_syncs: AtomicU64,
    simple_queries: AtomicU64,
    executes: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Round trips that ran at least one statement (Sync after Execute, or simple Query).
    pub statement_round_trips: u64,
    /// Bare Syncs: pool pings.
    pub ping_round_trips: u64,
    pub executes: u64,
}

impl Snapshot {
    pub fn round_trips(&self) -> u64 {
        self.statement_round_trips + self.ping_round_trips
    }

    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            statement_round_trips: self.statement_round_trips - earlier.statement_round_trips,
            ping_round_trips: self.ping_round_trips - earlier.ping_round_trips,
            executes: self.executes - earlier.executes,
        }
    }
}

impl Counters {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            statement_round_trips: self.statement_syncs.load(Ordering::Relaxed)
                + self.simple_queries.load(Ordering::Relaxed),
            ping_round_trips: self.empty_syncs.load(Ordering::Relaxed),
            executes: self.executes.load(Ordering::Relaxed),
        }
    }
}

/// Starts the proxy on 127.0.0.1 (ephemeral port); it runs until the runtime ends or the
/// returned handle is aborted.
pub async fn start(
    upstream: Upstream,
) -> anyhow::Result<(u16, Arc<Counters>, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let counters = Arc::new(Counters::default());
    let shared = Arc::clone(&counters);
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let counters = Arc::clone(&shared);
            tokio::spawn(async move {
                let _ = client.set_nodelay(true);
                let result = match upstream {
                    Upstream::Unix(path) => match UnixStream::connect(&path).await {
                        Ok(server) => relay(client, server, counters).await,
                        Err(e) => Err(e),
                    },
                    Upstream::Tcp(addr) => match TcpStream::connect(&addr).await {
                        Ok(server) => {
                            let _ = server.set_nodelay(true);
                            relay(client, server, counters).await
                        }
                        Err(e) => Err(e),
                    },
                };
                if let Err(e) = result {
                    eprintln!("bench: census proxy connection ended: {e}");
                }
            });
        }
    });
    Ok((port, counters, task))
}

async fn relay<S>(client: TcpStream, server: S, counters: Arc<Counters>) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = tokio::io::split(server);
    let downstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    let mut parser = FrontendParser::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = client_read.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        parser.feed(&buf[..n], &counters);
        server_write.write_all(&buf[..n]).await?;
    }
    let _ = server_write.shutdown().await;
    downstream.abort();
    Ok(())
}

/// Incremental parser of the frontend message stream.
#[derive(Default)]
struct FrontendParser {
    pending: Vec<u8>,
    /// Past the startup packet: messages carry a type byte.
    typed: bool,
    /// An Execute was sent since the last Sync.
    executed: bool,
}

/// Startup-phase request codes that are followed by another startup packet.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

impl FrontendParser {
    fn feed(&mut self, bytes: &[u8], counters: &Counters) {
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            let rest = &self.pending[at..];
            if self.typed {
                if rest.len() < 5 {
                    break;
                }
                let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
                if rest.len() < 1 + len {
                    break;
                }
                match rest[0] {
                    b'E' => {
                        self.executed = true;
                        counters.executes.fetch_add(1, Ordering::Relaxed);
                    }
                    b'S' => {
                        let counter = if self.executed {
                            &counters.statement_syncs
                        } else {
                            &counters.empty_syncs
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        self.executed = false;
                    }
                    b'Q' => {
                        counters.simple_queries.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
                at += 1 + len;
            } else {
                if rest.len() < 8 {
                    break;
                }
                let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                if rest.len() < len {
                    break;
                }
                let code = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
                if code != SSL_REQUEST && code != GSSENC_REQUEST {
                    self.typed = true;
                }
                at += len.max(8);
            }
        }
        self.pending.drain(..at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn counts_statement_syncs_pings_and_queries_across_split_reads() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&8u32.to_be_bytes());
        stream.extend_from_slice(&SSL_REQUEST.to_be_bytes());
        stream.extend_from_slice(&12u32.to_be_bytes());
        stream.extend_from_slice(&196_608u32.to_be_bytes());
        stream.extend_from_slice(b"user");
        stream.extend(message(b'B', b"portal"));
        stream.extend(message(b'E', b"\0\0\0\0\0"));
        stream.extend(message(b'S', b""));
        stream.extend(message(b'S', b""));
        stream.extend(message(b'Q', b"SELECT 1\0"));
        let counters = Counters::default();
        let mut parser = FrontendParser::default();
        for chunk in stream.chunks(3) {
            parser.feed(chunk, &counters);
        }
        let s = counters.snapshot();
        assert_eq!(s.statement_round_trips, 2);
        assert_eq!(s.ping_round_trips, 1);
        assert_eq!(s.executes, 1);
    }
}
