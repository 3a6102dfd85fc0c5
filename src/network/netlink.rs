//! A small synchronous rtnetlink client: the bridge, veth pairs, addresses and default route of
//! user networks.
//!
//! The per-user network daemon runs it. The daemon is root in a user namespace and a network
//! namespace of its own and holds one bridge per user network there; for each container it
//! creates a veth pair whose inside end is born in the container's network namespace (same user
//! namespace) as `eth0`. A netlink socket belongs to the network namespace its creator was in
//! when it was opened (netlink(7)) and keeps talking to that one, so configuring the inside end
//! takes a [`Netlink`] opened while the daemon's single thread has `setns`-ed into the
//! container's namespace; the socket stays usable after the thread goes back.
//!
//! Messages are built with `netlink-packet-route`. Every request asks for an ack (`NLM_F_ACK`)
//! and waits for it, so a call returns once the kernel has done the change or said why not,
//! and the errno becomes a [`KernelError`] under the step's context (`create bridge
//! \`rl-ab12\`: File exists`). Replies are read only as far as needed (the header, the errno,
//! the extended ack text, a link's index), so an attribute the crate does not know yet can
//! never fail a call.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

use anyhow::{anyhow, bail, Context, Result};
use netlink_packet_core::{
    ErrorBuffer, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlaBuffer, NlasIterator, NLMSG_DONE,
    NLMSG_ERROR, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkHeader, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};
use nix::errno::Errno;

/// `IFNAMSIZ` less the terminating NUL.
const MAX_NAME_LEN: usize = 15;
/// Large enough for any reply to a non-dump request: a `RTM_NEWLINK` with all its statistics
/// is a few KiB.
const RECV_BUFFER: usize = 64 * 1024;
/// `NLMSGERR_ATTR_MSG` from linux/netlink.h: the extended ack's human-readable text.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Length of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;

/// The kernel's refusal of one request: its errno and, where the kernel gave one, the extended
/// ack text. It is the root cause of the errors this module returns for a refused request, so
/// a caller can branch with `err.downcast_ref::<KernelError>()` (for example on `EEXIST`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelError {
    pub errno: Errno,
    pub message: Option<String>,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(message) => write!(f, "{} ({message})", self.errno.desc()),
            None => f.write_str(self.errno.desc()),
        }
    }
}

impl std::error::Error for KernelError {}

/// A stable, locally administered unicast MAC for a container address: `02:42` and the four
/// bytes of `ip`, as Docker does, so an address given to another container comes back with
/// the MAC that neighbours' ARP caches still hold.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x42, a, b, c, d]
}

