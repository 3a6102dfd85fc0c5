//! Container networking: slirp4netns (the default) with ports published by rl's forwarder, pasta,
//! `none`, `host` and `container:NAME`; `-p`/`-P`, `rl port`, `ps` and `inspect`; the errors of a
//! taken or privileged host port; the host's loopback kept out; /etc/hosts and resolv.conf; and
//! the helpers (slirp4netns, pasta, `rl-forward`) ending with their container, even when rl is
//! killed. Servers in containers are busybox httpd; clients on the host are the test's own
//! sockets on 127.0.0.1 — no traffic leaves the host's loopback or the containers' namespaces.
mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn rl(ctx: &Ctx, args: &[&str]) -> Out {
    ctx.rl_out(args, None)
}

fn pid_of(ctx: &Ctx, name: &str) -> i32 {
    ctx.inspect(name)["State"]["Pid"].as_i64().unwrap_or(0) as i32
}

/// A script that serves `marker` as /index.html with busybox httpd on port 80, in the foreground.
fn httpd(marker: &str) -> String {
    format!("mkdir -p /www && echo {marker} > /www/index.html && exec httpd -f -p 80 -h /www")
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// `GET /` on 127.0.0.1:PORT: the whole answer, or None when nothing answered.
fn http_get(port: u16) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    Some(answer)
}

fn serves(port: u16, marker: &str) -> bool {
    http_get(port).is_some_and(|a| a.starts_with("HTTP/1.") && a.contains(marker))
}

/// A network helper process: slirp4netns, pasta or rl's port forwarder (`rl-forward`).
#[derive(Debug)]
struct Helper {
    kind: &'static str,
    pid: i32,
    /// When it started (clock ticks after boot): with the pid, it names one process.
    start: Option<u64>,
}

fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split_whitespace().nth(19)?.parse().ok()
}

fn helper_kind(p: &Proc) -> Option<&'static str> {
    let comm = fs::read_to_string(format!("/proc/{}/comm", p.pid)).unwrap_or_default();
    let comm = comm.trim();
    let exe = p.argv.first().map(|a| a.rsplit('/').next().unwrap_or(a)).unwrap_or("");
    if comm == "rl-forward" || p.argv.get(1).is_some_and(|a| a == "__forward") {
        Some("rl-forward")
    } else if comm == "slirp4netns" || exe == "slirp4netns" {
        Some("slirp4netns")
    } else if comm.starts_with("pasta") || comm.starts_with("passt") || exe.starts_with("pasta") {
        Some("pasta")
    } else {
        None
    }
}

/// The network helpers among the descendants of `root` (rl or a monitor), sorted by kind.
fn helpers_under(root: i32) -> Vec<Helper> {
    let mut found: Vec<Helper> = descendants(root)
        .into_iter()
        .filter(|p| p.state != 'Z')
        .filter_map(|p| Some(Helper { kind: helper_kind(&p)?, pid: p.pid, start: start_time(p.pid) }))
        .collect();
    found.sort_by_key(|h| h.kind);
    found
}

fn kinds(helpers: &[Helper]) -> Vec<&'static str> {
    helpers.iter().map(|h| h.kind).collect()
}

/// The helpers of a detached container, under its monitor.
fn helpers_of(ctx: &Ctx, name: &str) -> Vec<Helper> {
    helpers_under(ctx.inspect(name)["State"]["MonitorPid"].as_i64().unwrap_or(0) as i32)
}

fn still_running(helpers: &[Helper]) -> Vec<&Helper> {
    helpers.iter().filter(|h| process(h.pid).is_some_and(|p| p.state != 'Z') && start_time(h.pid) == h.start).collect()
}

/// Polls until each of `helpers` has exited (a zombie has: its sockets are closed).
fn assert_helpers_end(helpers: &[Helper], when: &str) {
    assert!(
        poll_until(|| still_running(helpers).is_empty()),
        "network helpers outlive the container {when}: {:?}",
        still_running(helpers)
    );
}

fn assert_nothing_left(ctx: &Ctx) {
    assert!(poll_until(|| ctx.leftover_processes().is_empty()), "{:#?}", ctx.leftover_processes());
}

