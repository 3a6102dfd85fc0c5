//! slirp4netns: a user-mode TCP/IP stack on a tap device in the container's network namespace,
//! started by the container's owner (`rl run` or the monitor) once the namespace exists.
//!
//! It joins the namespaces through the pid of the holder that made them, which stays until
//! slirp4netns is ready: with `--netns-type=path`, version 1.2 fails to enter its sandbox
//! (`setegid(0)`). `--configure` sets the tap's address and routes,
//! `--ready-fd` says when that is done (the init waits for it), and `--exit-fd` ends it when
//! the owner closes the other end — or dies, so it never outlives its container. What the
//! installed version supports is read from its `--help` once and cached in the run root.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::ports::{PortMapping, Proto};
use super::wiring::Helper;
use super::SlirpOptions;
use crate::hint::Problem;

/// slirp4netns's API socket, in the container's run dir.
const API_SOCKET: &str = "slirp4netns.sock";

/// Options of slirp4netns that rl uses when the installed version has them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Features {
    sandbox: bool,
    seccomp: bool,
    disable_host_loopback: bool,
    ipv6: bool,
    api_socket: bool,
}

impl Features {
    fn parse(help: &str) -> Features {
        Features {
            sandbox: help.contains("--enable-sandbox"),
            seccomp: help.contains("--enable-seccomp"),
            disable_host_loopback: help.contains("--disable-host-loopback"),
            ipv6: help.contains("--enable-ipv6"),
            api_socket: help.contains("--api-socket"),
        }
    }

    fn encode(self) -> String {
        [self.sandbox, self.seccomp, self.disable_host_loopback, self.ipv6, self.api_socket]
            .map(|b| if b { '1' } else { '0' })
            .iter()
            .collect()
    }

    fn decode(s: &str) -> Option<Features> {
        let b: Vec<bool> = s.chars().map(|c| c == '1').collect();
        (b.len() == 5).then(|| Features {
            sandbox: b[0],
            seccomp: b[1],
            disable_host_loopback: b[2],
            ipv6: b[3],
            api_socket: b[4],
        })
    }
}

/// The features of the slirp4netns at `exe`, from the cache in `cache_dir` when the binary is
/// the one that was probed (same size and modification time).
fn features(exe: &Path, cache_dir: &Path) -> Result<Features> {
    let meta = std::fs::metadata(exe).with_context(|| format!("stat `{}`", exe.display()))?;
    let key = format!("{} {} {}", exe.display(), meta.size(), meta.mtime_nsec() + meta.mtime() * 1_000_000_000);
    let cache = cache_dir.join("slirp4netns.features");
    if let Ok(text) = std::fs::read_to_string(&cache) {
        if let Some((k, f)) = text.trim_end().rsplit_once(' ') {
            if k == key {
                if let Some(f) = Features::decode(f) {
                    return Ok(f);
                }
            }
        }
    }
    let out = Command::new(exe).arg("--help").stdin(Stdio::null()).stderr(Stdio::null()).output();
    let out = out.with_context(|| format!("run `{} --help`", exe.display()))?;
    let f = Features::parse(&String::from_utf8_lossy(&out.stdout));
    let _ = crate::store::lock::write_replace(&cache, format!("{key} {}\n", f.encode()).as_bytes(), false);
    Ok(f)
}