/// An rtnetlink socket in the network namespace of the thread that opened it.
pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens the socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE).context("open rtnetlink socket")?;
        socket.bind_auto().context("bind rtnetlink socket")?;
        socket.connect(&SocketAddr::new(0, 0)).context("connect rtnetlink socket to the kernel")?;
        // Both options are conveniences (Linux 4.12+): the error text the kernel may add, and
        // errors that do not echo the whole request back. Without them the errno still comes.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(Netlink { socket, seq: 0, buf: Vec::with_capacity(RECV_BUFFER) })
    }

    /// The index of the link called `name`, or `None` when there is none.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        let step = || format!("look up link `{name}`");
        check_name(name).with_context(step)?;
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request(RouteNetlinkMessage::GetLink(message), 0) {
            Ok(replies) => replies
                .iter()
                .find(|(kind, _)| *kind == libc::RTM_NEWLINK)
                .and_then(|(_, payload)| LinkHeader::parse(payload).ok())
                .map(|header| Some(header.index))
                .ok_or_else(|| anyhow!("the kernel answered without the link"))
                .with_context(step),
            Err(e) if e.downcast_ref::<KernelError>().is_some_and(|k| k.errno == Errno::ENODEV) => Ok(None),
            Err(e) => Err(e.context(step())),
        }
    }

    /// Creates the bridge `name` (down, no address) and returns its index. An `mtu` of 0 keeps
    /// the kernel's default.
    pub fn create_bridge(&mut self, name: &str, mtu: u32) -> Result<u32> {
        let step = || format!("create bridge `{name}`");
        check_name(name).with_context(step)?;
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(name.to_owned()));
        push_mtu(&mut message, mtu);
        message.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
        self.request(RouteNetlinkMessage::NewLink(message), NLM_F_CREATE | NLM_F_EXCL).with_context(step)?;
        self.created(name).with_context(step)
    }

    /// Creates the veth pair `host` <-> `peer_name` and returns the index of `host`. `host` is
    /// created here; `peer_name` is created directly in the network namespace `peer_netns`
    /// (an fd of `/proc/PID/ns/net`), so it never appears in this one and cannot clash with a
    /// name here. An `mtu` of 0 keeps the kernel's default; otherwise both ends get it.
    pub fn create_veth(&mut self, host: &str, peer_name: &str, peer_netns: BorrowedFd, mtu: u32) -> Result<u32> {
        let step = || format!("create veth pair `{host}` <-> `{peer_name}`");
        check_name(host).with_context(step)?;
        check_name(peer_name).with_context(step)?;
        let mut peer = LinkMessage::default();
        peer.attributes.push(LinkAttribute::IfName(peer_name.to_owned()));
        push_mtu(&mut peer, mtu);
        peer.attributes.push(LinkAttribute::NetNsFd(peer_netns.as_raw_fd()));
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(host.to_owned()));
        push_mtu(&mut message, mtu);
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.request(RouteNetlinkMessage::NewLink(message), NLM_F_CREATE | NLM_F_EXCL).with_context(step)?;
        self.created(host).with_context(step)
    }

    /// Enslaves link `ifindex` to the bridge `master`.
    pub fn set_master(&mut self, ifindex: u32, master: u32) -> Result<()> {
        self.change_link(ifindex, LinkAttribute::Controller(master))
            .with_context(|| format!("attach link `{ifindex}` to bridge `{master}`"))
    }

    /// Brings link `ifindex` up.
    pub fn set_up(&mut self, ifindex: u32) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = ifindex;
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::NewLink(message), 0)
            .map(drop)
            .with_context(|| format!("bring link `{ifindex}` up"))
    }

    pub fn set_mtu(&mut self, ifindex: u32, mtu: u32) -> Result<()> {
        self.change_link(ifindex, LinkAttribute::Mtu(mtu))
            .with_context(|| format!("set mtu of link `{ifindex}` to {mtu}"))
    }

    /// Sets the hardware address of link `ifindex` (see [`mac_for`]).
    pub fn set_mac(&mut self, ifindex: u32, mac: [u8; 6]) -> Result<()> {
        self.change_link(ifindex, LinkAttribute::Address(mac.to_vec()))
            .with_context(|| format!("set address of link `{ifindex}` to {}", format_mac(mac)))
    }

    /// Adds `addr/prefix` to link `ifindex`, with the subnet's broadcast address as `ip addr
    /// add … brd +` would; this also adds the route to the subnet once the link is up.
    pub fn add_address(&mut self, ifindex: u32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        let step = || format!("add address `{addr}/{prefix}` to link `{ifindex}`");
        if prefix > 32 {
            return Err(anyhow!("an IPv4 prefix is at most 32")).with_context(step);
        }
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = prefix;
        message.header.index = ifindex;
        message.attributes.push(AddressAttribute::Local(addr.into()));
        message.attributes.push(AddressAttribute::Address(addr.into()));
        if let Some(brd) = broadcast(addr, prefix) {
            message.attributes.push(AddressAttribute::Broadcast(brd));
        }
        self.request(RouteNetlinkMessage::NewAddress(message), NLM_F_CREATE | NLM_F_EXCL).map(drop).with_context(step)
    }

    /// Adds the IPv4 default route via `gateway` to the main table. The gateway must already
    /// be reachable: an address in its subnet on a link that is up.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<()> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Boot;
        message.header.scope = RouteScope::Universe;
        message.header.kind = RouteType::Unicast;
        message.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.request(RouteNetlinkMessage::NewRoute(message), NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
            .with_context(|| format!("add route `default via {gateway}`"))
    }

    /// Deletes link `ifindex`; deleting one end of a veth pair deletes the other too.
    pub fn delete_link(&mut self, ifindex: u32) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = ifindex;
        self.request(RouteNetlinkMessage::DelLink(message), 0)
            .map(drop)
            .with_context(|| format!("delete link `{ifindex}`"))
    }

    fn change_link(&mut self, ifindex: u32, attribute: LinkAttribute) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = ifindex;
        message.attributes.push(attribute);
        self.request(RouteNetlinkMessage::NewLink(message), 0).map(drop)
    }

    /// The index of a link this socket just created.
    fn created(&mut self, name: &str) -> Result<u32> {
        self.link_index(name)?.ok_or_else(|| anyhow!("link `{name}` is gone right after its creation"))
    }

    /// Sends one request and reads until its ack; returns the other replies to it as
    /// (message type, payload).
    fn request(&mut self, message: RouteNetlinkMessage, flags: u16) -> Result<Vec<(u16, Vec<u8>)>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        let sent = retry_eintr(|| self.socket.send(&bytes, 0)).context("send netlink request")?;
        if sent != bytes.len() {
            bail!("send netlink request: {sent} of {} bytes sent", bytes.len());
        }
        let mut replies = Vec::new();
        loop {
            self.buf.clear();
            // MSG_TRUNC makes recv return the datagram's real length, so a cut reply is seen.
            let len = retry_eintr(|| self.socket.recv(&mut self.buf, libc::MSG_TRUNC)).context("read netlink reply")?;
            if len > self.buf.len() {
                bail!("read netlink reply: {len} bytes, more than the {} expected", self.buf.len());
            }
            if let Some(acked) = read_replies(&self.buf, self.seq, &mut replies)? {
                return acked.map(|()| replies).map_err(anyhow::Error::new);
            }
        }
    }
}

