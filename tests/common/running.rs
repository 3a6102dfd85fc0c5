//! Running rl and collecting what it prints: `Out` for a finished run, `Running` for one the
//! test interacts with (waits for a line, signals it, finds its descendants).
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::procs::{descendants, Proc};
use super::{POLL, TIMEOUT};

/// A finished rl run; `Display` shows everything, for assertion messages.
pub struct Out {
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "expected exit status {code}\n{self}");
        self
    }

    pub fn assert_ok(&self) -> &Self {
        self.assert_code(0)
    }

    /// rl's own failure: exit 125 and one `Error: …` line containing `needle`.
    pub fn assert_error(&self, needle: &str) -> &Self {
        self.assert_code(125);
        let errors: Vec<&str> = self.stderr.lines().filter(|l| l.starts_with("Error: ")).collect();
        assert_eq!(errors.len(), 1, "expected one `Error: …` line on stderr\n{self}");
        assert!(errors[0].contains(needle), "the error line should name `{needle}`\n{self}");
        self
    }

    /// A `hint: …` line containing every needle and naming a distro-notes/ file.
    pub fn assert_hint(&self, needles: &[&str]) -> &Self {
        let hints: Vec<&str> = self.stderr.lines().filter(|l| l.starts_with("hint: ")).collect();
        assert!(!hints.is_empty(), "expected a `hint: …` line on stderr\n{self}");
        let all: Vec<&str> = needles.iter().copied().chain(["distro-notes/"]).collect();
        assert!(
            hints.iter().any(|h| all.iter().all(|n| h.contains(n))),
            "expected a hint line mentioning all of {all:?}\n{self}"
        );
        self
    }

    pub fn stdout_trim(&self) -> &str {
        self.stdout.trim()
    }
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_dump(f, &self.what, &format!("{}", self.status), &self.stdout, &self.stderr)
    }
}

fn write_dump(f: &mut impl fmt::Write, what: &str, status: &str, out: &str, err: &str) -> fmt::Result {
    write!(f, "--- command: {what}\n--- status: {status}\n--- stdout:\n{out}\n--- stderr:\n{err}\n---")
}

fn describe(cmd: &Command) -> String {
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        let v = v.map(|v| v.to_string_lossy().into_owned()).unwrap_or_else(|| "<unset>".into());
        s += &format!("{}={} ", k.to_string_lossy(), v);
    }
    s += &cmd.get_program().to_string_lossy();
    for a in cmd.get_args() {
        s += " ";
        s += &a.to_string_lossy();
    }
    s
}

/// Runs a command to the end with the given stdin (None: /dev/null).
pub fn output(cmd: Command, stdin: Option<&[u8]>) -> Out {
    let mut r = Running::spawn(cmd, stdin.is_some());
    if let Some(data) = stdin {
        r.feed_stdin(data.to_vec());
    }
    r.finish()
}

enum Chunk {
    Out(Vec<u8>),
    Err(Vec<u8>),
    OutEof,
    ErrEof,
}

/// A running rl whose stdout and stderr are collected line by line.
pub struct Running {
    pub child: Child,
    what: String,
    stdin: Option<ChildStdin>,
    rx: Receiver<Chunk>,
    pub stdout: String,
    pub stderr: String,
    open: u8,
    status: Option<ExitStatus>,
}

fn pump<R: Read + Send + 'static>(r: R, tx: Sender<Chunk>, err: bool) {
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(n) if n > 0 => {
                    let _ = tx.send(if err { Chunk::Err(line) } else { Chunk::Out(line) });
                }
                _ => break,
            }
        }
        let _ = tx.send(if err { Chunk::ErrEof } else { Chunk::OutEof });
    });
}

impl Running {
    pub fn spawn(mut cmd: Command, stdin: bool) -> Running {
        let what = describe(&cmd);
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let (tx, rx) = mpsc::channel();
        pump(child.stdout.take().expect("stdout"), tx.clone(), false);
        pump(child.stderr.take().expect("stderr"), tx, true);
        let stdin = child.stdin.take();
        Running { child, what, stdin, rx, stdout: String::new(), stderr: String::new(), open: 2, status: None }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Writes `data` to rl's stdin from a thread, then closes it.
    pub fn feed_stdin(&mut self, data: Vec<u8>) {
        let mut stdin = self.stdin.take().expect("spawned with stdin");
        thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }

    /// Writes `data` to rl's stdin and keeps it open (small writes: a pipe buffer holds them).
    pub fn write_stdin(&mut self, data: &[u8]) {
        let stdin = self.stdin.as_mut().expect("spawned with stdin");
        stdin.write_all(data).and_then(|()| stdin.flush()).expect("write to rl's stdin");
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).unwrap_or_else(|e| panic!("kill -{sig} rl: {e}"));
    }

