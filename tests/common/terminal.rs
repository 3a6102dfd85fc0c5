//! A terminal the test owns: a pty whose slave is rl's stdin, stdout, stderr and controlling
//! terminal, as in a user's session, with what rl prints read from the master by a thread.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use super::TIMEOUT;

pub struct Terminal {
    pub master: File,
    pub child: Child,
    /// Everything read so far.
    pub seen: String,
    /// The terminal's modes before rl started (rl must restore them).
    pub before: nix::sys::termios::Termios,
    rx: mpsc::Receiver<Vec<u8>>,
}

impl Terminal {
    /// Starts `cmd` on a new `rows`×`cols` pty.
    pub fn spawn(cmd: Command, rows: u16, cols: u16) -> Terminal {
        let ws = nix::pty::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        let pty = nix::pty::openpty(&ws, None).expect("openpty");
        let before = nix::sys::termios::tcgetattr(&pty.master).expect("tcgetattr");
        let slave: OwnedFd = pty.slave;
        // util-linux's `setsid --ctty` starts a session whose controlling terminal is its stdin
        // (the slave), as a terminal emulator does, then execs rl.
        let mut cmd = {
            let mut wrapped = Command::new("setsid");
            wrapped.arg("--ctty").arg(cmd.get_program()).args(cmd.get_args());
            wrapped
        };
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()));
        let child = cmd.spawn().expect("spawn rl on the pty");
        drop(cmd);
        drop(slave);
        let master = File::from(pty.master);
        let mut reader = master.try_clone().expect("dup master");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once every slave fd is closed: the session is over.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Terminal { master, child, seen: String::new(), before, rx }
    }

    /// Types `text`.
    pub fn send(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).expect("write to the pty master");
    }

    /// Reads until `want` shows up; false on EOF or TIMEOUT.
    pub fn expect(&mut self, want: &str) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        while !self.seen.contains(want) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(b) => self.seen += &String::from_utf8_lossy(&b),
                Err(_) => return false,
            }
        }
        true
    }

    /// Ends rl and fails the test, showing the terminal.
    pub fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("{what}\n--- terminal so far:\n{}\n---", self.seen);
    }

    /// Waits (bounded) for rl to exit.
    pub fn wait(&mut self, what: &str) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait rl") {
                return st;
            }
            if Instant::now() > deadline {
                self.fail(what);
            }
            std::thread::sleep(super::POLL);
        }
    }

    /// Resizes the outer terminal (`stty` on the master sets the pty's window size).
    pub fn set_winsize(&self, rows: u16, cols: u16) {
        let st = Command::new("stty")
            .args(["rows", &rows.to_string(), "cols", &cols.to_string()])
            .stdin(Stdio::from(self.master.try_clone().expect("dup master")))
            .status()
            .expect("run stty");
        assert!(st.success(), "stty rows {rows} cols {cols}: {st}");
    }
}