/// A UDP echo server on 0.0.0.0:PORT in the user and network namespaces of process `pid`,
/// answering each datagram with `echo: ` and the datagram. busybox-static has no UDP server
/// (its nc has no -u, and no udpsvd), so the host's python3 runs in the container's network
/// namespace instead (`nsenter`): to the forwarder, a socket there is the container's.
struct UdpEcho(std::process::Child);

const UDP_ECHO: &str = "import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', int(sys.argv[1])))
print('ready', flush=True)
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(b'echo: ' + data, peer)
";

impl UdpEcho {
    fn start(pid: i32, port: u16) -> UdpEcho {
        let mut child = std::process::Command::new("nsenter")
            .args(["--preserve-credentials", "-U", "-n", "-t", &pid.to_string(), "python3", "-c", UDP_ECHO])
            .arg(port.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start nsenter python3");
        let mut line = String::new();
        let out = child.stdout.take().expect("piped stdout");
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
        assert_eq!(
            line.trim(),
            "ready",
            "the UDP echo could not enter the container's network namespace and bind {port}"
        );
        UdpEcho(child)
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn published_port_serves_from_the_container_and_is_released_by_rm() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let id = ctx.run_d(&["--name", "web", "-p", &publish], &["sh", "-c", &httpd(&ctx.marker)]);
    assert!(poll_until(|| serves(port, &ctx.marker)), "the host gets the page: {:?}", http_get(port));
    // The same page inside, from the container's own side of the network.
    let inside = rl(&ctx, &["exec", "web", "wget", "-q", "-O", "-", "http://10.0.2.100:80/"]);
    assert_eq!(inside.assert_ok().stdout_trim(), ctx.marker, "{inside}");

    let all = rl(&ctx, &["port", "web"]);
    assert_eq!(all.assert_ok().stdout_trim(), format!("80/tcp -> 127.0.0.1:{port}"), "{all}");
    for private in ["80/tcp", "80"] {
        let one = rl(&ctx, &["port", "web", private]);
        assert_eq!(one.assert_ok().stdout_trim(), format!("127.0.0.1:{port}"), "{one}");
    }
    rl(&ctx, &["port", "web", "81/tcp"]).assert_error("81/tcp");
    let ps = rl(&ctx, &["ps", "--format", "{{.Names}} {{.Ports}}"]);
    assert_eq!(ps.assert_ok().stdout_trim(), format!("web 127.0.0.1:{port}->80/tcp"), "{ps}");
    let info = ctx.inspect("web");
    assert_eq!(info["HostConfig"]["NetworkMode"], "slirp4netns", "{info}");
    assert_eq!(info["NetworkSettings"]["IPAddress"], "10.0.2.100", "{info}");
    let want = serde_json::json!({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": port.to_string()}]});
    assert_eq!(info["NetworkSettings"]["Ports"], want, "{info}");

    let helpers = helpers_of(&ctx, "web");
    assert_eq!(kinds(&helpers), ["rl-forward", "slirp4netns"], "{helpers:#?}");
    assert!(!port_is_free(port), "the forwarder holds the host port");
    rl(&ctx, &["rm", "-f", &id[..12]]).assert_ok();
    assert_helpers_end(&helpers, "after rm -f");
    assert!(poll_until(|| port_is_free(port)), "the host port is free again");
    assert!(http_get(port).is_none_or(|a| a.is_empty()), "nothing answers on the port");
    assert!(ctx.containers().is_empty(), "{:?}", ctx.containers());
    assert_nothing_left(&ctx);
}

#[test]
fn a_container_port_alone_gets_a_free_host_port_and_stop_releases_it() {
    let Some(ctx) = Ctx::with_subids() else { return };
    ctx.run_d(&["--name", "rnd", "-p", "80"], &["sh", "-c", &httpd(&ctx.marker)]);
    let out = rl(&ctx, &["port", "rnd", "80/tcp"]);
    let host = out.assert_ok().stdout_trim().to_string();
    let (ip, port) = host.rsplit_once(':').unwrap_or_else(|| panic!("HOST:PORT\n{out}"));
    assert_eq!(ip, "0.0.0.0", "no IP given: every address of the host\n{out}");
    let port: u16 = port.parse().unwrap_or_else(|_| panic!("a port number\n{out}"));
    assert!(port >= 1024, "{out}");
    assert!(poll_until(|| serves(port, &ctx.marker)), "the port rl picked serves: {:?}", http_get(port));

    let helpers = helpers_of(&ctx, "rnd");
    assert_eq!(kinds(&helpers), ["rl-forward", "slirp4netns"], "{helpers:#?}");
    rl(&ctx, &["stop", "-t", "0", "rnd"]).assert_ok();
    assert_helpers_end(&helpers, "after stop");
    assert!(poll_until(|| port_is_free(port)), "stop frees the host port");
    let after = rl(&ctx, &["port", "rnd"]);
    assert!(after.assert_ok().stdout_trim().is_empty(), "a stopped container publishes nothing\n{after}");
    rl(&ctx, &["rm", "rnd"]).assert_ok();
    assert_nothing_left(&ctx);
}

#[test]
fn udp_datagrams_reach_the_container_and_the_answer_comes_back() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let port = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("bind UDP").port();
    let publish = format!("127.0.0.1:{port}:7000/udp");
    ctx.run_d(&["--name", "udp", "-p", &publish], &["sleep", &ctx.marker]);
    let port_out = rl(&ctx, &["port", "udp", "7000/udp"]);
    assert_eq!(port_out.assert_ok().stdout_trim(), format!("127.0.0.1:{port}"), "{port_out}");
    let _echo = UdpEcho::start(pid_of(&ctx, "udp"), 7000);

    let client = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP client");
    client.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let ping = format!("ping {}", ctx.marker);
    let want = format!("echo: {ping}");
    let mut got = String::new();
    // UDP has no connection to wait for: send until an answer comes.
    let answered = poll_until(|| {
        let _ = client.send_to(ping.as_bytes(), ("127.0.0.1", port));
        let mut buf = [0u8; 2048];
        match client.recv_from(&mut buf) {
            Ok((n, from)) => {
                got = format!("{} from {from}", String::from_utf8_lossy(&buf[..n]));
                buf[..n] == *want.as_bytes() && from == SocketAddr::from((Ipv4Addr::LOCALHOST, port))
            }
            Err(_) => false,
        }
    });
    assert!(answered, "the echo inside answers through the published port; last: {got:?}");
    rl(&ctx, &["rm", "-f", "udp"]).assert_ok();
    assert!(poll_until(|| UdpSocket::bind(("127.0.0.1", port)).is_ok()), "the UDP port is free again");
}

#[test]
fn publish_all_publishes_the_ports_the_image_exposes() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let tar = ctx.dir.join("base.tar");
    let tar = tar.to_string_lossy();
    let rootfs = ctx.rootfs.to_string_lossy();
    rl(&ctx, &["run", "--name", "base", "--rootfs", &rootfs, "true"]).assert_ok();
    rl(&ctx, &["export", "-o", &tar, "base"]).assert_ok();
    rl(&ctx, &["import", "-c", "EXPOSE 80", &tar, "exposed:1"]).assert_ok();

    rl(&ctx, &["run", "-d", "--name", "all", "-P", "exposed:1", "sh", "-c", &httpd(&ctx.marker)]).assert_ok();
    let out = rl(&ctx, &["port", "all"]);
    let line = out.assert_ok().stdout_trim().to_string();
    let port: u16 = line
        .strip_prefix("80/tcp -> 0.0.0.0:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("one line `80/tcp -> 0.0.0.0:PORT`\n{out}"));
    assert!(poll_until(|| serves(port, &ctx.marker)), "the exposed port serves: {:?}", http_get(port));
    let info = ctx.inspect("all");
    assert_eq!(info["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"], port.to_string(), "{info}");
    rl(&ctx, &["rm", "-f", "all"]).assert_ok();
    assert!(poll_until(|| port_is_free(port)), "the host port is free again");
    assert_nothing_left(&ctx);
}

#[test]
fn slirp4netns_own_port_handler_publishes_a_port() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let port = free_port();
    let (net, publish) = ("slirp4netns:port_handler=slirp4netns", format!("127.0.0.1:{port}:80"));
    ctx.run_d(&["--name", "sp", "--network", net, "-p", &publish], &["sh", "-c", &httpd(&ctx.marker)]);
    assert!(poll_until(|| serves(port, &ctx.marker)), "slirp4netns forwards the port: {:?}", http_get(port));
    assert_eq!(kinds(&helpers_of(&ctx, "sp")), ["slirp4netns"], "no forwarder of rl's");
    rl(&ctx, &["rm", "-f", "sp"]).assert_ok();
    assert!(poll_until(|| port_is_free(port)), "the host port is free again");
    assert_nothing_left(&ctx);
}

#[test]
fn a_host_port_in_use_fails_the_run_and_leaves_no_container() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    let rootfs = ctx.rootfs.to_string_lossy();
    let publish = format!("127.0.0.1:{port}:80");
    for detach in [true, false] {
        let mut args = vec!["run", "--name", "clash", "-p", &publish, "--rootfs", &rootfs, "sleep", &ctx.marker];
        if detach {
            args.insert(1, "-d");
        }
        let out = rl(&ctx, &args);
        out.assert_error(&format!("publish port 127.0.0.1:{port}")).assert_error("address already in use");
        let ps = rl(&ctx, &["ps", "-a", "-q"]);
        assert!(ps.assert_ok().stdout_trim().is_empty(), "no container is left (detach={detach})\n{ps}\n{out}");
        assert!(ctx.containers().is_empty(), "{:?}\n{out}", ctx.containers());
        assert_nothing_left(&ctx);
    }
    let _client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    assert!(taken.accept().is_ok(), "the test's listener still has the port");
}

#[test]
fn a_privileged_host_port_is_refused_with_a_hint() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let start = fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap_or_default();
    if !require(start.trim().parse::<u16>().is_ok_and(|s| s > 80), "unprivileged users may bind port 80 here") {
        return;
    }
    let out = ctx.run(&["--name", "low", "-p", "80:80"], &["true"]);
    out.assert_error("ip_unprivileged_port_start").assert_error("host port 80 ").assert_hint(&["sysctl"]);
    assert!(rl(&ctx, &["ps", "-a", "-q"]).stdout_trim().is_empty(), "{out}");
    assert!(ctx.containers().is_empty(), "{:?}", ctx.containers());
}

