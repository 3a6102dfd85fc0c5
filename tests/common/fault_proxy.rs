//! A misbehaving registry for tests of the client's network robustness: an HTTP/1.1 forwarder
//! on a free 127.0.0.1 port, in front of the shared test registry (`RL_TEST_REGISTRY`, plain
//! HTTP), that breaks blob downloads the way real registries, CDNs and load balancers do, as
//! its `Plan` says: 503/429 answers, connections reset before an answer, bodies cut short,
//! redirects to another host (a second listener on 127.0.0.2 — Linux routes all of 127/8 to
//! `lo`), and a Basic auth demand on `/v2/` the upstream does not make. It records every
//! request it receives, on either listener.
//!
//! One request per connection: the answer always says `Connection: close`, so a cut body ends
//! with the connection, as it does when a real one breaks. It runs in threads of the test
//! process; dropping the value stops the listeners.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use base64::Engine;

/// Faults to inject. Those on blobs apply to `GET /v2/…/blobs/<digest>` for every digest in
/// `blobs`, or every blob when `blobs` is empty; their counts are per blob. A request meets the
/// first that applies, in this order: auth, reset, fail, redirect, cut.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub blobs: Vec<String>,
    /// Answer the first `times` GETs of each blob with `status` (503, 429) and `Retry-After: 0`.
    pub fail: Option<Fail>,
    /// Read the first `times` GETs of each blob, then reset the connection without an answer.
    pub reset: Option<usize>,
    /// Send the first `times` answers of each blob with their full `Content-Length` but only
    /// `after` bytes of body, then close the connection.
    pub cut: Option<Cut>,
    /// Answer blob GETs with `307` to the same path on the second listener (127.0.0.2).
    pub redirect: bool,
    /// Answer any `/v2/` request without `Authorization: Basic` for this user and password with
    /// `401` and `WWW-Authenticate: Basic realm=…`.
    pub basic_auth: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy)]
pub struct Fail {
    pub status: u16,
    pub times: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Cut {
    pub after: u64,
    pub times: usize,
}

/// What the proxy did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Forwarded; the upstream's status (0 until its answer came, or when none did).
    Forwarded(u16),
    /// Answered with this status instead of forwarding (a `Fail`).
    Failed(u16),
    Reset,
    /// Forwarded with the body cut after this many bytes.
    Cut(u64),
    Redirected,
    Challenged,
    /// The upstream could not be reached or answered nonsense.
    Broken,
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The listener it arrived on (127.0.0.1:… or the redirect target on 127.0.0.2:…).
    pub to: SocketAddr,
    pub from: SocketAddr,
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
    pub action: Action,
}

impl Seen {
    /// The digest when this is a blob GET.
    pub fn blob(&self) -> Option<&str> {
        blob_digest(&self.method, &self.path)
    }
}

fn blob_digest<'a>(method: &str, path: &'a str) -> Option<&'a str> {
    if method != "GET" || !path.starts_with("/v2/") {
        return None;
    }
    let path = path.split('?').next().unwrap_or(path);
    let (_, digest) = path.rsplit_once("/blobs/")?;
    digest.contains(':').then_some(digest)
}

