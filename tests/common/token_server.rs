//! A token server for a registry configured with `auth: token`, run by the test itself: the
//! docker token protocol (`GET /token?service=…&scope=…&account=…`, optional
//! `Authorization: Basic`) on a thread, answering with RS256 JWTs the registry verifies by the
//! `kid` of the test's own certificate (tests/fixtures/README.md, "Token server contract").
//! Every request is recorded so a test can check what the client asked for and how often.
//!
//! Policy: a user of the table gets `pull` and `push` on every repository; anyone else (no
//! credentials) gets `pull` on repositories under `public/` only; wrong credentials get 401;
//! a test may [`deny`](TokenServer::deny) every access to some repositories. What is granted is the part of what was asked that the policy allows — less is not an error.
//!
//! The key and certificate are made with the `openssl` CLI in the test's directory, and every
//! token is signed by `openssl dgst -sha256 -sign`, so no crypto crate is needed. The server
//! answers one connection at a time and closes it after the answer (`Connection: close`), which
//! keeps it a loop; it stops when the value drops.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::require;

/// The registry's `auth.token.service`, and the tokens' `aud`.
pub const TOKEN_SERVICE: &str = "rl-token-test-registry";
/// The registry's `auth.token.issuer`, and the tokens' `iss`.
pub const TOKEN_ISSUER: &str = "rl-token-test-issuer";

/// One request the token server answered.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The query parameters, decoded, in order.
    pub params: Vec<(String, String)>,
    /// Every `scope` parameter (a parameter may hold several, space-separated), in order.
    pub scopes: Vec<String>,
    /// The user of `Authorization: Basic`, when credentials came (right or wrong).
    pub user: Option<String>,
    /// 200, 401 (bad credentials), 404 (not `/token`) or 500 (signing failed).
    pub status: u16,
    /// What the token grants, as scopes (`repository:public/busybox:pull`).
    pub granted: Vec<String>,
}

impl TokenRequest {
    /// The first query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn anonymous(&self) -> bool {
        self.user.is_none()
    }
}

impl std::fmt::Display for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} user={} scopes={:?} params={:?} granted={:?}",
            self.status,
            self.user.as_deref().unwrap_or("-"),
            self.scopes,
            self.params,
            self.granted
        )
    }
}

struct Shared {
    key: PathBuf,
    kid: String,
    users: Vec<(String, String)>,
    requests: Mutex<Vec<TokenRequest>>,
    access_token_only: AtomicBool,
    denied: Mutex<Vec<String>>,
    stop: AtomicBool,
    serial: AtomicU64,
}