/// Walks the netlink messages of one datagram, keeping those answering `seq` in `replies`.
/// Returns `Some` once the ack (or error) for `seq` came.
fn read_replies(
    mut datagram: &[u8],
    seq: u32,
    replies: &mut Vec<(u16, Vec<u8>)>,
) -> Result<Option<Result<(), KernelError>>> {
    while !datagram.is_empty() {
        let packet = NetlinkBuffer::new_checked(datagram).map_err(|e| anyhow!("read netlink reply: {e}"))?;
        let (kind, flags, payload) = (packet.message_type(), packet.flags(), packet.payload());
        let mine = packet.sequence_number() == seq;
        datagram = datagram.get(align(packet.length() as usize)..).unwrap_or_default();
        if !mine {
            // A late answer to an earlier request that gave up on an error.
            continue;
        }
        match kind {
            NLMSG_ERROR => {
                let error = ErrorBuffer::new_checked(payload).map_err(|e| anyhow!("read netlink error: {e}"))?;
                return Ok(Some(match error.code() {
                    None => Ok(()),
                    Some(code) => Err(KernelError {
                        errno: Errno::from_raw(code.get().abs()),
                        message: ext_ack_message(flags, error.payload()),
                    }),
                }));
            }
            NLMSG_DONE => return Ok(Some(Ok(()))),
            _ => replies.push((kind, payload.to_vec())),
        }
    }
    Ok(None)
}

/// The extended ack text in an `NLMSG_ERROR` payload after its errno: the request's header
/// (the whole request unless `NLM_F_CAPPED`), then attributes when `NLM_F_ACK_TLVS`.
fn ext_ack_message(flags: u16, after_errno: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let request_len = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        u32::from_ne_bytes(after_errno.get(..4)?.try_into().ok()?) as usize
    };
    let attributes = after_errno.get(align(request_len)..)?;
    NlasIterator::new(attributes)
        .filter_map(Result::ok)
        .find(|nla: &NlaBuffer<&[u8]>| nla.kind() == NLMSGERR_ATTR_MSG)
        .map(|nla| {
            let text = nla.value();
            let text = text.split(|b| *b == 0).next().unwrap_or(text);
            String::from_utf8_lossy(text).into_owned()
        })
}

fn retry_eintr<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        let result = call();
        if !matches!(&result, Err(e) if e.kind() == io::ErrorKind::Interrupted) {
            return result;
        }
    }
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

fn push_mtu(message: &mut LinkMessage, mtu: u32) {
    if mtu != 0 {
        message.attributes.push(LinkAttribute::Mtu(mtu));
    }
}

/// The kernel's rules for a new interface name (`dev_valid_name`), plus `%`, which would ask
/// it to pick a number and leave the caller not knowing the name.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        bail!("an interface name has 1 to {MAX_NAME_LEN} bytes");
    }
    if name == "." || name == ".." || name.contains(['/', ':', '%', '\0']) || name.contains(char::is_whitespace) {
        bail!("an interface name is not `.` or `..` and has no `/`, `:`, `%`, NUL or white space");
    }
    Ok(())
}