struct Shared {
    upstream: String,
    plan: Plan,
    seen: Mutex<Vec<Seen>>,
    /// The second listener's address, when the plan redirects.
    target: Option<SocketAddr>,
    /// How often each fault was used on each blob.
    used: Mutex<HashMap<(&'static str, String), usize>>,
    stop: AtomicBool,
}

pub struct FaultProxy {
    /// `127.0.0.1:PORT`, to use as the registry in image references.
    pub addr: String,
    /// The redirect target's `127.0.0.2:PORT`, when the plan redirects.
    pub target: Option<String>,
    shared: Arc<Shared>,
    listeners: Vec<(SocketAddr, JoinHandle<()>)>,
}

impl FaultProxy {
    /// Starts the proxy in front of `upstream` (`host:port`, plain HTTP).
    pub fn start(upstream: &str, plan: Plan) -> FaultProxy {
        let main = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy on 127.0.0.1");
        let second = plan
            .redirect
            .then(|| TcpListener::bind("127.0.0.2:0").expect("bind the redirect target on 127.0.0.2 (127/8 is lo)"));
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            plan,
            seen: Mutex::new(Vec::new()),
            target: second.as_ref().map(|l| l.local_addr().expect("redirect target address")),
            used: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
        });
        let addr = main.local_addr().expect("proxy address");
        let mut listeners = vec![(addr, serve(main, shared.clone(), false))];
        if let Some(l) = second {
            listeners.push((l.local_addr().expect("target address"), serve(l, shared.clone(), true)));
        }
        FaultProxy { addr: addr.to_string(), target: shared.target.map(|a| a.to_string()), shared, listeners }
    }

    /// Every request so far, in the order they arrived.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The GETs of blob `digest` that arrived on the main listener.
    pub fn blob_gets(&self, digest: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.to.to_string() == self.addr && s.blob() == Some(digest)).collect()
    }

    /// Everything seen, one line each, for assertion messages.
    pub fn dump(&self) -> String {
        self.seen()
            .iter()
            .map(|s| {
                format!(
                    "{} <- {}: {} {} range={:?} auth={} => {:?}\n",
                    s.to,
                    s.from,
                    s.method,
                    s.path,
                    s.range,
                    s.authorization.is_some(),
                    s.action
                )
            })
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for (addr, handle) in self.listeners.drain(..) {
            // Wakes the blocked accept, which then sees the stop flag.
            let _ = TcpStream::connect(addr);
            let _ = handle.join();
        }
    }
}

fn serve(listener: TcpListener, shared: Arc<Shared>, is_target: bool) -> JoinHandle<()> {
    thread::spawn(move || {
        for conn in listener.incoming() {
            if shared.stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let shared = shared.clone();
            // A connection thread ends with its connection; the timeouts keep a stuck peer
            // from holding it past the test.
            thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
                let _ = conn.set_write_timeout(Some(Duration::from_secs(60)));
                let _ = handle(conn, &shared, is_target);
            });
        }
    })
}

/// A request or response head: the first line and the headers.
struct Head {
    line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> u64 {
        self.get("content-length").and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    }
}

fn read_head(r: &mut impl BufRead) -> io::Result<Head> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    if line.is_empty() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Head { line: line.trim_end_matches(['\r', '\n']).to_string(), headers })
}

/// Counts one more use of fault `kind` on blob `digest` and says whether it is within `times`;
/// decided before the answer goes out, so a client's quick retry never races the count.
fn take_fault(shared: &Shared, kind: &'static str, digest: &str, times: usize) -> bool {
    let Ok(mut used) = shared.used.lock() else { return false };
    let n = used.entry((kind, digest.to_string())).or_insert(0);
    if *n < times {
        *n += 1;
        return true;
    }
    false
}