pub struct TokenServer {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `http://127.0.0.1:PORT/token`.
    pub realm: String,
    /// The self-signed certificate of the signing key: the registry's `rootcertbundle`.
    pub cert: PathBuf,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// Makes a key and certificate in `dir` and serves tokens for `users` (name, password).
    /// None (after `require`) when openssl is missing.
    pub fn start(dir: &Path, users: &[(&str, &str)]) -> Option<TokenServer> {
        if !require(super::which("openssl").is_some(), "openssl is not installed") {
            return None;
        }
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let (key, cert) = (dir.join("token.key"), dir.join("token.crt"));
        // Self-signed CA certificate: the registry trusts the key through `rootcertbundle`.
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=rl-test-token-issuer",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,digitalSignature,keyCertSign",
                "-keyout",
                path_str(&key),
                "-out",
                path_str(&cert),
            ],
            None,
        );
        let spki = openssl(&["pkey", "-in", path_str(&key), "-pubout", "-outform", "DER"], None);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token server");
        let addr = listener.local_addr().expect("token server address").to_string();
        let shared = Arc::new(Shared {
            key,
            kid: libtrust_kid(&spki),
            users: users.iter().map(|(u, p)| (u.to_string(), p.to_string())).collect(),
            requests: Mutex::new(Vec::new()),
            access_token_only: AtomicBool::new(false),
            denied: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            serial: AtomicU64::new(0),
        });
        let s = shared.clone();
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    serve(&s, c);
                }
            }
        });
        Some(TokenServer { realm: format!("http://{addr}/token"), addr, cert, shared, thread: Some(thread) })
    }

    /// The registry config's `auth:` section for this server; `realm_query` (e.g.
    /// `?tenant=rl`) is appended to the realm.
    pub fn auth_yaml(&self, realm_query: &str) -> String {
        format!(
            "auth:\n  token:\n    realm: \"{}{realm_query}\"\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    \
             rootcertbundle: \"{}\"\n",
            self.realm,
            self.cert.display()
        )
    }

    /// The `kid` in every token's header.
    pub fn kid(&self) -> &str {
        &self.shared.kid
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Forgets the requests so far.
    pub fn clear(&self) {
        if let Ok(mut r) = self.shared.requests.lock() {
            r.clear();
        }
    }

    /// The requests, one a line, for assertion messages.
    pub fn dump(&self) -> String {
        self.requests().iter().map(|r| format!("  {r}\n")).collect()
    }

    /// Answer with the OAuth2 field `access_token` only (no Docker `token`), as some servers do.
    pub fn set_access_token_only(&self, on: bool) {
        self.shared.access_token_only.store(on, Ordering::SeqCst);
    }

    /// From now on nobody gets any access to repositories whose name starts with `prefix`
    /// (access revoked, or another account's repositories).
    pub fn deny(&self, prefix: &str) {
        if let Ok(mut d) = self.shared.denied.lock() {
            d.push(prefix.to_string());
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 test path")
}

/// Runs openssl with `args` (and `stdin`), returning its stdout; panics with its stderr.
fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    try_openssl(args, stdin).unwrap_or_else(|e| panic!("{e}"))
}

fn try_openssl(args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("run openssl {args:?}: {e}"))?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data).map_err(|e| format!("write to openssl {args:?}: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("wait for openssl {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("openssl {args:?}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(out.stdout)
}

/// libtrust's key id: SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32, in
/// 12 groups of 4 joined by `:`.
pub fn libtrust_kid(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let b32 = base32(&digest[..30]);
    b32.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(":")
}

/// RFC 4648 base32 (`A–Z2–7`), without padding.
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in data {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// `%XX` and `+` (a space, as in a form) decoded.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Reads one request head (the token protocol has no request body).
fn read_head(conn: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).ok()?;
        if n == 0 || head.len() > 64 << 10 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn serve(s: &Shared, mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(head) = read_head(&mut conn) else { return };
    let mut lines = head.split("\r\n");
    let target = lines.next().and_then(|l| l.split(' ').nth(1)).unwrap_or("").to_string();
    let basic = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| v.trim().strip_prefix("Basic ").map(str::to_string))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .map(|raw| {
            let raw = String::from_utf8_lossy(&raw).into_owned();
            let (u, p) = raw.split_once(':').unwrap_or((&raw, ""));
            (u.to_string(), p.to_string())
        });
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params = query_params(query);
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').filter(|s| !s.is_empty()).map(str::to_string))
        .collect();
    let mut rec =
        TokenRequest { params, scopes, user: basic.as_ref().map(|(u, _)| u.clone()), status: 200, granted: Vec::new() };
    let (status, extra, body) = if path != "/token" {
        (404, "", json!({"errors": [{"code": "NOT_FOUND"}]}).to_string())
    } else if basic.as_ref().is_some_and(|(u, p)| !s.users.iter().any(|(uu, pp)| uu == u && pp == p)) {
        (401, "WWW-Authenticate: Basic realm=\"rl-test-token\"\r\n", json!({"details": "bad credentials"}).to_string())
    } else {
        let denied = s.denied.lock().map(|d| d.clone()).unwrap_or_default();
        rec.granted = grant(basic.is_some(), &rec.scopes, &denied);
        let sub = basic.as_ref().map(|(u, _)| u.as_str()).unwrap_or("");
        match token(s, sub, &rec.granted) {
            Ok(jwt) => {
                let now = unix_now();
                let mut doc = json!({"access_token": jwt, "expires_in": 300, "issued_at": rfc3339(now)});
                if !s.access_token_only.load(Ordering::SeqCst) {
                    doc["token"] = json!(jwt);
                }
                (200, "", doc.to_string())
            }
            Err(e) => (500, "", json!({"details": e}).to_string()),
        }
    };
    rec.status = status;
    if let Ok(mut r) = s.requests.lock() {
        r.push(rec);
    }
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(answer.as_bytes());
}

/// The policy applied to what was asked: scopes `type:name:actions` (type up to the first
/// colon, actions after the last); nothing on repositories under a `denied` prefix.
fn grant(known_user: bool, scopes: &[String], denied: &[String]) -> Vec<String> {
    scopes
        .iter()
        .filter_map(|scope| {
            let (typ, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            if typ != "repository" {
                return None;
            }
            let allowed: &[&str] = if denied.iter().any(|d| name.starts_with(d.as_str())) {
                &[]
            } else if known_user {
                &["pull", "push"]
            } else if name.starts_with("public/") {
                &["pull"]
            } else {
                &[]
            };
            let ok: Vec<&str> = actions.split(',').filter(|a| allowed.contains(a)).collect();
            (!ok.is_empty()).then(|| format!("{typ}:{name}:{}", ok.join(",")))
        })
        .collect()
}

/// A signed JWT for `sub` granting `granted`.
fn token(s: &Shared, sub: &str, granted: &[String]) -> Result<String, String> {
    let now = unix_now();
    let access: Vec<serde_json::Value> = granted
        .iter()
        .filter_map(|g| {
            let (typ, rest) = g.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(json!({"type": typ, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": s.kid});
    let claims = json!({
        "iss": TOKEN_ISSUER,
        "sub": sub,
        "aud": TOKEN_SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("rl-test-{}-{}", std::process::id(), s.serial.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let sig = try_openssl(&["dgst", "-sha256", "-sign", path_str(&s.key)], Some(input.as_bytes()))?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `2024-01-01T00:00:00Z` for Unix seconds `t` (civil-from-days, proleptic Gregorian).
fn rfc3339(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86400), t.rem_euclid(86400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}
