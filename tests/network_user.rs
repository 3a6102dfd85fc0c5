//! User networks: `rl network create|ls|inspect|rm|prune|connect|disconnect`, and containers on
//! them reaching each other by name and alias (including containers started later) through the
//! per-user network daemon's bridges and DNS, not reaching containers of another network; ports
//! published from a user network; the daemon, its slirp4netns and the bridge gone with the last
//! container. Servers are busybox httpd, clients busybox wget and nslookup inside containers.
mod common;

use common::*;

fn rl(ctx: &Ctx, args: &[&str]) -> Out {
    ctx.rl_out(args, None)
}

/// Serves `marker` on port 80 with busybox httpd, in the foreground.
fn httpd(marker: &str) -> String {
    format!("mkdir -p /www && echo {marker} > /www/index.html && exec httpd -f -p 80 -h /www")
}

/// The daemon's processes (and its slirp4netns) of this test's run root, not zombies.
fn daemon_processes(ctx: &Ctx) -> Vec<Proc> {
    let runroot = ctx.runroot.to_string_lossy().into_owned();
    processes()
        .into_iter()
        .filter(|p| p.argv.first().is_some_and(|a| a == "rl") && p.argv.get(1).is_some_and(|a| a == "__netd"))
        .filter(|p| p.argv.get(3).is_some_and(|a| *a == runroot))
        .collect()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

#[test]
fn containers_on_a_network_find_each_other_by_name_and_alias_and_others_do_not() {
    let Some(ctx) = Ctx::with_subids() else { return };
    rl(&ctx, &["network", "create", "front"]).assert_ok();
    rl(&ctx, &["network", "create", "back"]).assert_ok();
    ctx.run_d(&["--name", "web", "--network", "front", "--network-alias", "www"], &["sh", "-c", &httpd("from-web")]);
    ctx.run_d(&["--name", "api", "--network", "front"], &["sh", "-c", &httpd("from-api")]);
    let other = ctx.run_d(&["--name", "other", "--network", "back"], &["sh", "-c", &httpd("from-other")]);
    // Both directions, by name and alias; the servers may take a moment to listen.
    let fetch = |from: &str, url: &str| rl(&ctx, &["exec", from, "wget", "-q", "-O", "-", url]);
    assert!(poll_until(|| fetch("api", "http://web/").stdout.contains("from-web")), "{}", fetch("api", "http://web/"));
    assert!(fetch("api", "http://www/").stdout.contains("from-web"), "the alias resolves");
    assert!(poll_until(|| fetch("web", "http://api/").stdout.contains("from-api")));
    // A container started later is found, and finds the others.
    let late = ctx.run(&["--rm", "--network", "front"], &["sh", "-c", "wget -q -O - http://web/ && nslookup api"]);
    late.assert_ok();
    assert!(late.stdout.contains("from-web") && late.stdout.contains("10.89."), "{late}");
    // Another network: neither its name resolves nor its address routes.
    let ip = ctx.inspect(&other)["NetworkSettings"]["IPAddress"].as_str().unwrap_or_default().to_string();
    assert!(ip.starts_with("10.89."), "inspect gives the container's address: {ip:?}");
    let by_name = fetch("web", "http://other/");
    assert_ne!(by_name.code(), Some(0), "another network's name must not resolve\n{by_name}");
    let by_ip = fetch("web", &format!("http://{ip}/"));
    assert!(!by_ip.stdout.contains("from-other"), "another network must be unreachable\n{by_ip}");
    assert!(fetch("other", &format!("http://{ip}/")).stdout.contains("from-other"), "it serves on its own network");
    // The network's record lists its containers with their addresses.
    let inspect = rl(&ctx, &["network", "inspect", "front"]);
    inspect.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let names: Vec<&str> =
        v[0]["Containers"].as_object().unwrap().values().filter_map(|c| c["Name"].as_str()).collect();
    assert!(names.contains(&"web") && names.contains(&"api"), "{inspect}");
    rl(&ctx, &["rm", "-f", "web", "api", "other"]).assert_ok();
}

#[test]
fn the_daemon_and_its_helpers_go_with_the_last_container() {
    let Some(ctx) = Ctx::with_subids() else { return };
    rl(&ctx, &["network", "create", "n"]).assert_ok();
    ctx.run_d(&["--name", "a", "--network", "n"], &["sleep", &ctx.marker]);
    let daemons = daemon_processes(&ctx);
    assert_eq!(daemons.len(), 1, "one daemon for the user's networks");
    let daemon = daemons[0].pid;
    let helpers: Vec<i32> = descendants(daemon).iter().map(|p| p.pid).collect();
    assert!(!helpers.is_empty(), "the network's slirp4netns runs under the daemon");
    ctx.run_d(&["--name", "b", "--network", "n"], &["sleep", &ctx.marker]);
    assert_eq!(daemon_processes(&ctx).iter().map(|p| p.pid).collect::<Vec<_>>(), [daemon], "the same daemon");
    rl(&ctx, &["rm", "-f", "a"]).assert_ok();
    assert!(alive(daemon), "b still runs: the daemon stays");
    rl(&ctx, &["rm", "-f", "b"]).assert_ok();
    assert!(poll_until(|| !alive(daemon) && helpers.iter().all(|p| !alive(*p))), "daemon and slirp4netns end");
    assert!(!ctx.runroot.join("netd.sock").exists(), "its socket is gone");
    // And the next container starts a new one.
    let out = ctx.run(&["--rm", "--network", "n"], &["sh", "-c", "ip -o -4 addr show eth0"]);
    out.assert_ok();
    assert!(out.stdout.contains("10.89."), "{out}");
}

#[test]
fn published_ports_and_internal_networks() {
    let Some(ctx) = Ctx::with_subids() else { return };
    rl(&ctx, &["network", "create", "pub"]).assert_ok();
    rl(&ctx, &["network", "create", "--internal", "--subnet", "10.77.5.0/24", "iso"]).assert_ok();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let spec = format!("127.0.0.1:{port}:80");
    ctx.run_d(&["--name", "p", "--network", "pub", "-p", &spec], &["sh", "-c", &httpd("published")]);
    let get = || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
    };
    assert!(poll_until(|| get().is_some_and(|b| b.contains("published"))), "the port serves from the user network");
    assert_eq!(rl(&ctx, &["port", "p", "80"]).stdout_trim(), format!("127.0.0.1:{port}"));
    // Internal: its own subnet, no default route.
    let out = ctx.run(&["--rm", "--network", "iso"], &["sh", "-c", "ip -o -4 addr show eth0; ip route"]);
    out.assert_ok();
    assert!(out.stdout.contains("10.77.5.10/24"), "{out}");
    assert!(!out.stdout.contains("default"), "no way out of an internal network\n{out}");
    rl(&ctx, &["rm", "-f", "p"]).assert_ok();
}