/// Runs `nc -w 2 10.0.2.2 PORT` in a container on `network`, sending the marker, while the test
/// listens on 127.0.0.1:PORT; what the listener received (None: no connection) and rl's Out.
fn reach_host_loopback(ctx: &Ctx, network: &str) -> (Option<String>, Out) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("address").port().to_string();
    let script = format!("echo {} | nc -w 2 10.0.2.2 {port}", ctx.marker);
    let mut run = ctx.spawn(&["--rm", "--network", network], &["sh", "-c", &script]);
    let mut conn = None;
    // Until a connection comes or the container ends without one.
    let ended = poll_until(|| {
        conn = listener.accept().ok().map(|(c, _)| c);
        conn.is_some() || run.child.try_wait().ok().flatten().is_some()
    });
    assert!(ended, "nc neither connected nor ended");
    let got = conn.map(|mut c| {
        c.set_nonblocking(false).expect("blocking");
        c.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut text = String::new();
        let mut buf = [0u8; 256];
        while !text.contains(&ctx.marker) {
            match c.read(&mut buf) {
                Ok(n) if n > 0 => text += &String::from_utf8_lossy(&buf[..n]),
                _ => break,
            }
        }
        text
    });
    assert!(listener.accept().is_err(), "one connection at most");
    (got, run.finish())
}