    /// Everything so far, for assertion messages.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        let st = self.status.map(|s| s.to_string()).unwrap_or_else(|| "running".into());
        let _ = write_dump(&mut s, &self.what, &st, &self.stdout, &self.stderr);
        s
    }

    /// Takes in what rl printed, for at most `wait`; false if nothing came.
    fn take(&mut self, wait: Duration) -> bool {
        match self.rx.recv_timeout(wait) {
            Ok(Chunk::Out(b)) => self.stdout += &String::from_utf8_lossy(&b),
            Ok(Chunk::Err(b)) => self.stderr += &String::from_utf8_lossy(&b),
            Ok(Chunk::OutEof | Chunk::ErrEof) => self.open -= 1,
            Err(RecvTimeoutError::Timeout) => return false,
            Err(RecvTimeoutError::Disconnected) => {
                // Both streams are closed; rl may still be exiting.
                thread::sleep(wait);
                return false;
            }
        }
        true
    }

    fn reap(&mut self) {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("wait rl");
        }
    }

    /// Waits until stdout has a line equal to `line` (e.g. the container's "ready").
    pub fn wait_for_line(&mut self, line: &str) {
        self.wait_for(line, false)
    }

    /// Waits until stderr has a line equal to `line`.
    pub fn wait_for_err_line(&mut self, line: &str) {
        self.wait_for(line, true)
    }

    /// Waits until stdout has `n` lines equal to `line` (a command that repeats itself).
    pub fn wait_for_lines(&mut self, line: &str, n: usize) {
        let deadline = Instant::now() + TIMEOUT;
        while self.stdout.lines().filter(|l| *l == line).count() < n {
            if self.open == 0 || Instant::now() > deadline {
                self.reap();
                panic!("not {n} lines `{line}` on stdout\n{}", self.dump());
            }
            self.take(POLL);
        }
    }

    fn wait_for(&mut self, line: &str, err: bool) {
        let deadline = Instant::now() + TIMEOUT;
        let has = |s: &Self| if err { &s.stderr } else { &s.stdout }.lines().any(|l| l == line);
        while !has(self) {
            if self.open == 0 || Instant::now() > deadline {
                self.reap();
                let stream = if err { "stderr" } else { "stdout" };
                panic!("no line `{line}` on {stream}\n{}", self.dump());
            }
            self.take(POLL);
        }
    }

    /// Polls until a descendant of rl matches, e.g. the container's `sleep MARKER`.
    pub fn wait_for_descendant(&mut self, what: &str, f: impl Fn(&Proc) -> bool) -> Proc {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(p) = descendants(self.pid()).into_iter().find(|p| f(p)) {
                return p;
            }
            self.reap();
            if self.status.is_some() || Instant::now() > deadline {
                while self.take(POLL) {}
                panic!("no descendant of rl is {what}\n{}", self.dump());
            }
            self.take(POLL);
        }
    }

    /// Waits for rl to exit and for its stdout and stderr to close.
    pub fn finish(mut self) -> Out {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            self.reap();
            if self.status.is_some() && self.open == 0 {
                break;
            }
            if Instant::now() > deadline {
                let why = if self.status.is_none() {
                    "rl did not exit"
                } else {
                    "rl exited but something still holds its stdout/stderr open (a leaked process?)"
                };
                panic!("{why} within {TIMEOUT:?}\n{}", self.dump());
            }
            self.take(POLL);
        }
        Out {
            what: std::mem::take(&mut self.what),
            status: self.status.expect("exited"),
            stdout: std::mem::take(&mut self.stdout),
            stderr: std::mem::take(&mut self.stderr),
        }
    }
}

impl Drop for Running {
    /// A failed test must not leave rl running.
    fn drop(&mut self) {
        self.reap();
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