#[test]
fn network_commands_and_their_errors() {
    let Some(ctx) = Ctx::with_subids() else { return };
    rl(&ctx, &["network", "create", "--subnet", "10.66.0.0/24", "--gateway", "10.66.0.9", "one"]).assert_ok();
    rl(&ctx, &["network", "create", "one"]).assert_error("already exists");
    rl(&ctx, &["network", "create", "--subnet", "10.66.0.0/16", "two"]).assert_error("overlaps");
    rl(&ctx, &["network", "create", "host"]).assert_error("reserved");
    rl(&ctx, &["network", "create", "two"]).assert_ok();
    let ls = rl(&ctx, &["network", "ls", "-q"]);
    assert_eq!(ls.stdout, "one\ntwo\n", "{ls}");
    let v: serde_json::Value = serde_json::from_str(&rl(&ctx, &["network", "inspect", "one"]).stdout).unwrap();
    assert_eq!(v[0]["IPAM"]["Config"][0]["Gateway"], "10.66.0.9");
    assert_eq!(v[0]["IPAM"]["Config"][0]["Subnet"], "10.66.0.0/24");
    // Unknown networks: the error names it and says how to make it.
    let out = ctx.run(&["--rm", "--network", "nope"], &["true"]);
    out.assert_code(125);
    assert!(out.stderr.contains("network `nope`: no such network") && out.stderr.contains("hint:"), "{out}");
    let out = ctx.run(&["--rm", "--network", "one", "--userns", "keep-id"], &["true"]);
    out.assert_error("keep-id");
    // The gateway answers DNS: it is the container's resolver.
    let out = ctx.run(&["--rm", "--network", "one"], &["cat", "/etc/resolv.conf"]);
    out.assert_ok();
    assert!(out.stdout.contains("nameserver 10.66.0.9") && out.stdout.contains("dns.rl"), "{out}");
    // connect/disconnect change a stopped container; rm refuses a network in use; prune keeps it.
    let rootfs = ctx.rootfs.to_string_lossy().into_owned();
    rl(&ctx, &["create", "--name", "c", "--network", "none", "--rootfs", &rootfs, "true"]).assert_ok();
    rl(&ctx, &["network", "connect", "one", "c"]).assert_error("network mode `none`");
    rl(&ctx, &["rm", "c"]).assert_ok();
    rl(&ctx, &["create", "--name", "c", "--network", "two", "--rootfs", &rootfs, "ip", "-o", "-4", "addr"]).assert_ok();
    rl(&ctx, &["network", "connect", "--alias", "cee", "one", "c"]).assert_ok();
    rl(&ctx, &["network", "rm", "one"]).assert_error("container `c` is on it");
    assert_eq!(rl(&ctx, &["network", "prune"]).stdout, "", "both are in use");
    let started = rl(&ctx, &["start", "-a", "c"]);
    started.assert_ok();
    assert!(started.stdout.contains("eth0") && started.stdout.contains("eth1"), "on both networks\n{started}");
    assert!(started.stdout.contains("10.66.0.10/24"), "{started}");
    rl(&ctx, &["network", "disconnect", "two", "c"]).assert_ok();
    rl(&ctx, &["network", "disconnect", "two", "c"]).assert_error("not on network `two`");
    assert_eq!(rl(&ctx, &["network", "prune"]).stdout, "two\n");
    rl(&ctx, &["rm", "c"]).assert_ok();
    rl(&ctx, &["network", "rm", "one"]).assert_ok();
    assert_eq!(rl(&ctx, &["network", "ls", "-q"]).stdout, "");
}

