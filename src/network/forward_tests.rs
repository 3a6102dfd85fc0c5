use std::io::{Read, Write};

use super::*;

fn mapping(host_port: u16, proto: Proto) -> PortMapping {
    PortMapping { host_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), host_port, container_port: 1, proto }
}

/// Runs `serve` on a thread; dropping the returned pipe end stops it.
fn start(listeners: Vec<(Bound, SocketAddr)>, idle: Duration) -> (OwnedFd, thread::JoinHandle<Result<()>>) {
    let (stop_r, stop_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    (stop_w, thread::spawn(move || serve_with(listeners, stop_r, idle)))
}

/// Echoes each connection until EOF, then writes "done" after it and closes.
fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for conn in l.incoming() {
            let mut conn = conn.unwrap();
            thread::spawn(move || {
                let mut buf = vec![0; 1 << 16];
                loop {
                    let n = conn.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    conn.write_all(&buf[..n]).unwrap();
                }
                conn.write_all(b"done").unwrap();
            });
        }
    });
    addr
}

/// Sends `data` from a thread, half-closes, and reads everything back until EOF.
fn exchange(conn: TcpStream, data: Vec<u8>) -> Vec<u8> {
    let mut writer = conn.try_clone().unwrap();
    let sent = thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    (&conn).read_to_end(&mut got).unwrap();
    sent.join().unwrap();
    got
}

#[test]
fn tcp_relays_bulk_data_and_half_close() {
    let echo = echo_server();
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let good = bind(&mapping(0, Proto::Tcp)).unwrap();
    let refused = bind(&mapping(0, Proto::Tcp)).unwrap();
    assert_ne!(good.mapping.host_port, 0);
    let (good_port, refused_port) = (good.mapping.host_port, refused.mapping.host_port);
    let (stop, server) = start(vec![(good, echo), (refused, dead)], UDP_FLOW_IDLE);

    // Nothing listens at the target: the client is reset, and the forwarder carries on.
    let mut c = TcpStream::connect((Ipv4Addr::LOCALHOST, refused_port)).unwrap();
    let mut buf = [0; 1];
    assert!(matches!(c.read(&mut buf), Ok(0) | Err(_)));

    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut want = data.clone();
    want.extend_from_slice(b"done");
    let conns: Vec<_> = (0..2).map(|_| TcpStream::connect((Ipv4Addr::LOCALHOST, good_port)).unwrap()).collect();
    let relayed: Vec<_> = conns
        .into_iter()
        .map(|c| {
            thread::spawn({
                let data = data.clone();
                move || exchange(c, data)
            })
        })
        .collect();
    for r in relayed {
        assert!(r.join().unwrap() == want, "8 MiB came back changed");
    }

    // Half-close: the reply the server writes after seeing EOF still arrives, then EOF.
    let c = TcpStream::connect((Ipv4Addr::LOCALHOST, good_port)).unwrap();
    assert_eq!(exchange(c, b"hello".to_vec()), b"hellodone");

    drop(stop);
    server.join().unwrap().unwrap();
    TcpListener::bind((Ipv4Addr::LOCALHOST, good_port)).unwrap();
}

#[test]
fn udp_flows_keep_clients_apart() {
    let target = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target_addr = target.local_addr().unwrap();
    // Replies with the datagram and the address it came from, to tell flows apart.
    thread::spawn(move || {
        let mut buf = [0; 1500];
        while let Ok((n, from)) = target.recv_from(&mut buf) {
            let reply = format!("{} {from}", String::from_utf8_lossy(&buf[..n]));
            target.send_to(reply.as_bytes(), from).unwrap();
        }
    });
    // Below the ephemeral range, so no test binding port 0 can take it once it is released.
    let low = (20_000..27_000)
        .map(|p| p + (std::process::id() % 5000) as u16)
        .find(|&p| UdpSocket::bind(("127.0.0.1", p)).is_ok())
        .unwrap();
    let b = bind(&mapping(low, Proto::Udp)).unwrap();
    let published = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), b.mapping.host_port);
    let (stop, server) = start(vec![(b, target_addr)], Duration::from_millis(100));

    let ask = |c: &UdpSocket, what: &str| {
        c.send_to(what.as_bytes(), published).unwrap();
        let mut buf = [0; 1500];
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!(from, published);
        let reply = String::from_utf8(buf[..n].to_vec()).unwrap();
        let (said, flow) = reply.split_once(' ').unwrap();
        assert_eq!(said, what);
        flow.to_string()
    };
    let clients: Vec<UdpSocket> = (0..2).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    for c in &clients {
        // Only a guard against hanging the test run, not a synchronisation.
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    let a1 = ask(&clients[0], "a1");
    let b1 = ask(&clients[1], "b1");
    assert_ne!(a1, b1, "each client has its own flow");
    assert_eq!(ask(&clients[0], "a2"), a1, "a client keeps its flow");

    // The time passing is what is tested: idle past expiry, the next datagram makes a new flow.
    thread::sleep(Duration::from_millis(400));
    assert_ne!(ask(&clients[1], "b2"), b1, "an idle flow expires");

    drop(stop);
    server.join().unwrap().unwrap();
    // Every flow reader is gone with `serve`, and the published port with them.
    UdpSocket::bind(published).unwrap();
}

#[test]
fn bind_errors_name_the_port_and_bind_all_is_all_or_nothing() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = bind(&mapping(port, Proto::Tcp)).unwrap_err();
    assert_eq!(format!("{err:#}"), format!("publish port 127.0.0.1:{port}/tcp: address already in use"));

    let taken_udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = taken_udp.local_addr().unwrap().port();
    let err = bind(&mapping(udp_port, Proto::Udp)).unwrap_err();
    assert_eq!(format!("{err:#}"), format!("publish port 127.0.0.1:{udp_port}/udp: address already in use"));

    let free = bind(&mapping(0, Proto::Tcp)).unwrap().mapping.host_port;
    let err = bind_all(&[mapping(free, Proto::Tcp), mapping(port, Proto::Tcp)]).unwrap_err();
    assert!(format!("{err:#}").contains(&format!(":{port}/tcp: address already in use")), "{err:#}");
    let again = bind(&mapping(free, Proto::Tcp)).unwrap();
    assert_eq!(again.mapping.host_port, free);

    let both = bind_all(&[mapping(0, Proto::Tcp), mapping(0, Proto::Udp)]).unwrap();
    assert_eq!(both.len(), 2);
}

#[test]
fn low_port_is_a_typed_error() {
    let eacces = std::io::Error::from_raw_os_error(libc::EACCES);
    let err = bind_error(&eacces, 80, || 1024).context("publish port 0.0.0.0:80/tcp");
    assert_eq!(err.downcast_ref::<LowPort>(), Some(&LowPort { port: 80, start: 1024 }));
    assert_eq!(
        format!("{err:#}"),
        "publish port 0.0.0.0:80/tcp: permission denied: port 80 is below \
         net.ipv4.ip_unprivileged_port_start (1024)"
    );
    let err = bind_error(&eacces, 2000, || 1024);
    assert!(err.downcast_ref::<LowPort>().is_none());
    assert_eq!(err.to_string(), "permission denied");
}