#[test]
fn the_hosts_loopback_is_reachable_only_when_allowed() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let (got, out) = reach_host_loopback(&ctx, "slirp4netns");
    assert!(got.is_none(), "by default 10.0.2.2 does not lead to the host's 127.0.0.1: got {got:?}\n{out}");
    assert_ne!(out.code(), Some(0), "nc fails\n{out}");

    let (got, out) = reach_host_loopback(&ctx, "slirp4netns:allow_host_loopback=true");
    assert_eq!(got.as_deref().map(str::trim), Some(ctx.marker.as_str()), "the listener gets the bytes\n{out}");
    out.assert_ok();
    assert_nothing_left(&ctx);
}

#[test]
fn network_none_has_only_loopback_and_the_default_has_tap0_with_a_route() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let own_ns = fs::read_link("/proc/self/ns/net").expect("readlink").to_string_lossy().into_owned();
    let script = "readlink /proc/self/ns/net; ls /sys/class/net | tr '\\n' ' '; echo; ip -o -4 addr; ip route";
    let none = ctx.run(&["--name", "none", "--network", "none"], &["sh", "-c", script]);
    let lines: Vec<&str> = none.assert_ok().stdout.lines().collect();
    assert_ne!(lines[0], own_ns, "a network namespace of its own\n{none}");
    assert_eq!(lines[1].trim(), "lo", "only loopback\n{none}");
    assert!(lines[2].contains("127.0.0.1/8") && lines.len() == 3, "no route, no other address\n{none}");
    assert_eq!(ctx.inspect("none")["HostConfig"]["NetworkMode"], "none");

    let slirp = ctx.run(&["--name", "slirp"], &["sh", "-c", script]);
    let lines: Vec<&str> = slirp.assert_ok().stdout.lines().collect();
    assert_ne!(lines[0], own_ns, "{slirp}");
    assert_eq!(lines[1].trim(), "lo tap0", "{slirp}");
    assert!(slirp.stdout.contains("tap0    inet 10.0.2.100/24"), "{slirp}");
    assert!(lines.iter().any(|l| l.starts_with("default via 10.0.2.2 dev tap0")), "{slirp}");
    assert_eq!(ctx.inspect("slirp")["HostConfig"]["NetworkMode"], "slirp4netns");
    rl(&ctx, &["rm", "none", "slirp"]).assert_ok();
    assert_nothing_left(&ctx);
}

