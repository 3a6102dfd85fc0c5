//! `rl attach [--detach-keys KEYS] [--no-stdin] CONTAINER`: the user's terminal (or streams)
//! joined to a detached container's through its monitor ([`crate::monitor::attach`]). The
//! detach keys (Ctrl-P Ctrl-Q by default) leave it running; otherwise attach ends with the
//! container and exits with its status.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::monitor::attach;
use crate::monitor::log::Stream;
use crate::store::Paths;

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The key sequence that detaches (e.g. `ctrl-p,ctrl-q`, `ctrl-a,d`).
    #[arg(long, value_name = "KEYS", default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    /// Do not pass the terminal's input to the container.
    #[arg(long)]
    pub no_stdin: bool,
    pub container: String,
}

/// `rl attach`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: AttachArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let keys = attach::parse_detach_keys(&args.detach_keys)?;
    let (cfg, st) = crate::state::find(&paths, &args.container)?;
    let st = st.map(|s| crate::lifecycle::effective(&s));
    if !st.as_ref().is_some_and(|s| s.running()) {
        return Err(crate::hint::with_fix(
            format!("container `{}`: not running", args.container),
            format!("start it with `rl start {}`", args.container),
        ));
    }
    let sock = attach::connect(&cfg.dirs.run).with_context(|| format!("attach to container `{}`", args.container))?;
    let stdin = std::io::stdin();
    let _raw = if cfg.process.tty && !args.no_stdin { crate::tty::RawMode::enter(stdin.as_fd()) } else { None };
    let mut stdin_open = !args.no_stdin;
    let mut matched = 0usize;
    let mut pending = Vec::new();
    let mut buf = [0u8; 16384];
    let mut sock_w = sock.try_clone().context("clone the attach socket")?;
    loop {
        let mut fds = vec![PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("wait for the container"),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if ready[0] {
            let n = nix::unistd::read(sock.as_fd(), &mut buf).unwrap_or(0);
            if n == 0 {
                break; // the container ended
            }
            if cfg.process.tty {
                let mut out = std::io::stdout();
                out.write_all(&buf[..n]).and_then(|()| out.flush()).context("write to stdout")?;
            } else {
                pending.extend_from_slice(&buf[..n]);
                for (stream, data) in attach::deframe(&mut pending) {
                    let r = match stream {
                        Stream::Stdout => std::io::stdout().write_all(&data).and_then(|()| std::io::stdout().flush()),
                        Stream::Stderr => std::io::stderr().write_all(&data),
                    };
                    r.context("write the container's output")?;
                }
            }
        }
        if stdin_open && ready.get(1) == Some(&true) {
            let n = match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    continue;
                }
                Ok(n) => n,
            };
            // The detach sequence is held back until it is complete or broken.
            let mut out = Vec::with_capacity(n);
            for &b in &buf[..n] {
                if b == keys[matched] {
                    matched += 1;
                    if matched == keys.len() {
                        let _ = sock_w.write_all(&out);
                        drop(_raw);
                        eprintln!("\ndetached from container `{}`; it keeps running", args.container);
                        return Ok(0);
                    }
                } else {
                    out.extend_from_slice(&keys[..matched]);
                    matched = 0;
                    if b == keys[0] {
                        matched = 1;
                    } else {
                        out.push(b);
                    }
                }
            }
            if !out.is_empty() && sock_w.write_all(&out).is_err() {
                break;
            }
        }
    }
    drop(_raw);
    // Its exit is recorded once the monitor is done (unless a restart policy keeps it going).
    if cfg.restart == crate::config::RestartPolicy::No {
        crate::lifecycle::wait_watcher(&crate::state::load(&paths, &cfg.id)?)?;
    }
    let st = crate::state::load(&paths, &cfg.id)?;
    match st.exit_code {
        Some(code) => Ok(code),
        None => bail!("container `{}`: ended without an exit code", args.container),
    }
}
