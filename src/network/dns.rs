//! DNS for containers on user networks: one [`Responder`] per network, listening on the network's
//! gateway (`10.89.0.1:53`, UDP) inside the per-user network daemon's namespace (`netd`).
//!
//! The daemon runs every responder in its single-threaded poll loop: it polls [`Responder::fds`]
//! and calls [`Responder::handle`], which never blocks. Names of containers attached to *that*
//! network ([`Records`], kept by the daemon as containers attach and leave) are answered here;
//! anything else goes to the network's upstream resolver, or gets NXDOMAIN on an internal
//! network. [`decide`] is the pure part (bytes in, verdict out), so it is tested without sockets.
//! TCP DNS is not served: local answers fit in UDP, and an upstream reply too large for the
//! client's UDP size reaches it truncated (TC set), as upstream sent it.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

/// The search domain containers get in resolv.conf: `web.dns.rl` is `web`.
pub const DOMAIN: &str = "dns.rl";

/// TTL of local answers: short, since a restarted container may come back with another address.
const TTL: u32 = 10;
/// How long a forwarded query waits for upstream: glibc's resolver waits as long before it retries.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Forwarded queries in flight per network; past it, clients get SERVFAIL at once.
const MAX_PENDING: usize = 1024;
/// Datagrams read from one socket per [`Responder::handle`], so a flood on one network cannot
/// starve the rest of the poll loop (poll is level-triggered: the rest is read next round).
const BATCH: usize = 64;
/// The EDNS payload size we announce (the DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;

/// The names on one network: container names, aliases and 12-hex short ids, each to its addresses.
#[derive(Debug, Default, Clone)]
pub struct Records {
    /// Lowercase, without a trailing dot or the [`DOMAIN`] suffix.
    names: HashMap<String, Vec<Ipv4Addr>>,
    /// For PTR: each address's first name (the container's name, as the daemon lists it first).
    by_ip: HashMap<Ipv4Addr, String>,
}

impl Records {
    /// Gives every name in `names` the address `ip` (a name several containers share resolves to
    /// all of them). The first name is the one reverse lookups of `ip` answer.
    pub fn insert(&mut self, names: &[String], ip: Ipv4Addr) {
        for name in names {
            let (key, _) = normalize(name);
            if key.is_empty() {
                continue;
            }
            self.by_ip.entry(ip).or_insert_with(|| key.clone());
            let ips = self.names.entry(key).or_default();
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }

    /// Forgets the address `ip` and every name left without one.
    pub fn remove_ip(&mut self, ip: Ipv4Addr) {
        self.names.retain(|_, ips| {
            ips.retain(|i| *i != ip);
            !ips.is_empty()
        });
        self.by_ip.remove(&ip);
    }

    /// Adds every name of `other` (a container on several networks resolves the names of all).
    pub fn merge(&mut self, other: &Records) {
        for (name, ips) in &other.names {
            let mine = self.names.entry(name.clone()).or_default();
            mine.extend(ips.iter().filter(|ip| !mine.contains(ip)).copied().collect::<Vec<_>>());
        }
        for (ip, name) in &other.by_ip {
            self.by_ip.entry(*ip).or_insert_with(|| name.clone());
        }
    }

    /// The addresses of `name`: any case, with or without a trailing dot or `.dns.rl`.
    pub fn lookup(&self, name: &str) -> Vec<Ipv4Addr> {
        self.names.get(&normalize(name).0).cloned().unwrap_or_default()
    }

    /// The name reverse lookups of `ip` answer.
    pub fn name_of(&self, ip: Ipv4Addr) -> Option<&str> {
        self.by_ip.get(&ip).map(String::as_str)
    }
}

/// `name` lowercased, without its trailing dot and [`DOMAIN`] suffix, and whether it was under
/// [`DOMAIN`] (such names are ours alone: never forwarded).
fn normalize(name: &str) -> (String, bool) {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name == DOMAIN {
        return (String::new(), true);
    }
    match name.strip_suffix(DOMAIN).and_then(|n| n.strip_suffix('.')) {
        Some(short) => (short.to_string(), true),
        None => (name, false),
    }
}

/// What to do with one datagram received on the listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send these bytes back to the client.
    Answer(Vec<u8>),
    /// Send the query to the upstream resolver.
    Forward,
    /// Ignore it: not a DNS query, or a response (answering those could loop).
    Drop,
}

