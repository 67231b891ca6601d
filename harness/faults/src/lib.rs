//! Faults a pipeline hop can meet, injected into a TCP proxy in front of it.
//!
//! A [`Proxy`] listens on a loopback port of its own and forwards every connection to the hop's
//! real address, byte for byte, until told otherwise ([`Proxy::set`]):
//!
//! - [`Fault::Down`]: the hop is gone. Open connections are reset and new ones are accepted
//!   and reset at once, as a stopped broker's port would.
//! - [`Fault::Blackhole`]: the hop stops answering. Connections stay open (new ones are
//!   accepted) but nothing is forwarded either way until the fault ends; clients find out only
//!   through their own timeouts.
//! - [`Fault::Latency`]: every chunk is forwarded after the given delay.
//! - [`Fault::Bandwidth`]: each direction of each connection carries at most the given bytes
//!   per second.
//!
//! Clients point at [`Proxy::addr`] instead of the hop; the proxy itself adds one loopback
//! copy per chunk and nothing else.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does to the hop's traffic now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    #[default]
    None,
    /// Reset every connection, open or new.
    Down,
    /// Keep connections open but forward nothing.
    Blackhole,
    /// Forward each chunk after this delay.
    Latency(Duration),
    /// Forward at most this many bytes a second, each direction of each connection.
    Bandwidth(u64),
}

/// What the proxy has done so far.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections reset because the hop was down.
    pub reset: AtomicU64,
    /// Bytes forwarded, both ways.
    pub bytes: AtomicU64,
}

/// A fault-injecting TCP proxy in front of one hop. Stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    fault: watch::Sender<Fault>,
    stats: Arc<ProxyStats>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// A proxy on a free loopback port forwarding to `upstream`, with no fault.
    ///
    /// # Errors
    ///
    /// Fails when no loopback port can be bound.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (fault, _) = watch::channel(Fault::None);
        let stats = Arc::new(ProxyStats::default());
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream,
            fault.clone(),
            stats.clone(),
        ));
        Ok(Self {
            addr,
            upstream,
            fault,
            stats,
            accept,
        })
    }

    /// Where clients connect instead of the hop.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Applies `fault` from now on, to open connections and new ones.
    pub fn set(&self, fault: Fault) {
        tracing::info!(proxy = %self.addr, upstream = %self.upstream, ?fault, "fault proxy");
        self.fault.send_replace(fault);
    }

    /// What the proxy has done so far.
    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Open connections see the hop go down and end.
        self.fault.send_replace(Fault::Down);
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    fault: watch::Sender<Fault>,
    stats: Arc<ProxyStats>,
) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(e) => {
                // Out of descriptors, say: the hop is unreachable meanwhile, as it would be.
                tracing::warn!(error = %e, "fault proxy: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = client.set_nodelay(true);
        tokio::spawn(connection(
            client,
            upstream,
            fault.subscribe(),
            stats.clone(),
        ));
    }
}

/// One client connection: held while blackholed, reset while down, otherwise forwarded.
async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    mut fault: watch::Receiver<Fault>,
    stats: Arc<ProxyStats>,
) {
    // A blackholed hop accepts but never answers; wait until the fault changes.
    while *fault.borrow_and_update() == Fault::Blackhole {
        if fault.changed().await.is_err() {
            return;
        }
    }
    if *fault.borrow() == Fault::Down {
        reset(&client, &stats);
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        // The real hop is down: the client sees what it would see without the proxy.
        reset(&client, &stats);
        return;
    };
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pipe(client_read, server_write, fault.clone(), stats.clone());
    let down = pipe(server_read, client_write, fault, stats.clone());
    let (up, down) = tokio::join!(up, down);
    // Down both ways: reset both connections rather than closing them in order.
    if let (Ended::Down(client_read, server_write), Ended::Down(server_read, client_write)) =
        (up, down)
    {
        if let Ok(client) = client_read.reunite(client_write) {
            reset(&client, &stats);
        }
        if let Ok(server) = server_read.reunite(server_write) {
            let _ = server.set_zero_linger();
        }
    }
}

/// How a pipe ended: closed by a side, or with the hop down (holding its halves, so the
/// connections can be reset).
enum Ended {
    Closed,
    Down(OwnedReadHalf, OwnedWriteHalf),
}

