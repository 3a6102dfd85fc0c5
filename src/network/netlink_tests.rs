//! Unit tests of `netlink.rs`: names, addresses, reply parsing, and real wiring in namespaces of its own.

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
    let err =
        TcpStream::connect_timeout(&far.local_addr().unwrap(), TIMEOUT).expect_err("no route beyond the subnet yet");
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