/// Starts slirp4netns on the namespaces of the holder `holder` (which must stay until it is
/// ready); `run_dir` is the container's runtime dir (its log and API socket go there). Its
/// sandbox needs root mapped in the user namespace (`setegid(0)`): without, it runs without.
pub fn start(opts: &SlirpOptions, holder: nix::unistd::Pid, run_dir: &Path, root_mapped: bool) -> Result<Helper> {
    let exe = crate::helper::find("slirp4netns", Problem::NetworkHelperMissing)?;
    let cache_dir = run_dir.parent().and_then(Path::parent).unwrap_or(run_dir);
    let f = features(&exe, cache_dir)?;
    if !opts.allow_host_loopback && !f.disable_host_loopback {
        bail!(
            "slirp4netns `{}` is too old to keep the container off the host's loopback (no --disable-host-loopback); \
             upgrade it or use --network slirp4netns:allow_host_loopback=true",
            exe.display()
        );
    }
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create a pipe")?;
    let (exit_r, exit_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create a pipe")?;
    let log = run_dir.join("slirp4netns.log");
    let log_file = File::create(&log).with_context(|| format!("create `{}`", log.display()))?;
    let (net, prefix, ..) = opts.addresses();
    let mut cmd = Command::new(&exe);
    cmd.arg("--configure").arg(format!("--mtu={}", opts.mtu));
    if opts.cidr.is_some() {
        cmd.arg(format!("--cidr={net}/{prefix}"));
    }
    if !opts.allow_host_loopback {
        cmd.arg("--disable-host-loopback");
    }
    if f.sandbox && root_mapped {
        cmd.arg("--enable-sandbox");
    }
    if f.seccomp {
        cmd.arg("--enable-seccomp");
    }
    if opts.enable_ipv6 && f.ipv6 {
        cmd.arg("--enable-ipv6");
    }
    // A socket path has room for 107 bytes, less than a run dir may take: slirp4netns binds it
    // through the run dir's fd (`/proc/self/fd/N/…`), as rl connects to it.
    let api = run_dir.join(API_SOCKET);
    let dir = File::open(run_dir).with_context(|| format!("open `{}`", run_dir.display()))?;
    if opts.slirp_port_handler {
        if !f.api_socket {
            bail!(
                "slirp4netns `{}` has no API socket for port forwarding: use port_handler=rootlesskit",
                exe.display()
            );
        }
        let _ = std::fs::remove_file(&api);
        cmd.arg(format!("--api-socket=/proc/self/fd/{}/{API_SOCKET}", dir.as_raw_fd()));
    }
    cmd.arg(format!("--ready-fd={}", ready_w.as_raw_fd()))
        .arg(format!("--exit-fd={}", exit_r.as_raw_fd()))
        .arg(holder.to_string())
        .arg("tap0")
        .stdout(log_file.try_clone().context("dup the log")?)
        .stderr(log_file);
    let inherit = [ready_w.as_raw_fd(), exit_r.as_raw_fd(), dir.as_raw_fd()];
    let child = super::wiring::spawn_helper(&mut cmd, &inherit).context("start slirp4netns")?;
    drop((ready_w, exit_r, dir));
    let mut helper =
        Helper::new("slirp4netns", child, exit_w, Some(ready_r), log, opts.slirp_port_handler.then_some(api));
    helper.holds_ports = opts.slirp_port_handler;
    Ok(helper)
}

/// Forwards `ports` through slirp4netns's own stack (`port_handler=slirp4netns`), over its API
/// socket, once it is ready. Host port 0 was replaced by a free port when the ports were checked.
pub fn add_forwards(api: &Path, ports: &[PortMapping]) -> Result<()> {
    for p in ports {
        let request = serde_json::json!({
            "execute": "add_hostfwd",
            "arguments": {
                "proto": match p.proto { Proto::Tcp => "tcp", Proto::Udp => "udp" },
                "host_addr": p.host_ip.map_or_else(|| "0.0.0.0".to_string(), |ip| ip.to_string()),
                "host_port": p.host_port,
                "guest_port": p.container_port,
            }
        });
        let what = || format!("publish port {p} through slirp4netns");
        let dir = api.parent().context("the socket's dir")?;
        let dir = File::open(dir).with_context(|| format!("open `{}`", dir.display()))?;
        let short = format!("/proc/self/fd/{}/{API_SOCKET}", dir.as_raw_fd());
        let mut sock = UnixStream::connect(short).with_context(what)?;
        sock.write_all(request.to_string().as_bytes()).with_context(what)?;
        sock.shutdown(std::net::Shutdown::Write).with_context(what)?;
        let mut reply = String::new();
        sock.read_to_string(&mut reply).with_context(what)?;
        let reply: serde_json::Value = serde_json::from_str(&reply).with_context(what)?;
        if let Some(err) = reply.get("error") {
            let desc = err.get("desc").and_then(|d| d.as_str()).unwrap_or("refused");
            bail!("{}: {desc}", what());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_from_help_and_cache_text() {
        let help = "  --enable-sandbox  ...\n  --disable-host-loopback\n  --api-socket=PATH\n";
        let f = Features::parse(help);
        assert_eq!(
            f,
            Features { sandbox: true, seccomp: false, disable_host_loopback: true, ipv6: false, api_socket: true }
        );
        assert_eq!(Features::decode(&f.encode()), Some(f));
        assert_eq!(Features::decode("10"), None);
    }
}
