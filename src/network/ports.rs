//! Published ports as data: the CLI's `-p`/`--publish` specs and `-P`'s image EXPOSE entries
//! turned into [`PortMapping`]s. Pure parsing, run by the `rl` process that reads the command
//! line; [`super::forward`] binds and serves the result.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

/// A published port's transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// One host port relayed to one container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host address to listen on; `None` means every IPv4 address (`0.0.0.0`).
    pub host_ip: Option<IpAddr>,
    /// The host port; 0 until bound means "let the kernel pick a free one".
    pub host_port: u16,
    /// The port the container listens on.
    pub container_port: u16,
    pub proto: Proto,
}

impl PortMapping {
    /// The host side as `0.0.0.0:8080/tcp` (IPv6 in brackets), for messages about binding it.
    pub fn host_side(&self) -> String {
        format!("{}/{}", host_addr(self.host_ip, self.host_port), self.proto)
    }
}

/// Docker's `docker ps` form: `0.0.0.0:8080->80/tcp`, `[::1]:8080->80/udp`.
impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{}/{}", host_addr(self.host_ip, self.host_port), self.container_port, self.proto)
    }
}

fn host_addr(ip: Option<IpAddr>, port: u16) -> String {
    match ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)) {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// Parses one `-p [IP:][HOSTPORT:]CONTAINERPORT[/tcp|/udp]` spec; port ranges (`8000-8002:80-82`)
/// give one mapping per port. A missing host port is 0: the kernel picks one at bind time.
pub fn parse(spec: &str) -> Result<Vec<PortMapping>> {
    parse_spec(spec).map_err(|e| anyhow!("port spec `{spec}`: {e}"))
}

/// `-P`: every port the image EXPOSEs (`80/tcp`, `53/udp`, `8080`), published on a free host
/// port of every IPv4 address. A port listed twice is published once.
pub fn from_expose(expose: &[String]) -> Result<Vec<PortMapping>> {
    let mut out: Vec<PortMapping> = Vec::new();
    for entry in expose {
        let (ports, proto) = split_proto(entry)
            .and_then(|(ports, proto)| Ok((range(ports, "port")?, proto)))
            .map_err(|e| anyhow!("exposed port `{entry}`: {e}"))?;
        for container_port in ports {
            let m = PortMapping { host_ip: None, host_port: 0, container_port, proto };
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    Ok(out)
}

fn parse_spec(spec: &str) -> Result<Vec<PortMapping>> {
    let (rest, proto) = split_proto(spec)?;
    let (host_ip, rest) = split_ip(rest)?;
    let (host, container) = match rest.split_once(':') {
        Some((host, container)) => (host, container),
        // `[::1]:80` leaves open whether 80 is the host or the container port.
        None if host_ip.is_some() => bail!("an address needs `IP:HOSTPORT:PORT` or `IP::PORT`"),
        None => ("", rest),
    };
    if container.contains(':') {
        bail!("too many `:`; IPv6 addresses go in brackets, as in `[::1]:8080:80`");
    }
    let container = range(container, "container port")?;
    let mappings = |host_ports: &mut dyn Iterator<Item = u16>| {
        container
            .clone()
            .zip(host_ports)
            .map(|(container_port, host_port)| PortMapping { host_ip, host_port, container_port, proto })
            .collect()
    };
    if host.is_empty() {
        return Ok(mappings(&mut std::iter::repeat(0)));
    }
    let host = range(host, "host port")?;
    if host.len() != container.len() {
        let (h, c) = (host.len(), container.len());
        bail!(
            "host ports {} and container ports {} differ in number ({h} and {c})",
            show_range(&host),
            show_range(&container)
        );
    }
    Ok(mappings(&mut host.clone()))
}

/// Splits off `/tcp` or `/udp`; TCP when absent.
fn split_proto(spec: &str) -> Result<(&str, Proto)> {
    match spec.rsplit_once('/') {
        None => Ok((spec, Proto::Tcp)),
        Some((rest, "tcp")) => Ok((rest, Proto::Tcp)),
        Some((rest, "udp")) => Ok((rest, Proto::Udp)),
        Some((_, other)) => bail!("unknown protocol `{other}`: use tcp or udp"),
    }
}

/// Splits off a leading address: `[v6]:` or, with three `:`-separated fields, `v4:`.
fn split_ip(spec: &str) -> Result<(Option<IpAddr>, &str)> {
    let (ip, rest) = if let Some(bracketed) = spec.strip_prefix('[') {
        let (ip, rest) = bracketed.split_once(']').ok_or_else(|| anyhow!("`[` without `]`"))?;
        let rest = rest.strip_prefix(':').ok_or_else(|| anyhow!("`]` must be followed by `:`"))?;
        let ip: IpAddr = ip.parse().map_err(|_| anyhow!("bad IP address `{ip}`"))?;
        (ip, rest)
    } else if spec.matches(':').count() == 2 {
        let (ip, rest) = spec.split_once(':').ok_or_else(|| anyhow!("no `:`"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| anyhow!("bad IP address `{ip}`"))?;
        (IpAddr::V4(ip), rest)
    } else if spec.matches(':').count() > 2 {
        bail!("too many `:`; IPv6 addresses go in brackets, as in `[::1]:8080:80`");
    } else {
        return Ok((None, spec));
    };
    // 0.0.0.0 is what `None` already means; one spelling keeps equal mappings equal.
    Ok((Some(ip).filter(|ip| *ip != IpAddr::V4(Ipv4Addr::UNSPECIFIED)), rest))
}

/// `80` or `8000-8002`, each port in 1..=65535.
fn range(text: &str, what: &str) -> Result<RangeInclusive<u16>> {
    let port = |p: &str| -> Result<u16> {
        match p.parse::<u32>() {
            Ok(0) => bail!("{what} 0 is not a port"),
            Ok(n) => u16::try_from(n).map_err(|_| anyhow!("{what} {n} is above 65535")),
            Err(_) if p.is_empty() => bail!("{what} missing"),
            Err(_) => bail!("{what} `{p}` is not a number"),
        }
    };
    match text.split_once('-') {
        None => port(text).map(|p| p..=p),
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a > b {
                bail!("{what} range {a}-{b} runs backwards");
            }
            Ok(a..=b)
        }
    }
}

fn show_range(r: &RangeInclusive<u16>) -> String {
    if r.start() == r.end() {
        r.start().to_string()
    } else {
        format!("{}-{}", r.start(), r.end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(ip: Option<&str>, host_port: u16, container_port: u16, proto: Proto) -> PortMapping {
        PortMapping { host_ip: ip.map(|s| s.parse().unwrap()), host_port, container_port, proto }
    }

    #[test]
    fn good_specs() {
        use Proto::{Tcp, Udp};
        let cases: &[(&str, Vec<PortMapping>)] = &[
            ("80", vec![m(None, 0, 80, Tcp)]),
            ("8080:80", vec![m(None, 8080, 80, Tcp)]),
            ("8080:80/tcp", vec![m(None, 8080, 80, Tcp)]),
            ("8080:80/udp", vec![m(None, 8080, 80, Udp)]),
            ("53/udp", vec![m(None, 0, 53, Udp)]),
            (":80", vec![m(None, 0, 80, Tcp)]),
            ("127.0.0.1:8080:80", vec![m(Some("127.0.0.1"), 8080, 80, Tcp)]),
            ("127.0.0.1::80", vec![m(Some("127.0.0.1"), 0, 80, Tcp)]),
            ("0.0.0.0:8080:80", vec![m(None, 8080, 80, Tcp)]),
            ("[::1]:8080:80", vec![m(Some("::1"), 8080, 80, Tcp)]),
            ("[::]::80/udp", vec![m(Some("::"), 0, 80, Udp)]),
            ("[fe80::1]:65535:1", vec![m(Some("fe80::1"), 65535, 1, Tcp)]),
            ("8000-8002:80-82", vec![m(None, 8000, 80, Tcp), m(None, 8001, 81, Tcp), m(None, 8002, 82, Tcp)]),
            ("8000-8001/udp", vec![m(None, 0, 8000, Udp), m(None, 0, 8001, Udp)]),
            ("10.0.0.1::90-91", vec![m(Some("10.0.0.1"), 0, 90, Tcp), m(Some("10.0.0.1"), 0, 91, Tcp)]),
            ("5000-5000:6000-6000", vec![m(None, 5000, 6000, Tcp)]),
        ];
        for (spec, want) in cases {
            assert_eq!(&parse(spec).unwrap(), want, "{spec}");
        }
    }

    #[test]
    fn bad_specs() {
        let cases = [
            ("", "port spec ``: container port missing"),
            ("0", "port spec `0`: container port 0 is not a port"),
            ("65536", "port spec `65536`: container port 65536 is above 65535"),
            ("8080:0", "port spec `8080:0`: container port 0 is not a port"),
            ("0:80", "port spec `0:80`: host port 0 is not a port"),
            ("70000:80", "port spec `70000:80`: host port 70000 is above 65535"),
            ("http", "port spec `http`: container port `http` is not a number"),
            ("8080:", "port spec `8080:`: container port missing"),
            ("80/sctp", "port spec `80/sctp`: unknown protocol `sctp`: use tcp or udp"),
            ("80/", "port spec `80/`: unknown protocol ``: use tcp or udp"),
            ("300.1.1.1:80:80", "port spec `300.1.1.1:80:80`: bad IP address `300.1.1.1`"),
            ("localhost:80:80", "port spec `localhost:80:80`: bad IP address `localhost`"),
            ("::1:8080:80", "port spec `::1:8080:80`: too many `:`; IPv6 addresses go in brackets, as in `[::1]:8080:80`"),
            ("[::1:8080:80", "port spec `[::1:8080:80`: `[` without `]`"),
            ("[::1]8080:80", "port spec `[::1]8080:80`: `]` must be followed by `:`"),
            ("[nope]:1:2", "port spec `[nope]:1:2`: bad IP address `nope`"),
            ("[::1]:80", "port spec `[::1]:80`: an address needs `IP:HOSTPORT:PORT` or `IP::PORT`"),
            ("82-80", "port spec `82-80`: container port range 82-80 runs backwards"),
            ("8000-8001:80-82", "port spec `8000-8001:80-82`: host ports 8000-8001 and container ports 80-82 differ in number (2 and 3)"),
            ("8000-8001:80", "port spec `8000-8001:80`: host ports 8000-8001 and container ports 80 differ in number (2 and 1)"),
            ("80-", "port spec `80-`: container port missing"),
        ];
        for (spec, want) in cases {
            assert_eq!(parse(spec).unwrap_err().to_string(), want, "{spec}");
        }
    }

    #[test]
    fn display_is_docker_ps_form_and_round_trips() {
        let cases = [
            ("8080:80", "0.0.0.0:8080->80/tcp"),
            ("127.0.0.1:8080:80/udp", "127.0.0.1:8080->80/udp"),
            ("[::1]:8080:80", "[::1]:8080->80/tcp"),
            ("[::]:1:2/udp", "[::]:1->2/udp"),
        ];
        for (spec, shown) in cases {
            let parsed = parse(spec).unwrap();
            assert_eq!(parsed[0].to_string(), shown);
            // `docker ps` form with `->` read as `:` is a `-p` spec for the same mapping.
            assert_eq!(parse(&shown.replace("->", ":")).unwrap(), parsed, "{shown}");
        }
        assert_eq!(parse("[::1]:8080:80/udp").unwrap()[0].host_side(), "[::1]:8080/udp");
    }

    #[test]
    fn expose_entries() {
        let expose: Vec<String> = ["80/tcp", "53/udp", "8080", "80", "9000-9001/tcp"].map(String::from).to_vec();
        let want = vec![
            m(None, 0, 80, Proto::Tcp),
            m(None, 0, 53, Proto::Udp),
            m(None, 0, 8080, Proto::Tcp),
            m(None, 0, 9000, Proto::Tcp),
            m(None, 0, 9001, Proto::Tcp),
        ];
        assert_eq!(from_expose(&expose).unwrap(), want);
        assert_eq!(from_expose(&[]).unwrap(), vec![]);
        for (bad, want) in [
            ("80/sctp", "exposed port `80/sctp`: unknown protocol `sctp`: use tcp or udp"),
            ("8080:80", "exposed port `8080:80`: port `8080:80` is not a number"),
            ("0/udp", "exposed port `0/udp`: port 0 is not a port"),
        ] {
            assert_eq!(from_expose(&[bad.to_string()]).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn serde_round_trip() {
        let ms = parse("[::1]:8080-8081:80-81/udp").unwrap();
        let json = serde_json::to_string(&ms).unwrap();
        assert_eq!(serde_json::from_str::<Vec<PortMapping>>(&json).unwrap(), ms);
    }
}