fn handle(conn: TcpStream, shared: &Shared, is_target: bool) -> io::Result<()> {
    let to = conn.local_addr()?;
    let from = conn.peer_addr()?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let head = read_head(&mut reader)?;
    // Request bodies (none in a pull) are read whole, so closing never meets unread data,
    // which would turn the close into a reset.
    let mut body = vec![0u8; head.content_length() as usize];
    reader.read_exact(&mut body)?;
    let mut words = head.line.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let path = words.next().unwrap_or("").to_string();
    let authorization = head.get("authorization").map(String::from);
    let plan = &shared.plan;
    let blob = if is_target { None } else { blob_digest(&method, &path) };
    let faulty = blob.filter(|d| plan.blobs.is_empty() || plan.blobs.iter().any(|b| b == d));
    let authorized = match &plan.basic_auth {
        Some((user, pass)) if !is_target && path.starts_with("/v2/") => {
            let want = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")));
            authorization.as_deref() == Some(want.as_str())
        }
        _ => true,
    };
    let fault = |kind, times: Option<usize>| match (faulty, times) {
        (Some(d), Some(t)) => take_fault(shared, kind, d, t),
        _ => false,
    };
    let planned = if !authorized {
        Action::Challenged
    } else if fault("reset", plan.reset) {
        Action::Reset
    } else if fault("fail", plan.fail.map(|f| f.times)) {
        Action::Failed(plan.fail.map_or(503, |f| f.status))
    } else if plan.redirect && blob.is_some() {
        Action::Redirected
    } else if fault("cut", plan.cut.map(|c| c.times)) {
        Action::Cut(plan.cut.map_or(0, |c| c.after))
    } else {
        Action::Forwarded(0)
    };
    // Recorded before the answer goes out: once the client has its answer, the log has it too.
    let index = {
        let mut seen = shared.seen.lock().map_err(|_| io::Error::other("poisoned log"))?;
        seen.push(Seen {
            to,
            from,
            method,
            path: path.clone(),
            range: head.get("range").map(String::from),
            authorization,
            action: planned,
        });
        seen.len() - 1
    };
    let mut out = conn;
    match planned {
        Action::Challenged => {
            let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
            let extra = "WWW-Authenticate: Basic realm=\"fault-proxy\"\r\nContent-Type: application/json\r\n";
            answer(&mut out, 401, "Unauthorized", extra, body)?;
        }
        Action::Reset => {
            // SO_LINGER with a zero timeout: the close sends RST instead of FIN.
            let linger = libc::linger { l_onoff: 1, l_linger: 0 };
            nix::sys::socket::setsockopt(&out.as_fd(), nix::sys::socket::sockopt::Linger, &linger)?;
            return Ok(());
        }
        Action::Failed(status) => {
            // What a load balancer in front of a registry sends: an HTML page.
            let reason = if status == 429 { "Too Many Requests" } else { "Service Unavailable" };
            let page = format!(
                "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n\
                 <center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
            );
            answer(&mut out, status, reason, "Retry-After: 0\r\nContent-Type: text/html\r\n", &page)?;
        }
        Action::Redirected => {
            let target = shared.target.ok_or_else(|| io::Error::other("a redirect plan has a target"))?;
            answer(&mut out, 307, "Temporary Redirect", &format!("Location: http://{target}{path}\r\n"), "")?;
        }
        Action::Cut(k) => forward(shared, index, &head, &body, &mut out, Some(k))?,
        _ => forward(shared, index, &head, &body, &mut out, None)?,
    }
    out.flush()?;
    out.shutdown(Shutdown::Write)
}

fn answer(out: &mut TcpStream, status: u16, reason: &str, extra: &str, body: &str) -> io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Sends the request to the upstream and streams its answer back, the body cut after `cut`
/// bytes when asked. The upstream's status goes into record `index` before the answer does.
fn forward(
    shared: &Shared,
    index: usize,
    req: &Head,
    body: &[u8],
    out: &mut TcpStream,
    cut: Option<u64>,
) -> io::Result<()> {
    let set = |action| {
        if let Ok(mut seen) = shared.seen.lock() {
            seen[index].action = action;
        }
    };
    let Ok(up) = TcpStream::connect(&shared.upstream) else {
        set(Action::Broken);
        return answer(out, 502, "Bad Gateway", "", "");
    };
    let _ = up.set_read_timeout(Some(Duration::from_secs(60)));
    let mut head = format!("{}\r\nHost: {}\r\n", req.line, shared.upstream);
    for (k, v) in &req.headers {
        if !k.eq_ignore_ascii_case("host") && !k.eq_ignore_ascii_case("connection") {
            head += &format!("{k}: {v}\r\n");
        }
    }
    head += "Connection: close\r\n\r\n";
    let mut w = &up;
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    let mut upr = BufReader::new(&up);
    let resp = read_head(&mut upr)?;
    let status: u16 = resp.line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if cut.is_none() {
        set(Action::Forwarded(status));
    }
    let mut back = format!("{}\r\n", resp.line);
    for (k, v) in &resp.headers {
        if !k.eq_ignore_ascii_case("connection") {
            back += &format!("{k}: {v}\r\n");
        }
    }
    back += "Connection: close\r\n\r\n";
    out.write_all(back.as_bytes())?;
    // The upstream closes after its answer (`Connection: close`), so its body ends at EOF.
    match cut {
        Some(k) => io::copy(&mut upr.take(k), out)?,
        None => io::copy(&mut upr, out)?,
    };
    Ok(())
}