#[test]
fn add_host_dns_flags_and_hostname_show_inside() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let host = format!("box-{}", ctx.marker);
    let opts = format!(
        "--name names --hostname {host} --add-host db.example.test:10.1.2.3 --add-host gw.example.test:host-gateway \
         --dns 10.0.2.53 --dns-search example.test --dns-option ndots:2"
    );
    let opts: Vec<&str> = opts.split_whitespace().collect();
    let out = ctx.run(&opts, &["sh", "-c", "cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---; hostname"]);
    let parts: Vec<&str> = out.assert_ok().stdout.split("---\n").collect();
    let [hosts, resolv, name] = parts[..] else { panic!("three parts\n{out}") };
    let hosts: Vec<&str> = hosts.lines().collect();
    assert!(hosts[0].starts_with("127.0.0.1\tlocalhost"), "{out}");
    for line in
        [format!("10.0.2.100\t{host} names"), "10.1.2.3\tdb.example.test".into(), "10.0.2.2\tgw.example.test".into()]
    {
        assert!(hosts.contains(&line.as_str()), "/etc/hosts has `{line}`\n{out}");
    }
    let resolv: Vec<&str> = resolv.lines().collect();
    for line in ["nameserver 10.0.2.53", "search example.test", "options ndots:2"] {
        assert!(resolv.contains(&line), "resolv.conf has `{line}`\n{out}");
    }
    assert_eq!(resolv.iter().filter(|l| l.starts_with("nameserver")).count(), 1, "--dns replaces the host's\n{out}");
    assert_eq!(name.trim(), host, "{out}");

    // Without --dns: the host's resolvers, a loopback one replaced by slirp4netns's 10.0.2.3.
    let plain = ctx.run(&["--rm"], &["cat", "/etc/resolv.conf"]);
    let servers: Vec<&str> = plain.assert_ok().stdout.lines().filter_map(|l| l.strip_prefix("nameserver ")).collect();
    let host_conf = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for s in host_conf.lines().filter_map(|l| l.trim().strip_prefix("nameserver ")) {
        let loopback = s.trim().parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let want = if loopback { "10.0.2.3" } else { s.trim() };
        assert!(servers.contains(&want), "resolver {s} of the host is {want} inside\n{plain}");
    }
    assert!(servers.iter().all(|s| !s.starts_with("127.") && *s != "::1"), "{plain}");
    rl(&ctx, &["rm", "names"]).assert_ok();
}