/// Forwards `from` to `to` under the current fault until either side closes or the hop goes
/// down.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut fault: watch::Receiver<Fault>,
    stats: Arc<ProxyStats>,
) -> Ended {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let now = *fault.borrow_and_update();
        match now {
            Fault::Down => return Ended::Down(from, to),
            Fault::Blackhole => {
                if fault.changed().await.is_err() {
                    return Ended::Down(from, to);
                }
                continue;
            }
            Fault::None | Fault::Latency(_) | Fault::Bandwidth(_) => {}
        }
        // Under a bandwidth limit, chunks of a twentieth of a second's worth: the pace stays
        // even rather than a burst and a long pause.
        let chunk = match now {
            Fault::Bandwidth(bps) => usize::try_from(bps / 20)
                .unwrap_or(usize::MAX)
                .clamp(1, buf.len()),
            _ => buf.len(),
        };
        let read = tokio::select! {
            r = from.read(&mut buf[..chunk]) => r,
            changed = fault.changed() => {
                if changed.is_err() {
                    return Ended::Down(from, to);
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return Ended::Closed;
            }
            Ok(n) => n,
        };
        if let Fault::Latency(delay) = now {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return Ended::Closed;
        }
        if let Fault::Bandwidth(bps) = now {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / bps.max(1) as f64)).await;
        }
        stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Closes `stream` with a reset (RST), as a vanished peer's kernel would.
fn reset(stream: &TcpStream, stats: &ProxyStats) {
    stats.reset.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_zero_linger();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server; returns its address.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, text: &[u8]) -> io::Result<Vec<u8>> {
        stream.write_all(text).await?;
        let mut back = vec![0u8; text.len()];
        stream.read_exact(&mut back).await?;
        Ok(back)
    }

    #[tokio::test]
    async fn forwards_then_resets_while_down_then_forwards_again() {
        let proxy = Proxy::start(echo().await).await.expect("proxy");
        let mut open = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(round_trip(&mut open, b"ping").await.expect("echo"), b"ping");

        proxy.set(Fault::Down);
        // The open connection is reset...
        let gone = tokio::time::timeout(Duration::from_secs(5), round_trip(&mut open, b"x"))
            .await
            .expect("ends promptly");
        assert!(gone.is_err(), "{gone:?}");
        // ...and a new one is accepted and reset at once.
        let mut new = TcpStream::connect(proxy.addr()).await.expect("accepted");
        let refused = tokio::time::timeout(Duration::from_secs(5), round_trip(&mut new, b"x"))
            .await
            .expect("ends promptly");
        assert!(refused.is_err(), "{refused:?}");
        assert!(proxy.stats().reset.load(Ordering::Relaxed) >= 2);

        proxy.set(Fault::None);
        let mut back = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(round_trip(&mut back, b"pong").await.expect("echo"), b"pong");
    }

    #[tokio::test]
    async fn a_blackhole_holds_bytes_until_it_ends() {
        let proxy = Proxy::start(echo().await).await.expect("proxy");
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(round_trip(&mut stream, b"a").await.expect("echo"), b"a");
        proxy.set(Fault::Blackhole);
        stream.write_all(b"held").await.expect("written");
        let mut back = [0u8; 4];
        let waited =
            tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut back)).await;
        assert!(waited.is_err(), "nothing comes back through a blackhole");
        proxy.set(Fault::None);
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut back))
            .await
            .expect("released")
            .expect("read");
        assert_eq!(&back, b"held");
    }

    #[tokio::test]
    async fn latency_delays_every_chunk() {
        let proxy = Proxy::start(echo().await).await.expect("proxy");
        proxy.set(Fault::Latency(Duration::from_millis(50)));
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        let start = std::time::Instant::now();
        assert_eq!(
            round_trip(&mut stream, b"slow").await.expect("echo"),
            b"slow"
        );
        // Once each way.
        assert!(
            start.elapsed() >= Duration::from_millis(100),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_bandwidth_limit_paces_each_direction() {
        let proxy = Proxy::start(echo().await).await.expect("proxy");
        proxy.set(Fault::Bandwidth(8_000));
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        let text = vec![7u8; 4_000];
        let start = std::time::Instant::now();
        assert_eq!(round_trip(&mut stream, &text).await.expect("echo"), text);
        // 4000 bytes at 8000 B/s is half a second; the echo streams them back meanwhile, so
        // the two directions overlap.
        assert!(
            start.elapsed() >= Duration::from_millis(450),
            "{:?}",
            start.elapsed()
        );
        proxy.set(Fault::None);
        let start = std::time::Instant::now();
        assert_eq!(round_trip(&mut stream, &text).await.expect("echo"), text);
        assert!(start.elapsed() < Duration::from_millis(500));
    }
}
