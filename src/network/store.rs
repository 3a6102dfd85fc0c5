//! User networks as records: `<root>/networks/<name>.json`, created by `rl network create` and
//! read at each start of a container on them. The per-user network daemon ([`super::netd`])
//! brings a network up (its bridge, slirp4netns, DNS) when its first container starts.
//!
//! Addressing: a network is an IPv4 /N (default: the first free 10.89.K.0/24). Its gateway
//! (default .1) is the daemon's address on the bridge, where the DNS responder answers; .2 and
//! .3 are slirp4netns's router and resolver (the egress of a non-internal network); containers
//! get addresses from .10 up.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::store::{lock, Paths};

/// A user network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkDef {
    pub name: String,
    /// 64 hex digits.
    pub id: String,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    /// The daemon's address on the bridge (DNS).
    pub gateway: Ipv4Addr,
    /// No egress: containers reach each other only.
    pub internal: bool,
    pub created_ns: u128,
}

impl NetworkDef {
    /// The bridge's interface name (at most 15 bytes).
    pub fn bridge(&self) -> String {
        format!("rl{}", &self.id[..10])
    }

    /// slirp4netns's router on the network (the containers' default route) and resolver.
    pub fn router(&self) -> Ipv4Addr {
        self.host(2)
    }

    /// The `n`th address of the subnet.
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet) + n)
    }

    /// How many addresses the subnet has.
    pub fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.prefix))
    }

    /// The subnet as `A.B.C.D/N`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.subnet, self.prefix)
    }
}

fn dir(paths: &Paths) -> PathBuf {
    paths.root.join("networks")
}

fn lock_path(paths: &Paths) -> PathBuf {
    paths.root.join("networks.lock")
}

/// Names of networks rl itself provides (not user networks).
const RESERVED: [&str; 7] = ["none", "host", "bridge", "default", "private", "slirp4netns", "pasta"];

/// Every user network, by name.
pub fn list(paths: &Paths) -> Result<Vec<NetworkDef>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir(paths)) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("read `{}`", dir(paths).display())),
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            let text = std::fs::read(&p).with_context(|| format!("read `{}`", p.display()))?;
            out.push(serde_json::from_slice(&text).with_context(|| format!("parse `{}`", p.display()))?);
        }
    }
    out.sort_by(|a: &NetworkDef, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The network named `query`, or whose id starts with it.
pub fn find(paths: &Paths, query: &str) -> Result<NetworkDef> {
    let all = list(paths)?;
    if let Some(n) = all.iter().find(|n| n.name == query) {
        return Ok(n.clone());
    }
    let by_id: Vec<&NetworkDef> = all.iter().filter(|n| !query.is_empty() && n.id.starts_with(query)).collect();
    match by_id.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(crate::hint::with_fix(
            format!("network `{query}`: no such network"),
            format!("create it: `rl network create {query}`"),
        )),
        _ => bail!("network `{query}`: the id prefix is ambiguous"),
    }
}

/// Parses `A.B.C.D/N` into its network address and prefix (room for the gateway, slirp4netns's
/// two addresses and containers: at most /28).
pub fn parse_subnet(s: &str) -> Result<(Ipv4Addr, u8)> {
    let what = || format!("subnet `{s}`");
    let (addr, bits) = s.split_once('/').with_context(|| format!("{}: expected ADDRESS/PREFIX", what()))?;
    let addr: Ipv4Addr = addr.parse().with_context(|| format!("{}: not an IPv4 address", what()))?;
    let bits: u8 = bits.parse().ok().filter(|b| (8..=28).contains(b)).with_context(|| {
        format!("{}: the prefix must be from 8 to 28 (IPv6 user networks are not supported)", what())
    })?;
    let mask = u32::MAX << (32 - u32::from(bits));
    Ok((Ipv4Addr::from(u32::from(addr) & mask), bits))
}

fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let bits = a.1.min(b.1);
    let mask = u32::MAX << (32 - u32::from(bits));
    u32::from(a.0) & mask == u32::from(b.0) & mask
}