#[test]
fn running_containers_connect_and_disconnect() {
    let Some(ctx) = Ctx::with_subids() else { return };
    rl(&ctx, &["network", "create", "left"]).assert_ok();
    rl(&ctx, &["network", "create", "right"]).assert_ok();
    ctx.run_d(&["--name", "srv", "--network", "left"], &["sh", "-c", &httpd("from-srv")]);
    ctx.run_d(&["--name", "cli", "--network", "right"], &["sleep", &ctx.marker]);
    // Under dns.rl: a name that is not there is never forwarded upstream (no waiting for it).
    let fetch = || rl(&ctx, &["exec", "cli", "wget", "-q", "-O", "-", "http://srv.dns.rl/"]);
    assert_ne!(fetch().code(), Some(0), "not on the server's network yet");
    // Connected while it runs: a second interface, the name resolves both ways, inspect shows it.
    rl(&ctx, &["network", "connect", "--alias", "client", "left", "cli"]).assert_ok();
    let addr = rl(&ctx, &["exec", "cli", "ip", "-o", "-4", "addr", "show", "eth1"]);
    addr.assert_ok();
    assert!(addr.stdout.contains("10.89."), "{addr}");
    assert!(poll_until(|| fetch().stdout.contains("from-srv")), "{}", fetch());
    let back = rl(&ctx, &["exec", "srv", "nslookup", "client"]);
    assert!(back.code() == Some(0) && back.stdout.contains("10.89."), "the alias resolves on the network\n{back}");
    let nets = ctx.inspect("cli")["NetworkSettings"]["Networks"].as_object().cloned().unwrap_or_default();
    assert!(nets.contains_key("left") && nets.contains_key("right"), "{nets:?}");
    rl(&ctx, &["network", "connect", "left", "cli"]).assert_error("already on network `left`");
    // Disconnected: the interface is gone, the server unreachable again, the default route
    // still there (it goes through `right`).
    rl(&ctx, &["network", "disconnect", "left", "cli"]).assert_ok();
    assert_ne!(rl(&ctx, &["exec", "cli", "ip", "link", "show", "eth1"]).code(), Some(0), "eth1 is gone");
    assert_ne!(fetch().code(), Some(0), "off the server's network");
    let routes = rl(&ctx, &["exec", "cli", "ip", "route"]);
    assert!(routes.stdout.contains("default"), "{routes}");
    // Taking the network of the default route moves it to another one.
    rl(&ctx, &["network", "connect", "left", "cli"]).assert_ok();
    rl(&ctx, &["network", "disconnect", "right", "cli"]).assert_ok();
    let routes = rl(&ctx, &["exec", "cli", "ip", "route"]);
    assert!(routes.stdout.contains("default via 10.89."), "{routes}");
    assert!(poll_until(|| fetch().stdout.contains("from-srv")), "{}", fetch());
    // The change outlives the run: the next start is on `left` only.
    rl(&ctx, &["stop", "-t", "0", "cli"]).assert_ok();
    rl(&ctx, &["start", "cli"]).assert_ok();
    let addrs = rl(&ctx, &["exec", "cli", "ip", "-o", "-4", "addr"]);
    assert!(addrs.stdout.contains("eth0") && !addrs.stdout.contains("eth1"), "{addrs}");
    assert!(poll_until(|| fetch().stdout.contains("from-srv")), "{}", fetch());
    rl(&ctx, &["rm", "-f", "cli"]).assert_ok();
    // A running container with another network mode is refused, with the way to do it.
    ctx.run_d(&["--name", "solo", "--network", "slirp4netns"], &["sleep", &ctx.marker]);
    let out = rl(&ctx, &["network", "connect", "left", "solo"]);
    out.assert_error("network mode `slirp4netns`");
    assert!(out.stderr.contains("hint:"), "{out}");
    rl(&ctx, &["rm", "-f", "srv", "solo"]).assert_ok();
}
