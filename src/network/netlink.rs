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
#[path = "netlink_tests.rs"]
mod tests;