/// `rl network create`: records a new network; `subnet` default: the first free 10.89.K.0/24.
pub fn create(
    paths: &Paths,
    name: &str,
    subnet: Option<&str>,
    gateway: Option<&str>,
    internal: bool,
) -> Result<NetworkDef> {
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        bail!("network name `{name}`: only letters, digits, `_`, `.` and `-` (at most 64)");
    }
    if RESERVED.contains(&name) {
        bail!("network name `{name}`: reserved for a network mode");
    }
    crate::store::layout::private_dir(&dir(paths))?;
    let _lock = lock::exclusive(&lock_path(paths))?;
    let existing = list(paths)?;
    if existing.iter().any(|n| n.name == name) {
        bail!("network `{name}`: already exists");
    }
    let taken: Vec<(Ipv4Addr, u8)> = existing.iter().map(|n| (n.subnet, n.prefix)).collect();
    let (subnet, prefix) = match subnet {
        Some(s) => {
            let net = parse_subnet(s)?;
            if let Some(other) = existing.iter().find(|n| overlaps(net, (n.subnet, n.prefix))) {
                bail!("subnet `{s}`: overlaps network `{}` ({})", other.name, other.cidr());
            }
            net
        }
        None => (0..=255u8)
            .map(|k| (Ipv4Addr::new(10, 89, k, 0), 24))
            .find(|c| !taken.iter().any(|t| overlaps(*c, *t)))
            .context("pick a subnet: 10.89.0.0/16 is used up; give --subnet")?,
    };
    let mut def = NetworkDef {
        name: name.to_string(),
        id: crate::state::new_id()?,
        subnet,
        prefix,
        gateway: Ipv4Addr::UNSPECIFIED,
        internal,
        created_ns: crate::state::now_ns(),
    };
    def.gateway = match gateway {
        None => def.host(1),
        Some(g) => {
            let ip: Ipv4Addr = g.parse().with_context(|| format!("gateway `{g}`: not an IPv4 address"))?;
            let n = u32::from(ip).wrapping_sub(u32::from(subnet));
            if n == 0 || n >= def.size() - 1 {
                bail!("gateway `{g}`: not a host address of subnet {}", def.cidr());
            }
            if n == 2 || n == 3 {
                bail!("gateway `{g}`: .2 and .3 of the subnet are the network's router and resolver");
            }
            ip
        }
    };
    let json = serde_json::to_vec_pretty(&def).context("encode network")?;
    lock::write_atomic(&dir(paths).join(format!("{name}.json")), &json)?;
    Ok(def)
}

/// Removes the record of network `name`.
pub fn remove(paths: &Paths, name: &str) -> Result<()> {
    let _lock = lock::exclusive(&lock_path(paths))?;
    let p = dir(paths).join(format!("{name}.json"));
    std::fs::remove_file(&p).with_context(|| format!("remove `{}`", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_overlap() {
        assert_eq!(parse_subnet("10.90.1.7/24").unwrap(), (Ipv4Addr::new(10, 90, 1, 0), 24));
        for bad in ["10.90.1.0", "10.90.1.0/30", "fd00::/64", "x/24", "10.0.0.0/7"] {
            assert!(parse_subnet(bad).is_err(), "{bad}");
        }
        let a = (Ipv4Addr::new(10, 89, 0, 0), 24);
        assert!(overlaps(a, (Ipv4Addr::new(10, 89, 0, 128), 25)));
        assert!(overlaps(a, (Ipv4Addr::new(10, 0, 0, 0), 8)));
        assert!(!overlaps(a, (Ipv4Addr::new(10, 89, 1, 0), 24)));
    }

    #[test]
    fn create_list_find_remove() {
        let tmp = std::env::temp_dir().join(format!("rl-netstore-{}", std::process::id()));
        let paths = Paths { root: tmp.join("root"), runroot: tmp.join("run") };
        std::fs::create_dir_all(&paths.root).unwrap();
        let a = create(&paths, "a", None, None, false).unwrap();
        assert_eq!((a.subnet, a.prefix, a.gateway), (Ipv4Addr::new(10, 89, 0, 0), 24, Ipv4Addr::new(10, 89, 0, 1)));
        let b = create(&paths, "b", None, None, true).unwrap();
        assert_eq!(b.subnet, Ipv4Addr::new(10, 89, 1, 0));
        assert!(create(&paths, "a", None, None, false).unwrap_err().to_string().contains("already exists"));
        assert!(create(&paths, "c", Some("10.89.0.0/16"), None, false).unwrap_err().to_string().contains("overlaps"));
        assert!(create(&paths, "d", Some("10.7.0.0/24"), Some("10.7.0.2"), false).is_err());
        assert!(create(&paths, "host", None, None, false).is_err());
        let c = create(&paths, "c", Some("10.7.0.0/24"), Some("10.7.0.9"), false).unwrap();
        assert_eq!(c.gateway, Ipv4Addr::new(10, 7, 0, 9));
        assert_eq!(list(&paths).unwrap().iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(find(&paths, &b.id[..8]).unwrap().name, "b");
        assert!(find(&paths, "zz").is_err());
        assert_eq!(a.bridge().len(), 12);
        remove(&paths, "a").unwrap();
        // (`find("a")` may still match: "a" is also a prefix of a hex id.)
        assert_eq!(list(&paths).unwrap().iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        assert!(find(&paths, "zz-gone").is_err());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
