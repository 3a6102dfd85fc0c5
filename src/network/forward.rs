//! Published ports on the wire: [`bind`] opens each mapping's host socket, and [`serve`] relays
//! what arrives on it to the container. rl binds in the host's network namespace, where the ports
//! must be seen; the forwarder process joins the container's network namespace and then runs
//! [`serve`] there, so every socket it creates to reach the container lives inside it and needs
//! no route from the host. This is rootlesskit's "builtin" port driver: no NAT, no helper binary.
//!
//! TCP is copied through a 256 KiB buffer per direction (faster here than `splice(2)` through a
//! default-size pipe, which moves 64 KiB a call); a thread per direction keeps each one a plain
//! blocking loop. UDP has no connections,
//! so each client address gets a "flow": its own socket connected to the target, which is how
//! replies find their way back to the right client.

use std::collections::HashMap;
use std::fmt;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, sockopt, MsgFlags};

use super::ports::{PortMapping, Proto};

/// How long a UDP flow lives without a datagram in either direction. Request/reply protocols
/// (DNS, NTP) finish well within it; it matches what NAT boxes commonly keep an idle UDP entry.
pub const UDP_FLOW_IDLE: Duration = Duration::from_secs(60);
/// A pause for a listener whose accept ran out of fds or memory: the pending connection stays
/// queued and readable, so polling it again at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Relay threads run a copy loop and little else; the default 2 MiB stack would dominate
/// the forwarder's footprint under many connections.
const THREAD_STACK: usize = 64 << 10;
/// Bytes each relay direction reads at once (on the heap, allocated per connection).
const COPY_BUFFER: usize = 256 << 10;
/// Accepts or datagrams handled per wake-up of one socket, so one busy port cannot starve the
/// others or the stop fd.
const BATCH: usize = 64;
/// The largest UDP payload over IPv4 or IPv6 without jumbograms.
const MAX_DATAGRAM: usize = 65535;

/// A mapping's host socket: a listening TCP socket or a bound UDP socket.
#[derive(Debug)]
pub struct Bound {
    /// The mapping with the host port the kernel actually gave.
    pub mapping: PortMapping,
    pub fd: OwnedFd,
}

/// Binding a port below `net.ipv4.ip_unprivileged_port_start` was refused: the caller can
/// downcast to this and suggest lowering the sysctl or picking a higher port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowPort {
    pub port: u16,
    pub start: u16,
}

impl fmt::Display for LowPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "permission denied: port {} is below net.ipv4.ip_unprivileged_port_start ({})", self.port, self.start)
    }
}

impl std::error::Error for LowPort {}

/// Binds `m` on the host: a listening TCP socket or a UDP socket, close-on-exec. No host
/// address means 0.0.0.0; host port 0 lets the kernel choose, and the result carries its pick.
/// std's sockets do what is wanted here (SO_REUSEADDR on TCP only, so a restarted container
/// can rebind over old TIME_WAIT connections while two UDP sockets can never share a port;
/// a backlog of 128); `[::]` takes IPv4 too unless `net.ipv6.bindv6only` is set, as Podman's.
pub fn bind(m: &PortMapping) -> Result<Bound> {
    let addr = SocketAddr::new(m.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), m.host_port);
    let bound = match m.proto {
        Proto::Tcp => TcpListener::bind(addr).and_then(|s| Ok((s.local_addr()?, OwnedFd::from(s)))),
        Proto::Udp => UdpSocket::bind(addr).and_then(|s| Ok((s.local_addr()?, OwnedFd::from(s)))),
    };
    let (local, fd) = bound
        .map_err(|e| bind_error(&e, m.host_port, unprivileged_port_start))
        .with_context(|| format!("publish port {}", m.host_side()))?;
    Ok(Bound { mapping: PortMapping { host_port: local.port(), ..m.clone() }, fd })
}

/// Binds every mapping, or none: on an error the sockets already bound are closed.
pub fn bind_all(ms: &[PortMapping]) -> Result<Vec<Bound>> {
    ms.iter().map(bind).collect()
}

fn bind_error(e: &std::io::Error, port: u16, start: impl FnOnce() -> u16) -> anyhow::Error {
    let Some(errno) = e.raw_os_error().map(Errno::from_raw) else { return anyhow!("{e}") };
    if errno == Errno::EACCES && port != 0 {
        let start = start();
        if port < start {
            return anyhow::Error::new(LowPort { port, start });
        }
    }
    anyhow!("{}", errno.desc().to_lowercase())
}

/// The first port an unprivileged user may bind; 1024 when the kernel predates the sysctl.
fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// Relays each bound socket to its target address (the container's address and port) until
/// `stop` is readable or hung up: the owner of the container holds its write end, so the
/// forwarder ends with it. Connections still open then are cut when the process exits.
/// A failing connection or flow only ends itself.
pub fn serve(listeners: Vec<(Bound, SocketAddr)>, stop: OwnedFd) -> Result<()> {
    serve_with(listeners, stop, UDP_FLOW_IDLE)
}