#[test]
fn network_container_shares_the_namespace_of_a_running_one() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let web = ctx.run_d(&["--name", "web"], &["sh", "-c", &httpd(&ctx.marker)]);
    let ns = fs::read_link(format!("/proc/{}/ns/net", pid_of(&ctx, "web"))).expect("readlink the container's ns");
    let ns = ns.to_string_lossy().into_owned();
    let get = "wget -q -O - http://127.0.0.1:80/";
    assert!(poll_until(|| rl(&ctx, &["exec", "web", "sh", "-c", get]).stdout_trim() == ctx.marker), "httpd is up");

    let script = format!("readlink /proc/self/ns/net; {get}");
    let out = ctx.run(&["--name", "peer", "--network", "container:web"], &["sh", "-c", &script]);
    let lines: Vec<&str> = out.assert_ok().stdout.lines().collect();
    assert_eq!(lines, [ns.as_str(), ctx.marker.as_str()], "same namespace, and web's httpd on its 127.0.0.1\n{out}");
    let own = fs::read_link("/proc/self/ns/net").expect("readlink").to_string_lossy().into_owned();
    assert_ne!(ns, own);
    assert_eq!(ctx.inspect("peer")["HostConfig"]["NetworkMode"], format!("container:{web}"));
    rl(&ctx, &["rm", "-f", "peer", "web"]).assert_ok();
    assert_nothing_left(&ctx);
}

#[test]
fn network_host_is_the_users_own_namespace() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let out =
        ctx.run(&["--name", "h", "--network", "host"], &["sh", "-c", "readlink /proc/self/ns/net; ls /sys/class/net"]);
    let mut lines: Vec<String> = out.assert_ok().stdout.lines().map(String::from).collect();
    let own = fs::read_link("/proc/self/ns/net").expect("readlink").to_string_lossy().into_owned();
    assert_eq!(lines.remove(0), own, "{out}");
    let mut ifaces: Vec<String> = fs::read_dir("/sys/class/net")
        .expect("read /sys/class/net")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ifaces.sort();
    lines.sort();
    assert_eq!(lines, ifaces, "the host's interfaces\n{out}");
    assert_eq!(ctx.inspect("h")["HostConfig"]["NetworkMode"], "host");
    rl(&ctx, &["rm", "h"]).assert_ok();
}

#[test]
fn pasta_publishes_a_port_keeps_the_host_loopback_out_and_ends_with_the_container() {
    let Some(ctx) = Ctx::with_subids() else { return };
    if !require(which("pasta").is_some(), "pasta is not installed") {
        return;
    }
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    ctx.run_d(&["--name", "p", "--network", "pasta", "-p", &publish], &["sh", "-c", &httpd(&ctx.marker)]);
    assert!(poll_until(|| serves(port, &ctx.marker)), "pasta forwards the port: {:?}", http_get(port));
    let info = ctx.inspect("p");
    assert_eq!(info["HostConfig"]["NetworkMode"], "pasta", "{info}");
    let port_out = rl(&ctx, &["port", "p", "80"]);
    assert_eq!(port_out.assert_ok().stdout_trim(), format!("127.0.0.1:{port}"), "{port_out}");

    // -T none: the container's 127.0.0.1 is its own, not the host's.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let lport = listener.local_addr().expect("address").port().to_string();
    let nc = rl(&ctx, &["exec", "p", "sh", "-c", &format!("echo hi | nc -w 2 127.0.0.1 {lport}")]);
    assert_ne!(nc.code(), Some(0), "nothing listens on the container's 127.0.0.1:{lport}\n{nc}");
    assert!(listener.accept().is_err(), "the host's listener got no connection\n{nc}");

    let helpers = helpers_of(&ctx, "p");
    assert_eq!(kinds(&helpers), ["pasta"], "{helpers:#?}");
    rl(&ctx, &["rm", "-f", "p"]).assert_ok();
    assert_helpers_end(&helpers, "after rm -f");
    assert!(poll_until(|| port_is_free(port)), "the host port is free again");
    assert_nothing_left(&ctx);
}

#[test]
fn helpers_end_with_a_foreground_run() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let port = free_port();
    let ctl = ctx.mkdir("ctl");
    let (publish, vol) = (format!("127.0.0.1:{port}:80"), format!("{}:/ctl", ctl.display()));
    let script = format!(
        "mkdir -p /www && echo {} > /www/index.html && httpd -p 80 -h /www && while [ ! -e /ctl/go ]; do sleep 0.05; done",
        ctx.marker
    );
    let run = ctx.spawn(&["--rm", "-p", &publish, "-v", &vol], &["sh", "-c", &script]);
    assert!(poll_until(|| serves(port, &ctx.marker)), "{:?}", http_get(port));
    let helpers = helpers_under(run.pid());
    assert_eq!(kinds(&helpers), ["rl-forward", "slirp4netns"], "{helpers:#?}");
    fs::write(ctl.join("go"), b"").expect("write /ctl/go");
    run.finish().assert_ok();
    assert_helpers_end(&helpers, "after the run ended");
    assert!(poll_until(|| port_is_free(port)), "the host port is free again");
    assert_nothing_left(&ctx);
}