/// Decides what to answer to the datagram `query`, from `records`; only ever [`Decision::Forward`]
/// when `has_upstream`.
pub fn decide(query: &[u8], records: &Records, has_upstream: bool) -> Decision {
    let msg = match Message::from_vec(query) {
        Ok(msg) => msg,
        Err(_) => return error_reply(query, ResponseCode::FormErr, has_upstream),
    };
    if msg.metadata.message_type != MessageType::Query {
        return Decision::Drop;
    }
    if msg.metadata.op_code != OpCode::Query {
        return reply(&msg, ResponseCode::NotImp, Vec::new(), false, has_upstream);
    }
    let [question] = msg.queries.as_slice() else {
        return reply(&msg, ResponseCode::FormErr, Vec::new(), false, has_upstream);
    };
    let class = question.query_class();
    let local = if class == DNSClass::IN || class == DNSClass::ANY { lookup(question, records) } else { None };
    match local {
        Some((rcode, answers)) => reply(&msg, rcode, answers, true, has_upstream),
        None if has_upstream => Decision::Forward,
        None => reply(&msg, ResponseCode::NXDomain, Vec::new(), false, has_upstream),
    }
}

/// Answers `question` from `records` (a name that exists gets NOERROR, with no records for other
/// types: NODATA), or `None` if the name is not ours.
fn lookup(question: &hickory_proto::op::Query, records: &Records) -> Option<(ResponseCode, Vec<Record>)> {
    let name = question.name();
    // Escapes mean bytes no container name has.
    let text = name.to_ascii();
    if text.contains('\\') {
        return None;
    }
    let (key, ours) = normalize(&text);
    let qtype = question.query_type();
    if let Some(ip) = reverse(&key) {
        let target = records.name_of(ip)?;
        let target = Name::from_ascii(format!("{target}.{DOMAIN}.")).ok()?;
        let answers = match qtype {
            RecordType::PTR | RecordType::ANY => vec![Record::from_rdata(name.clone(), TTL, RData::PTR(PTR(target)))],
            _ => Vec::new(),
        };
        return Some((ResponseCode::NoError, answers));
    }
    match records.names.get(&key) {
        Some(ips) if !key.is_empty() => {
            let answers = match qtype {
                RecordType::A | RecordType::ANY => {
                    ips.iter().map(|ip| Record::from_rdata(name.clone(), TTL, RData::A(A(*ip)))).collect()
                }
                _ => Vec::new(),
            };
            Some((ResponseCode::NoError, answers))
        }
        // The zone's apex exists (NODATA); every other name under it is ours to deny.
        _ if ours && key.is_empty() => Some((ResponseCode::NoError, Vec::new())),
        _ if ours => Some((ResponseCode::NXDomain, Vec::new())),
        _ => None,
    }
}