fn serve_with(listeners: Vec<(Bound, SocketAddr)>, stop: OwnedFd, udp_idle: Duration) -> Result<()> {
    let mut listeners: Vec<Listener> =
        listeners.into_iter().map(|(bound, target)| Listener::new(bound, target, udp_idle)).collect::<Result<_>>()?;
    loop {
        let now = Instant::now();
        let mut wake: Option<Duration> = None;
        let mut fds = vec![PollFd::new(stop.as_fd(), PollFlags::POLLIN)];
        let mut polled = Vec::new();
        for (i, l) in listeners.iter().enumerate() {
            match l.paused_until() {
                Some(until) if until > now => wake = Some(wake.map_or(until - now, |w| w.min(until - now))),
                _ => {
                    fds.push(PollFd::new(l.fd(), PollFlags::POLLIN));
                    polled.push(i);
                }
            }
        }
        let timeout =
            wake.map_or(PollTimeout::NONE, |w| PollTimeout::from(u16::try_from(w.as_millis() + 1).unwrap_or(u16::MAX)));
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(anyhow!("wait for connections: {}", e.desc().to_lowercase())),
        }
        if fds[0].any().unwrap_or(true) {
            return Ok(());
        }
        let ready: Vec<usize> =
            fds[1..].iter().zip(&polled).filter(|(fd, _)| fd.any().unwrap_or(false)).map(|(_, &i)| i).collect();
        drop(fds);
        for i in ready {
            listeners[i].ready();
        }
    }
}

enum Listener {
    Tcp { sock: TcpListener, target: SocketAddr, paused_until: Option<Instant> },
    Udp(UdpRelay),
}

impl Listener {
    fn new(bound: Bound, target: SocketAddr, udp_idle: Duration) -> Result<Listener> {
        let what = || format!("serve port {}", bound.mapping.host_side());
        Ok(match bound.mapping.proto {
            Proto::Tcp => {
                let sock = TcpListener::from(bound.fd);
                // A client that gives up between poll and accept would otherwise block the loop.
                sock.set_nonblocking(true).with_context(what)?;
                Listener::Tcp { sock, target, paused_until: None }
            }
            Proto::Udp => {
                let sock = UdpSocket::from(bound.fd);
                sock.set_nonblocking(true).with_context(what)?;
                Listener::Udp(UdpRelay::new(sock, target, udp_idle))
            }
        })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp { sock, .. } => sock.as_fd(),
            Listener::Udp(relay) => relay.shared.host.as_fd(),
        }
    }

    fn paused_until(&self) -> Option<Instant> {
        match self {
            Listener::Tcp { paused_until, .. } => *paused_until,
            Listener::Udp(_) => None,
        }
    }

    fn ready(&mut self) {
        match self {
            Listener::Tcp { sock, target, paused_until } => {
                *paused_until = None;
                for _ in 0..BATCH {
                    match sock.accept() {
                        Ok((client, _)) => spawn_connection(client, *target),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if out_of_resources(&e) => {
                            *paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                            break;
                        }
                        // ECONNABORTED and the like concern one client only.
                        Err(_) => {}
                    }
                }
            }
            Listener::Udp(relay) => relay.ready(),
        }
    }
}

fn out_of_resources(e: &std::io::Error) -> bool {
    [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM].iter().any(|&n| e.raw_os_error() == Some(n))
}

fn spawn_connection(client: TcpStream, target: SocketAddr) {
    // Failing to spawn drops the client, which closes it: the forwarder lives on.
    let _ = thread::Builder::new().name("rl-fwd-tcp".into()).stack_size(THREAD_STACK).spawn(move || {
        // Created after the forwarder joined the container's namespace, so it connects there.
        let Ok(upstream) = TcpStream::connect(target) else {
            // A reset, as if the client had reached the container's closed port itself.
            reset(&client);
            return;
        };
        // The client already chose how to batch its writes; Nagle here would only add delay.
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        thread::scope(|s| {
            let back = thread::Builder::new().stack_size(THREAD_STACK).spawn_scoped(s, || pump(&upstream, &client));
            if back.is_err() {
                reset(&client);
                reset(&upstream);
                return;
            }
            pump(&client, &upstream);
        });
    });
}

/// Moves `from` → `to` until `from` ends, then half-closes `to` so its peer sees the same EOF
/// while the other direction goes on. An error resets both ends, which also wakes the thread
/// pumping the other way.
fn pump(from: &TcpStream, to: &TcpStream) {
    match copy_all(from, to) {
        Ok(()) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        Err(_) => {
            reset(from);
            reset(to);
        }
    }
}

fn copy_all(from: &TcpStream, to: &TcpStream) -> nix::Result<()> {
    // A plain copy through one large buffer: on loopback this measured faster than splice(2)
    // through a default-size pipe (2.0 vs 1.35 GiB/s), which moves at most 64 KiB per call.
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = retry(|| nix::unistd::read(from, &mut buf))?;
        if n == 0 {
            return Ok(());
        }
        let mut done = 0;
        while done < n {
            done += retry(|| nix::unistd::write(to, &buf[done..n]))?;
        }
    }
}