/// `rl run -p …` on `network`, its owner (rl in the foreground, or the detached container's
/// monitor) SIGKILLed once the port serves: its helpers (`want`) and the host port go with it.
fn sigkill_of_the_owner_takes_the_helpers_along(network: &str, detached: bool, want: &[&str]) {
    let Some(ctx) = Ctx::with_subids() else { return };
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let opts = ["--name", "k", "--network", network, "-p", &publish];
    let run = (!detached).then(|| ctx.spawn(&opts, &["sh", "-c", &httpd(&ctx.marker)]));
    if detached {
        ctx.run_d(&opts, &["sh", "-c", &httpd(&ctx.marker)]);
    }
    assert!(poll_until(|| serves(port, &ctx.marker)), "{:?}", http_get(port));
    let owner = match &run {
        Some(r) => r.pid(),
        None => ctx.inspect("k")["State"]["MonitorPid"].as_i64().unwrap_or(0) as i32,
    };
    let helpers = helpers_under(owner);
    assert_eq!(kinds(&helpers), want, "{helpers:#?}");
    kill(Pid::from_raw(owner), Signal::SIGKILL).expect("kill -9 the owner");
    let out = run.map(|r| r.finish().to_string()).unwrap_or_default();
    assert_helpers_end(&helpers, &format!("after kill -9 of its owner\n{out}"));
    assert!(poll_until(|| port_is_free(port)), "the host port is free again");
    assert_nothing_left(&ctx);
    rl(&ctx, &["rm", "-f", "k"]).assert_ok();
}

#[test]
fn sigkill_of_a_foreground_run_ends_slirp4netns_and_the_forwarder() {
    sigkill_of_the_owner_takes_the_helpers_along("slirp4netns", false, &["rl-forward", "slirp4netns"]);
}

#[test]
fn sigkill_of_a_detached_containers_monitor_ends_slirp4netns_and_the_forwarder() {
    sigkill_of_the_owner_takes_the_helpers_along("slirp4netns", true, &["rl-forward", "slirp4netns"]);
}

#[test]
fn sigkill_of_a_foreground_run_ends_pasta() {
    if require(which("pasta").is_some(), "pasta is not installed") {
        sigkill_of_the_owner_takes_the_helpers_along("pasta", false, &["pasta"]);
    }
}

/// Whether `port` is free the moment rl returns, in `rounds` rounds of: `run -d -p` then
/// `rm -f`, and a foreground `run --rm -p`; the failures, described.
fn port_reuse_failures(ctx: &Ctx, network: &str, rounds: usize) -> Vec<String> {
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let mut failed = Vec::new();
    for i in 0..rounds {
        let name = format!("r{i}");
        ctx.run_d(&["--name", &name, "--network", network, "-p", &publish], &["sleep", &ctx.marker]);
        rl(ctx, &["rm", "-f", &name]).assert_ok();
        if !port_is_free(port) {
            failed.push(format!("{network}: round {i}: port {port} still bound when `rm -f` returned"));
        }
        assert!(poll_until(|| port_is_free(port)));
        ctx.run(&["--rm", "--network", network, "-p", &publish], &["true"]).assert_ok();
        if !port_is_free(port) {
            failed.push(format!("{network}: round {i}: port {port} still bound when a foreground `run` returned"));
        }
        assert!(poll_until(|| port_is_free(port)));
    }
    failed
}

#[test]
fn a_published_port_is_free_again_as_soon_as_rl_returns() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let mut failed = port_reuse_failures(&ctx, "slirp4netns", 10);
    if require(which("pasta").is_some(), "pasta is not installed") {
        failed.extend(port_reuse_failures(&ctx, "pasta", 10));
    }
    assert!(failed.is_empty(), "`rl run -p` of the same port right after would fail:\n{}", failed.join("\n"));
    assert_nothing_left(&ctx);
}