/// The address of a (normalized) reverse name `d.c.b.a.in-addr.arpa`.
fn reverse(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut parts = rest.split('.');
    for octet in octets.iter_mut().rev() {
        *octet = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// A response to `query` with `rcode` and `answers`, cut to the client's UDP size (TC set, no
/// answers) when it does not fit.
fn reply(query: &Message, rcode: ResponseCode, answers: Vec<Record>, authoritative: bool, ra: bool) -> Decision {
    let mut r = Message::response(query.metadata.id, query.metadata.op_code);
    r.metadata.recursion_desired = query.metadata.recursion_desired;
    r.metadata.checking_disabled = query.metadata.checking_disabled;
    r.metadata.recursion_available = ra;
    r.metadata.authoritative = authoritative;
    r.metadata.response_code = rcode;
    r.queries = query.queries.clone();
    r.answers = answers;
    // RFC 6891 §6.1.1: a query with OPT gets a response with OPT.
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        r.edns = Some(edns);
    }
    let limit = query.edns.as_ref().map_or(512, |e| usize::from(e.max_payload().max(512)));
    match r.to_vec() {
        Ok(bytes) if bytes.len() <= limit => Decision::Answer(bytes),
        Ok(_) => {
            r.answers.clear();
            r.metadata.truncation = true;
            r.to_vec().map_or(Decision::Drop, Decision::Answer)
        }
        Err(_) => Decision::Drop,
    }
}

/// A response with `rcode` to the query `datagram`: with its question if it parses, header only
/// if just the header does; nothing to a response or to noise.
fn error_reply(datagram: &[u8], rcode: ResponseCode, ra: bool) -> Decision {
    if let Ok(msg) = Message::from_vec(datagram) {
        let query = msg.metadata.message_type == MessageType::Query;
        return if query { reply(&msg, rcode, Vec::new(), false, ra) } else { Decision::Drop };
    }
    match Header::read(&mut BinDecoder::new(datagram)) {
        Ok(h) if h.metadata.message_type == MessageType::Query => {
            let mut r = Message::error_msg(h.metadata.id, h.metadata.op_code, rcode);
            r.metadata.recursion_desired = h.metadata.recursion_desired;
            r.to_vec().map_or(Decision::Drop, Decision::Answer)
        }
        _ => Decision::Drop,
    }
}

/// A query sent upstream under a fresh id, waiting for its reply.
struct Pending {
    client: SocketAddr,
    client_id: u16,
    deadline: Instant,
}

/// One network's DNS server: its listening socket, its upstream, and the queries in flight.
pub struct Responder {
    listen: UdpSocket,
    /// Where `listen` is bound, for error messages.
    at: SocketAddr,
    /// Connected, so the kernel drops datagrams from anyone but the upstream resolver.
    upstream: Option<(UdpSocket, SocketAddr)>,
    /// By the id the query went upstream with.
    pending: HashMap<u16, Pending>,
    ids: Ids,
    /// One receive buffer for both sockets: the largest UDP payload, so nothing is cut.
    buf: Box<[u8]>,
}

impl Responder {
    /// A responder answering on `listen` (bound by the caller, e.g. to the gateway's port 53 inside
    /// the daemon's namespace) and forwarding to `upstream`, if any (none: an internal network).
    /// The upstream socket is made here, in the calling thread's network namespace.
    pub fn new(listen: UdpSocket, upstream: Option<SocketAddr>) -> Result<Responder> {
        let at = listen.local_addr().context("read the address of the DNS socket")?;
        listen.set_nonblocking(true).with_context(|| format!("make DNS socket `{at}` non-blocking"))?;
        let upstream = match upstream {
            Some(addr) => Some((connect(addr).with_context(|| format!("connect to upstream DNS `{addr}`"))?, addr)),
            None => None,
        };
        let ids = Ids::new();
        Ok(Responder { listen, at, upstream, pending: HashMap::new(), ids, buf: vec![0; 65535].into_boxed_slice() })
    }

    /// The sockets to poll for readability: the listening one, then the upstream one if any.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds = vec![self.listen.as_fd()];
        fds.extend(self.upstream.as_ref().map(|(s, _)| s.as_fd()));
        fds
    }

    /// When the oldest forwarded query expires, so the poll loop can wake for it (a later
    /// [`Responder::handle`] drops it; the client's resolver retries on its own).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Reads what both sockets have (never blocks): answers queries from `records` or forwards
    /// them, relays upstream replies, and drops forwarded queries older than 5 s. Failing to send
    /// one datagram is not an error (UDP may lose it anyway); failing to receive is.
    /// `views`: the names some clients see instead of `records` (those on several networks).
    pub fn handle(&mut self, records: &Records, views: &HashMap<Ipv4Addr, Records>) -> Result<()> {
        let now = Instant::now();
        self.pending.retain(|_, p| p.deadline > now);
        let queries = self.queries(records, views, now);
        let replies = self.replies();
        queries.and(replies)
    }

    fn queries(&mut self, records: &Records, views: &HashMap<Ipv4Addr, Records>, now: Instant) -> Result<()> {
        for _ in 0..BATCH {
            let (len, client) = match self.listen.recv_from(&mut self.buf) {
                Ok(got) => got,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                // Refused: an ICMP error for an answer to a client that left (IP_RECVERR only).
                Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::ConnectionRefused) => continue,
                Err(e) => return Err(e).with_context(|| format!("receive a DNS query on `{}`", self.at)),
            };
            let has_upstream = self.upstream.is_some();
            let seen = match client.ip() {
                std::net::IpAddr::V4(ip) => views.get(&ip).unwrap_or(records),
                std::net::IpAddr::V6(_) => records,
            };
            let answer = match decide(&self.buf[..len], seen, has_upstream) {
                Decision::Forward if self.forward(len, client, now) => continue,
                Decision::Forward => error_reply(&self.buf[..len], ResponseCode::ServFail, has_upstream),
                d => d,
            };
            if let Decision::Answer(bytes) = answer {
                let _ = self.listen.send_to(&bytes, client);
            }
        }
        Ok(())
    }

    /// Sends the query in `buf[..len]` upstream under a fresh id; false if it could not be sent
    /// (the buffer then holds the query as it came).
    fn forward(&mut self, len: usize, client: SocketAddr, now: Instant) -> bool {
        let Some((up, _)) = &self.upstream else { return false };
        if self.pending.len() >= MAX_PENDING || len < 2 {
            return false;
        }
        let id = loop {
            let id = self.ids.next();
            if !self.pending.contains_key(&id) {
                break id;
            }
        };
        let query = &mut self.buf[..len];
        let client_id = u16::from_be_bytes([query[0], query[1]]);
        query[..2].copy_from_slice(&id.to_be_bytes());
        if up.send(query).is_err() {
            query[..2].copy_from_slice(&client_id.to_be_bytes());
            return false;
        }
        self.pending.insert(id, Pending { client, client_id, deadline: now + TIMEOUT });
        true
    }

    fn replies(&mut self) -> Result<()> {
        let Some((up, addr)) = &self.upstream else { return Ok(()) };
        for _ in 0..BATCH {
            let len = match up.recv(&mut self.buf) {
                Ok(len) => len,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                // An ICMP error for an earlier query (nothing listens upstream yet): that query
                // just expires, as it would had the datagram been lost.
                Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::ConnectionRefused) => continue,
                Err(e) => return Err(e).with_context(|| format!("receive a DNS reply from `{addr}`")),
            };
            let reply = &mut self.buf[..len];
            // Only responses (QR set) with a full header go back to clients.
            if len < 12 || reply[2] & 0x80 == 0 {
                continue;
            }
            let Some(p) = self.pending.remove(&u16::from_be_bytes([reply[0], reply[1]])) else { continue };
            reply[..2].copy_from_slice(&p.client_id.to_be_bytes());
            let _ = self.listen.send_to(reply, p.client);
        }
        Ok(())
    }
}

/// A non-blocking UDP socket connected to `addr`, from an ephemeral port.
fn connect(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let any: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(any)?;
    sock.connect(addr)?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// Upstream query ids: unpredictable (xorshift64* seeded from std's random hasher keys), so a
/// spoofed reply must guess both the ephemeral port and the id.
struct Ids(u64);

impl Ids {
    fn new() -> Ids {
        Ids(RandomState::new().hash_one(Instant::now()) | 1)
    }

    fn next(&mut self) -> u16 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 48) as u16
    }
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