fn retry(mut f: impl FnMut() -> nix::Result<usize>) -> nix::Result<usize> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// Ends the connection with a reset: SO_LINGER 0 makes the close send RST, and the shutdown
/// wakes a thread blocked on the socket now rather than at close.
fn reset(s: &TcpStream) {
    let _ = socket::setsockopt(s, sockopt::Linger, &libc::linger { l_onoff: 1, l_linger: 0 });
    let _ = s.shutdown(Shutdown::Both);
}

/// One published UDP port: the host socket and a flow per client address.
struct UdpRelay {
    shared: Arc<UdpShared>,
    buf: Vec<u8>,
    /// Joined on drop, so the port is closed and no reader is left once [`serve`] returns.
    readers: Vec<thread::JoinHandle<()>>,
}

struct UdpShared {
    host: UdpSocket,
    target: SocketAddr,
    idle: Duration,
    /// Locked to add a flow, to refresh one from the client side, and to expire one, so a
    /// flow never expires between a client datagram's lookup and its send.
    flows: Mutex<HashMap<SocketAddr, Arc<Flow>>>,
    stopped: AtomicBool,
    epoch: Instant,
}

struct Flow {
    sock: UdpSocket,
    /// Milliseconds since `UdpShared::epoch` at the last datagram either way.
    last: AtomicU64,
}

impl UdpShared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn idle_for(&self, flow: &Flow) -> Duration {
        Duration::from_millis(self.now_ms().saturating_sub(flow.last.load(Ordering::Relaxed)))
    }
}

impl UdpRelay {
    fn new(host: UdpSocket, target: SocketAddr, idle: Duration) -> UdpRelay {
        let shared = UdpShared {
            host,
            target,
            idle,
            flows: Mutex::new(HashMap::new()),
            stopped: AtomicBool::new(false),
            epoch: Instant::now(),
        };
        UdpRelay { shared: Arc::new(shared), buf: vec![0; MAX_DATAGRAM], readers: Vec::new() }
    }

    fn ready(&mut self) {
        for _ in 0..BATCH {
            let (n, client) = match self.shared.host.recv_from(&mut self.buf) {
                Ok(got) => got,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if let Some(flow) = self.flow(client) {
                // The flow socket blocks for its reader thread; this send must not stall the loop.
                let _ = socket::send(flow.sock.as_raw_fd(), &self.buf[..n], MsgFlags::MSG_DONTWAIT);
            }
        }
    }

    /// The flow for `client`, refreshed, or a new one; `None` if it cannot be made.
    fn flow(&mut self, client: SocketAddr) -> Option<Arc<Flow>> {
        let shared = &self.shared;
        let mut flows = shared.flows.lock().ok()?;
        if let Some(flow) = flows.get(&client) {
            flow.last.store(shared.now_ms(), Ordering::Relaxed);
            return Some(flow.clone());
        }
        let any =
            if shared.target.is_ipv4() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
        let sock = UdpSocket::bind(SocketAddr::new(any, 0)).ok()?;
        sock.connect(shared.target).ok()?;
        // Waking now and then bounds how long past its idle time a flow lingers.
        sock.set_read_timeout(Some((shared.idle / 4).max(Duration::from_millis(1)))).ok()?;
        let flow = Arc::new(Flow { sock, last: AtomicU64::new(shared.now_ms()) });
        let (reader_shared, reader_flow) = (shared.clone(), flow.clone());
        let reader = thread::Builder::new()
            .name("rl-fwd-udp".into())
            .stack_size(THREAD_STACK)
            .spawn(move || read_replies(&reader_shared, client, &reader_flow))
            .ok()?;
        flows.insert(client, flow.clone());
        self.readers.retain(|r| !r.is_finished());
        self.readers.push(reader);
        Some(flow)
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        if let Ok(flows) = self.shared.flows.lock() {
            for flow in flows.values() {
                // Wakes the reader blocked in recv; it then sees `stopped`.
                let _ = socket::shutdown(flow.sock.as_raw_fd(), socket::Shutdown::Both);
            }
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

/// A flow's reader thread: sends the target's replies back to `client` from the published
/// port, until the flow is idle too long or the relay stops.
fn read_replies(shared: &UdpShared, client: SocketAddr, flow: &Arc<Flow>) {
    let mut buf = vec![0; MAX_DATAGRAM];
    while !shared.stopped.load(Ordering::SeqCst) {
        match flow.sock.recv(&mut buf) {
            Ok(n) => {
                flow.last.store(shared.now_ms(), Ordering::Relaxed);
                // The host socket is non-blocking: a full send buffer drops the reply, as UDP may.
                let _ = shared.host.send_to(&buf[..n], client);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                let Ok(mut flows) = shared.flows.lock() else { return };
                if shared.idle_for(flow) >= shared.idle {
                    flows.remove(&client);
                    return;
                }
            }
            // The target's ICMP "port unreachable" for an earlier datagram: it may listen later.
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::Interrupted) => {}
            Err(_) => break,
        }
    }
    if let Ok(mut flows) = shared.flows.lock() {
        if flows.get(&client).is_some_and(|f| Arc::ptr_eq(f, flow)) {
            flows.remove(&client);
        }
    }
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
