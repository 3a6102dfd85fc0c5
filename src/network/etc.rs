//! The container's /etc/hosts and /etc/resolv.conf, as text. Pure functions of the host's
//! resolv.conf and the container's network settings; the parent writes them into the container's
//! run dir before it starts, and the init bind-mounts them over the rootfs's own.

use std::net::IpAddr;

/// `--dns`, `--dns-search`, `--dns-option`: each replaces what the host's resolv.conf says.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct DnsOptions {
    pub servers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// The container's /etc/hosts: loopback names, its own hostname, name and aliases, then
/// `--add-host` entries (already resolved to addresses).
pub fn hosts(hostname: &str, names: &[&str], own: Option<IpAddr>, extra: &[(String, IpAddr)]) -> String {
    let mut own_names = vec![hostname];
    own_names.extend(names.iter().copied().filter(|n| *n != hostname));
    let own = own.map_or_else(|| "127.0.1.1".to_string(), |ip| ip.to_string());
    let mut text = format!(
        "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost ip6-localhost ip6-loopback\n{own}\t{}\n",
        own_names.join(" ")
    );
    for (name, ip) in extra {
        text.push_str(&format!("{ip}\t{name}\n"));
    }
    text
}

/// The container's /etc/resolv.conf from the host's: nameservers, search domains and options,
/// each overridden by the `--dns*` flags (`--dns-search .` clears the list, as in Docker).
/// Loopback nameservers (systemd-resolved's 127.0.0.53) mean nothing in the container's network
/// namespace: they become `dns_proxy`, a resolver the network helper answers on, or go.
pub fn resolv_conf(host: &str, dns: &DnsOptions, dns_proxy: Option<IpAddr>) -> String {
    let mut servers: Vec<IpAddr> = Vec::new();
    let mut search: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                let Some(ip) = words.next().and_then(|w| w.split('%').next()?.parse::<IpAddr>().ok()) else {
                    continue;
                };
                let ip = match (ip.is_loopback(), dns_proxy) {
                    (false, _) => ip,
                    (true, Some(proxy)) => proxy,
                    (true, None) => continue,
                };
                if !servers.contains(&ip) {
                    servers.push(ip);
                }
            }
            // The last of `search` and `domain` wins (resolv.conf(5)).
            Some("search") | Some("domain") => search = words.map(str::to_string).collect(),
            Some("options") => options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    if servers.is_empty() {
        servers.extend(dns_proxy);
    }
    if !dns.servers.is_empty() {
        servers = dns.servers.clone();
    }
    if !dns.search.is_empty() {
        search = dns.search.iter().filter(|s| *s != ".").cloned().collect();
    }
    if !dns.options.is_empty() {
        options = dns.options.clone();
    }
    let mut text = String::new();
    if !search.is_empty() {
        text.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in servers {
        text.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        text.push_str(&format!("options {}\n", options.join(" ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn resolv_conf_cases() {
        let resolved = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n";
        let plain = "# comment\nnameserver 10.255.255.53\nnameserver fe80::1%eth0\ndomain corp\n";
        let slirp = Some(ip("10.0.2.3"));
        let none = None;
        let no_flags = DnsOptions::default();
        let flags = DnsOptions {
            servers: vec![ip("192.0.2.53")],
            search: vec!["example.com".into()],
            options: vec!["ndots:2".into()],
        };
        let cases: &[(&str, &DnsOptions, Option<IpAddr>, &str)] = &[
            (resolved, &no_flags, slirp, "search lan\nnameserver 10.0.2.3\noptions edns0 trust-ad\n"),
            // Without a proxy a loopback resolver is unreachable: dropped.
            (resolved, &no_flags, none, "search lan\noptions edns0 trust-ad\n"),
            (plain, &no_flags, slirp, "search corp\nnameserver 10.255.255.53\nnameserver fe80::1\n"),
            (plain, &flags, slirp, "search example.com\nnameserver 192.0.2.53\noptions ndots:2\n"),
            ("", &no_flags, slirp, "nameserver 10.0.2.3\n"),
            ("", &no_flags, none, ""),
        ];
        for (host, dns, addrs, want) in cases {
            assert_eq!(resolv_conf(host, dns, *addrs), *want, "host {host:?} flags {dns:?}");
        }
        let clear = DnsOptions { search: vec![".".into()], ..Default::default() };
        assert_eq!(resolv_conf(resolved, &clear, slirp), "nameserver 10.0.2.3\noptions edns0 trust-ad\n");
    }

    #[test]
    fn hosts_cases() {
        assert_eq!(
            hosts("abc", &["web"], None, &[]),
            "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tabc web\n"
        );
        let text = hosts("web", &["web", "www"], Some(ip("10.0.2.100")), &[("db".into(), ip("192.0.2.9"))]);
        assert!(text.ends_with("10.0.2.100\tweb www\n192.0.2.9\tdb\n"), "{text}");
    }
}