/// The subnet's broadcast address; /31 and /32 have none (RFC 3021).
fn broadcast(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Addr> {
    (prefix < 31).then(|| Ipv4Addr::from(u32::from(addr) | (u32::MAX >> prefix)))
}

fn format_mac(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use std::env;
    use std::fs::File;
    use std::io::{Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use nix::sched::{setns, unshare, CloneFlags};

    use super::*;

    /// Set in the re-executed test binary: the `child_*` tests run only there.
    const CHILD_ENV: &str = "RL_NETLINK_TEST_CHILD";
    const TIMEOUT: Duration = Duration::from_secs(10);
    const THIS_NETNS: &str = "/proc/thread-self/ns/net";

    /// Runs the ignored test `child` of this module in a fresh process that `unshare -Urn` made
    /// root of a new user namespace with a new network namespace. Creating a user namespace
    /// needs a single-threaded process, and a test binary never is one.
    fn in_namespaces(child: &str) {
        let probe = Command::new("unshare").args(["-Urn", "true"]).stderr(Stdio::null()).status();
        if !probe.is_ok_and(|status| status.success()) {
            let reason = "`unshare -Urn true` fails: no user namespaces for this user here";
            assert_ne!(env::var("RL_TEST_REQUIRE").as_deref(), Ok("1"), "cannot run but RL_TEST_REQUIRE=1: {reason}");
            return eprintln!("skipped: {reason}");
        }
        let module = module_path!().split_once("::").map_or(module_path!(), |(_, rest)| rest);
        let out = Command::new("unshare")
            .args(["-Urn", "--"])
            .arg(env::current_exe().unwrap())
            .args(["--exact", &format!("{module}::{child}"), "--ignored", "--test-threads=1", "--nocapture"])
            .env(CHILD_ENV, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && stdout.contains("1 passed"), "{child}: {}\n{stdout}\n{stderr}", out.status);
    }

    fn is_child() -> bool {
        env::var_os(CHILD_ENV).is_some()
    }

    /// `ip -o link show NAME` in the calling thread's network namespace (a spawned process
    /// inherits the thread's), or `None` without iproute2.
    fn ip_link(name: &str) -> Option<String> {
        let out = Command::new("ip").args(["-o", "link", "show", name]).output().ok()?;
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// One round trip over a connection to `listener`, which sees it come from `from`.
    fn round_trip(listener: &TcpListener, from: Ipv4Addr) {
        let to = listener.local_addr().unwrap();
        let mut client = TcpStream::connect_timeout(&to, TIMEOUT).unwrap_or_else(|e| panic!("connect to {to}: {e}"));
        let (mut server, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), from);
        server.set_read_timeout(Some(TIMEOUT)).unwrap();
        client.write_all(b"ping").unwrap();
        let mut got = [0; 4];
        server.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
    }

    #[test]
    fn wires_a_bridge_and_a_veth_into_another_namespace() {
        in_namespaces("child_wiring");
    }

    #[test]
    fn errors_name_the_step_and_the_object() {
        in_namespaces("child_errors");
    }

    #[test]
    #[ignore = "run by wires_a_bridge_and_a_veth_into_another_namespace in its namespaces"]
    fn child_wiring() {
        if !is_child() {
            return;
        }
        let gateway = Ipv4Addr::new(10, 89, 0, 1);
        let container = Ipv4Addr::new(10, 89, 0, 10);
        // Outside the container's subnet: reachable only through its default route.
        let beyond = Ipv4Addr::new(10, 89, 1, 1);

        // The daemon's namespace is the one unshare(1) made; the container's is made by this
        // thread alone (a network namespace, unlike a user namespace, is per thread).
        let daemon_ns = File::open(THIS_NETNS).unwrap();
        unshare(CloneFlags::CLONE_NEWNET).unwrap();
        let container_ns = File::open(THIS_NETNS).unwrap();
        setns(daemon_ns.as_fd(), CloneFlags::CLONE_NEWNET).unwrap();

        let mut daemon = Netlink::open().unwrap();
        assert_eq!(daemon.link_index("rl-test0").unwrap(), None);
        let bridge = daemon.create_bridge("rl-test0", 1500).unwrap();
        assert_eq!(daemon.link_index("rl-test0").unwrap(), Some(bridge));
        let host = daemon.create_veth("rlv-test0", "eth0", container_ns.as_fd(), 1500).unwrap();
        assert_ne!(host, bridge);
        assert_eq!(daemon.link_index("eth0").unwrap(), None, "the peer is born in the container's namespace");
        daemon.set_master(host, bridge).unwrap();
        daemon.set_up(host).unwrap();
        daemon.set_up(bridge).unwrap();
        daemon.add_address(bridge, gateway, 24).unwrap();
        daemon.add_address(bridge, beyond, 32).unwrap();
        if let Some(link) = ip_link("rlv-test0") {
            assert!(link.contains("master rl-test0"), "{link}");
        }
        let near = TcpListener::bind((gateway, 0)).unwrap();
        let far = TcpListener::bind((beyond, 0)).unwrap();

        setns(container_ns.as_fd(), CloneFlags::CLONE_NEWNET).unwrap();
        let mut inside = Netlink::open().unwrap();
        let eth0 = inside.link_index("eth0").unwrap().expect("eth0 in the container's namespace");
        inside.set_mac(eth0, mac_for(container)).unwrap();
        inside.set_mtu(eth0, 1400).unwrap();
        inside.set_up(eth0).unwrap();
        inside.add_address(eth0, container, 24).unwrap();
        if let Some(link) = ip_link("eth0") {
            assert!(link.contains("mtu 1400") && link.contains("link/ether 02:42:0a:59:00:0a"), "{link}");
        }
        let err = TcpStream::connect_timeout(&far.local_addr().unwrap(), TIMEOUT)
            .expect_err("no route beyond the subnet yet");
        assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH), "{err}");
        inside.add_default_route(gateway).unwrap();

        round_trip(&near, container);
        round_trip(&far, container);

        // The container's socket keeps its namespace after the thread leaves it.
        setns(daemon_ns.as_fd(), CloneFlags::CLONE_NEWNET).unwrap();
        daemon.delete_link(host).unwrap();
        assert_eq!(daemon.link_index("rlv-test0").unwrap(), None);
        assert_eq!(inside.link_index("eth0").unwrap(), None, "deleting one end deletes the peer");
        assert_eq!(daemon.link_index("rl-test0").unwrap(), Some(bridge));
        daemon.delete_link(bridge).unwrap();
        assert_eq!(daemon.link_index("rl-test0").unwrap(), None);
    }

    /// The error of `result`, whose whole text must start with `text`.
    fn fails<T: fmt::Debug>(result: Result<T>, text: &str) -> anyhow::Error {
        let err = result.unwrap_err();
        assert!(format!("{err:#}").starts_with(text), "{err:#}\ndoes not start with\n{text}");
        err
    }

    #[test]
    #[ignore = "run by errors_name_the_step_and_the_object in its namespaces"]
    fn child_errors() {
        if !is_child() {
            return;
        }
        let gateway = Ipv4Addr::new(10, 89, 0, 1);
        let mut nl = Netlink::open().unwrap();
        let bridge = nl.create_bridge("rl-dup0", 0).unwrap();
        let err = fails(nl.create_bridge("rl-dup0", 0), "create bridge `rl-dup0`: File exists");
        assert_eq!(err.downcast_ref::<KernelError>().map(|k| k.errno), Some(Errno::EEXIST));
        let missing = bridge + 1000;
        fails(nl.set_up(missing), &format!("bring link `{missing}` up: No such device"));
        fails(nl.delete_link(missing), &format!("delete link `{missing}`: No such device"));
        fails(nl.add_default_route(gateway), "add route `default via 10.89.0.1`: Network is unreachable");
        let not_a_netns = File::open("/dev/null").unwrap();
        let veth = nl.create_veth("rlv-bad0", "eth0", not_a_netns.as_fd(), 0);
        fails(veth, "create veth pair `rlv-bad0` <-> `eth0`: Invalid argument");
        assert_eq!(nl.link_index("rlv-bad0").unwrap(), None, "nothing is left of a refused pair");
        fails(nl.create_bridge("rl-name-too-long", 0), "create bridge `rl-name-too-long`: an interface name has");
        let to_bridge = format!("add address `10.89.0.1/33` to link `{bridge}`: an IPv4 prefix is at most 32");
        fails(nl.add_address(bridge, gateway, 33), &to_bridge);
        nl.add_address(bridge, gateway, 24).unwrap();
        let again = format!("add address `10.89.0.1/24` to link `{bridge}`: File exists");
        fails(nl.add_address(bridge, gateway, 24), &again);
    }

    #[test]
    fn mac_is_locally_administered_unicast_and_names_the_address() {
        let mac = mac_for(Ipv4Addr::new(10, 89, 0, 10));
        assert_eq!(mac, [0x02, 0x42, 10, 89, 0, 10]);
        assert_eq!(mac[0] & 0b11, 0b10, "locally administered, not multicast");
        assert_eq!(format_mac(mac), "02:42:0a:59:00:0a");
    }

    #[test]
    fn interface_names_follow_the_kernels_rules() {
        for name in ["eth0", "rl-0123456789ab"] {
            assert!(check_name(name).is_ok(), "{name:?}");
        }
        for name in ["rl-0123456789abc", "", ".", "..", "a/b", "a:b", "eth%d", "a b", "a\tb", "a\0b"] {
            assert!(check_name(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn broadcast_of_a_subnet() {
        let ip = Ipv4Addr::new(10, 89, 0, 10);
        assert_eq!(broadcast(ip, 24), Some(Ipv4Addr::new(10, 89, 0, 255)));
        assert_eq!(broadcast(ip, 16), Some(Ipv4Addr::new(10, 89, 255, 255)));
        assert_eq!(broadcast(ip, 0), Some(Ipv4Addr::BROADCAST));
        assert_eq!(broadcast(ip, 31), None);
        assert_eq!(broadcast(ip, 32), None);
    }

    /// An `NLMSG_ERROR` payload after the errno: the request's header, then attributes.
    fn error_tail(request_len: u32, attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut tail = request_len.to_ne_bytes().to_vec();
        tail.resize(align(request_len as usize), 0);
        for (kind, value) in attributes {
            tail.extend(((value.len() + 4) as u16).to_ne_bytes());
            tail.extend(kind.to_ne_bytes());
            tail.extend(*value);
            tail.resize(align(tail.len()), 0);
        }
        tail
    }

    #[test]
    fn extended_ack_text_is_found_after_the_request() {
        let capped = NLM_F_ACK_TLVS | NLM_F_CAPPED;
        let tail = error_tail(16, &[(4, &[1, 2, 3, 4]), (NLMSGERR_ATTR_MSG, b"Unknown device type\0")]);
        assert_eq!(ext_ack_message(capped, &tail).as_deref(), Some("Unknown device type"));
        assert_eq!(ext_ack_message(NLM_F_CAPPED, &tail), None, "no NLM_F_ACK_TLVS, no attributes");
        let whole = error_tail(22, &[(NLMSGERR_ATTR_MSG, b"Peer netns reference is invalid\0")]);
        assert_eq!(ext_ack_message(NLM_F_ACK_TLVS, &whole).as_deref(), Some("Peer netns reference is invalid"));
        assert_eq!(ext_ack_message(capped, &[1, 2]), None);
        let shown = KernelError { errno: Errno::EINVAL, message: Some("Peer netns reference is invalid".into()) };
        assert_eq!(shown.to_string(), "Invalid argument (Peer netns reference is invalid)");
    }

    #[test]
    fn replies_to_other_requests_are_skipped() {
        fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
            let mut bytes = vec![0; align(16 + payload.len())];
            let mut packet = NetlinkBuffer::new(&mut bytes[..]);
            packet.set_length((16 + payload.len()) as u32);
            packet.set_message_type(kind);
            packet.set_sequence_number(seq);
            bytes[16..16 + payload.len()].copy_from_slice(payload);
            bytes
        }
        let refused = (-libc::ENODEV).to_ne_bytes();
        let mut datagram = message(NLMSG_ERROR, 6, &refused);
        datagram.extend(message(libc::RTM_NEWLINK, 7, &[0; 17]));
        let mut replies = Vec::new();
        assert_eq!(read_replies(&datagram, 7, &mut replies).unwrap(), None, "no ack yet");
        assert_eq!(replies, vec![(libc::RTM_NEWLINK, vec![0; 17])]);
        let acked = read_replies(&message(NLMSG_ERROR, 7, &[0; 4]), 7, &mut replies).unwrap();
        assert_eq!(acked, Some(Ok(())));
        let refused = read_replies(&message(NLMSG_ERROR, 6, &refused), 6, &mut Vec::new()).unwrap();
        assert_eq!(refused, Some(Err(KernelError { errno: Errno::ENODEV, message: None })));
    }
}
