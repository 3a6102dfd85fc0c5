//! A client for one repository of a registry speaking the OCI distribution protocol: the `/v2/`
//! API over HTTPS with the system's CAs and the registry's certs.d directory (plain HTTP for
//! loopback registries, unverified TLS or plain HTTP for insecure ones: see [`super::tls`]),
//! with the `WWW-Authenticate` challenge answered by a Bearer token (anonymous or with
//! credentials, scoped to the repository, reused until it expires) or Basic auth. Redirects for
//! blobs are followed without the credential (ureq never sends `Authorization` across a
//! redirect). Failed requests are retried with backoff on 429, 5xx and connection errors. Runs
//! in the `rl` parent, from the pull's download threads.

use std::io::Read;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use ureq::http::Response;
use ureq::Body;

use super::tls::{self, Scheme, Transport};

/// A user name and password (or token) for a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Builds and sends one attempt of a request, given the agent and the current Authorization.
pub(super) type MakeRequest<'a> = dyn Fn(&ureq::Agent, Option<String>) -> Result<Response<Body>, ureq::Error> + 'a;

/// How many times a request is tried before its error counts.
const ATTEMPTS: u32 = 4;

/// One repository on one registry.
pub struct Client {
    agent: ureq::Agent,
    transport: Transport,
    /// Why the TLS setup failed (a bad file in certs.d, an unreadable CA bundle): every request
    /// fails with it. Kept here so `new` stays infallible for its callers.
    setup_error: Option<String>,
    api_host: String,
    /// `scheme://api_host`, settled on first use (an insecure registry is probed for TLS).
    base: OnceLock<String>,
    /// The registry as the user named it, for messages.
    pub registry: String,
    pub repository: String,
    creds: Option<Credentials>,
    auth: Mutex<Auth>,
    /// The token scope's actions: `pull`, or `pull,push` for `rl push`.
    actions: &'static str,
}

#[derive(Debug, Clone, Default)]
enum Auth {
    #[default]
    None,
    Basic,
    Bearer {
        token: String,
        until: Instant,
    },
}

/// Whether `host` (with port) is a loopback registry, which may use plain HTTP.
pub fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => {
            host.rsplit_once(':').map_or(host, |(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { host })
        }
    };
    name == "localhost" || name == "::1" || name.starts_with("127.")
}

impl Client {
    /// A client for `repository` at `api_host` (`registry` is the name the user gave).
    /// `insecure` is the registries.conf flag of the endpoint.
    pub fn new(registry: &str, api_host: &str, repository: &str, creds: Option<Credentials>, insecure: bool) -> Client {
        let (transport, setup_error) = match tls::transport(registry, api_host, insecure) {
            Ok(t) => (t, None),
            Err(e) => {
                let fallback =
                    Transport { scheme: Scheme::Https, tls: Default::default(), certs_dir: None, client_cert: false };
                (fallback, Some(format!("{e:#}")))
            }
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .user_agent(concat!("rl/", env!("CARGO_PKG_VERSION")))
            .tls_config(transport.tls.clone())
            .build();
        Client {
            agent: config.into(),
            transport,
            setup_error,
            api_host: api_host.to_string(),
            base: OnceLock::new(),
            registry: registry.to_string(),
            repository: repository.to_string(),
            creds,
            auth: Mutex::new(Auth::None),
            actions: "pull",
        }
    }

    /// The same client asking for push access too.
    pub fn for_push(mut self) -> Client {
        self.actions = "pull,push";
        self
    }

    fn authorization(&self) -> Option<String> {
        let auth = self.auth.lock().map(|a| a.clone()).unwrap_or_default();
        match auth {
            Auth::None => None,
            Auth::Basic => self.creds.as_ref().map(basic_header),
            Auth::Bearer { token, until } if Instant::now() < until => Some(format!("Bearer {token}")),
            Auth::Bearer { .. } => None,
        }
    }

    /// GET `path` (under /v2/) with `headers`, answering an auth challenge once and retrying
    /// transient failures.
    fn get(&self, path: &str, headers: &[(&str, String)]) -> Result<Response<Body>> {
        let url = format!("{}/v2/{path}", self.base());
        self.call(&format!("GET /v2/{path}"), &|agent, auth| {
            let mut req = agent.get(&url);
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            req.call()
        })
    }

    /// Makes a request with `make` (given the agent and the current Authorization value),
    /// answering an auth challenge once and retrying transient failures; `what` names it in
    /// errors.
    pub(super) fn call(&self, what: &str, make: &MakeRequest<'_>) -> Result<Response<Body>> {
        if let Some(e) = &self.setup_error {
            bail!("registry `{}`: {e}", self.registry);
        }
        let mut challenged = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = match make(&self.agent, self.authorization()) {
                Ok(r) => r,
                Err(e) if attempt < ATTEMPTS && transient(&e) => {
                    backoff(attempt);
                    continue;
                }
                Err(e) => return Err(self.failed(what, &e)),
            };
            let status = resp.status().as_u16();
            if status == 400 && self.tls_expected() {
                return Err(tls::https_expected(&self.registry, what));
            }
            if status == 401 && !challenged {
                challenged = true;
                let challenge =
                    resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                self.answer(&challenge)?;
                continue;
            }
            if (status == 429 || status >= 500) && attempt < ATTEMPTS {
                backoff(attempt);
                continue;
            }
            return Ok(resp);
        }
    }

    /// The API base URL (`https://host`). For an insecure registry the first call finds out
    /// whether it answers TLS.
    pub(super) fn base(&self) -> &str {
        self.base.get_or_init(|| {
            let https = match self.transport.scheme {
                Scheme::Https => true,
                Scheme::Http => false,
                Scheme::HttpsOrHttp => {
                    self.setup_error.is_some() || tls::answers_https(Some(&self.agent), &self.api_host)
                }
            };
            format!("{}://{}", if https { "https" } else { "http" }, self.api_host)
        })
    }

    /// The error for a request that failed with `e`, explained when TLS was the cause.
    fn failed(&self, what: &str, e: &ureq::Error) -> anyhow::Error {
        tls::explain(&self.registry, &self.transport, what, e)
            .unwrap_or_else(|| anyhow!("registry `{}`: {what}: {e}", self.registry))
    }

    /// Whether a `400` to plain HTTP came from a registry that wanted TLS: a loopback registry
    /// spoken to in plain HTTP only because it has no certs.d directory, which answers HTTPS.
    fn tls_expected(&self) -> bool {
        self.transport.scheme == Scheme::Http && tls::answers_https(None, &self.api_host)
    }

    /// Answers a `WWW-Authenticate` challenge: fetch a Bearer token, or switch to Basic.
    fn answer(&self, challenge: &str) -> Result<()> {
        let (scheme, params) = parse_challenge(challenge);
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => {
                let realm = params.iter().find(|(k, _)| k == "realm").map(|(_, v)| v.clone()).ok_or_else(|| {
                    anyhow!("registry `{}`: Bearer challenge without a realm: `{challenge}`", self.registry)
                })?;
                let service = params.iter().find(|(k, _)| k == "service").map(|(_, v)| v.clone());
                let own =
                    (!self.repository.is_empty()).then(|| format!("repository:{}:{}", self.repository, self.actions));
                let challenged = params.iter().find(|(k, _)| k == "scope").map(|(_, v)| v.as_str());
                let mut req = self.agent.get(&realm);
                for scope in token_scopes(own, challenged) {
                    req = req.query("scope", scope);
                }
                if let Some(s) = &service {
                    req = req.query("service", s);
                }
                if let Some(c) = &self.creds {
                    // Docker's client names the account too; token servers may key on it.
                    if !c.username.is_empty() {
                        req = req.query("account", &c.username);
                    }
                    req = req.header("Authorization", basic_header(c));
                }
                let resp =
                    req.call().map_err(|e| anyhow!("registry `{}`: token from `{realm}`: {e}", self.registry))?;
                let status = resp.status().as_u16();
                if status == 401 || status == 403 {
                    return Err(self.unauthorized(status));
                }
                if status != 200 {
                    bail!("registry `{}`: token from `{realm}`: HTTP {status}", self.registry);
                }
                let raw = resp
                    .into_body()
                    .with_config()
                    .limit(1 << 20)
                    .read_to_vec()
                    .with_context(|| format!("registry `{}`: read the token from `{realm}`", self.registry))?;
                let body: serde_json::Value = serde_json::from_slice(&raw)
                    .with_context(|| format!("registry `{}`: parse the token from `{realm}`", self.registry))?;
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(|t| t.as_str())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        anyhow!("registry `{}`: token response from `{realm}` has no token", self.registry)
                    })?;
                let secs = body.get("expires_in").and_then(|e| e.as_u64()).unwrap_or(60).max(10);
                // Renew a little early so a token never expires mid-request.
                let until = Instant::now() + Duration::from_secs(secs.saturating_sub(5));
                if let Ok(mut a) = self.auth.lock() {
                    *a = Auth::Bearer { token: token.to_string(), until };
                }
                Ok(())
            }
            "basic" => {
                if self.creds.is_none() {
                    return Err(self.unauthorized(401));
                }
                if let Ok(mut a) = self.auth.lock() {
                    *a = Auth::Basic;
                }
                Ok(())
            }
            _ => bail!("registry `{}`: unsupported authentication challenge `{challenge}`", self.registry),
        }
    }

    pub(super) fn unauthorized(&self, status: u16) -> anyhow::Error {
        match &self.creds {
            Some(c) => crate::hint::with_fix(
                format!(
                    "registry `{}`: access to `{}` denied for user `{}` (HTTP {status}): wrong password or no permission",
                    self.registry, self.repository, c.username
                ),
                format!("log in again with `rl login {}`, or check the user's access to `{}`", self.registry, self.repository),
            ),
            None => crate::hint::with_fix(
                format!(
                    "registry `{}`: access to `{}` requires authentication (HTTP {status})",
                    self.registry, self.repository
                ),
                format!("log in with `rl login {}`", self.registry),
            ),
        }
    }

    fn check(&self, resp: Response<Body>, what: &str) -> Result<Response<Body>> {
        match resp.status().as_u16() {
            200 | 206 => Ok(resp),
            401 | 403 => Err(self.unauthorized(resp.status().as_u16())),
            404 => bail!("registry `{}`: {what} not found in `{}` (HTTP 404)", self.registry, self.repository),
            s => bail!("registry `{}`: {what}: HTTP {s}{}", self.registry, error_detail(resp)),
        }
    }

    /// Checks that the registry answers `/v2/` and accepts the credentials (for `rl login`).
    pub fn ping(&self) -> Result<()> {
        let resp = self.get("", &[])?;
        match resp.status().as_u16() {
            200 => Ok(()),
            401 | 403 => Err(self.unauthorized(resp.status().as_u16())),
            s => bail!("registry `{}`: GET /v2/: HTTP {s}", self.registry),
        }
    }

    /// Fetches the manifest or index `reference` (a tag or digest): its bytes, content type and
    /// digest (computed; checked against `reference` when it is a digest).
    pub fn manifest(&self, reference: &str) -> Result<(Vec<u8>, String)> {
        let accept = super::manifest::ACCEPT.join(", ");
        let mut attempt = 1;
        let (bytes, content_type) = loop {
            let resp =
                self.get(&format!("{}/manifests/{reference}", self.repository), &[("Accept", accept.clone())])?;
            let resp = self.check(resp, &format!("manifest `{reference}`"))?;
            let content_type =
                resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            // A body that breaks is fetched whole again: manifests are small, and a registry
            // need not honour `Range` on them.
            match resp.into_body().with_config().limit(super::manifest::MAX_MANIFEST).read_to_vec() {
                Ok(bytes) => break (bytes, content_type),
                Err(ureq::Error::Io(e)) if attempt < ATTEMPTS && transient_io(&e) => {
                    backoff(attempt);
                    attempt += 1;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("registry `{}`: read manifest `{reference}`", self.registry))
                }
            }
        };
        if reference.contains(':') {
            super::digest::verify(&bytes, reference, None).with_context(|| format!("manifest `{reference}`"))?;
        }
        Ok((bytes, content_type))
    }

    /// A reader over blob `digest` from byte `offset` (a `Range` request when > 0).
    pub fn blob(&self, digest: &str, offset: u64) -> Result<impl Read + Send + 'static> {
        let headers: Vec<(&str, String)> =
            if offset > 0 { vec![("Range", format!("bytes={offset}-"))] } else { Vec::new() };
        let resp = self.get(&format!("{}/blobs/{digest}", self.repository), &headers)?;
        if offset > 0 && resp.status().as_u16() != 206 {
            bail!(
                "registry `{}`: blob `{digest}` cannot resume at byte {offset} (HTTP {})",
                self.registry,
                resp.status()
            );
        }
        let resp = self.check(resp, &format!("blob `{digest}`"))?;
        Ok(resp.into_body().into_reader())
    }

    /// A whole small blob (an image config), size-capped and verified.
    pub fn small_blob(&self, digest: &str, size: u64, cap: u64) -> Result<Vec<u8>> {
        if size > cap {
            bail!("registry `{}`: blob `{digest}` of {size} bytes exceeds the {cap}-byte limit", self.registry);
        }
        let mut bytes = Vec::new();
        let mut attempt = 1;
        loop {
            // A connection that breaks inside the body is as transient as one that breaks
            // before the answer: ask for the rest (read_to_end keeps what came before the error).
            let offset = bytes.len() as u64;
            match self.blob(digest, offset)?.take(cap + 1 - offset).read_to_end(&mut bytes) {
                Ok(_) => break,
                Err(e) if attempt < ATTEMPTS && transient_io(&e) && (bytes.len() as u64) < size => {
                    backoff(attempt);
                    attempt += 1;
                }
                Err(e) => return Err(e).with_context(|| format!("registry `{}`: read blob `{digest}`", self.registry)),
            }
        }
        super::digest::verify(&bytes, digest, Some(size)).with_context(|| format!("blob `{digest}`"))?;
        Ok(bytes)
    }
}

fn basic_header(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.username, c.password);
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
}

/// Failures worth another try: a connection that broke or timed out. Not a name that does not
/// resolve or a port nobody listens on: those answer the same again at once.
fn transient(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Timeout(_) => true,
        ureq::Error::Io(io) => transient_io(io),
        _ => false,
    }
}

/// A connection that broke or timed out, as a body reader reports it.
fn transient_io(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionReset | ConnectionAborted | TimedOut | UnexpectedEof | BrokenPipe | Interrupted)
}

/// The registry's own explanation of a failed request, for an error line: the messages of a
/// distribution-spec error body (`{"errors":[{"code":…,"message":…}]}`), on one line, capped.
/// Any other body (an HTML page from a proxy or load balancer) is left out.
pub(super) fn error_detail(resp: Response<Body>) -> String {
    let body = resp.into_body().with_config().limit(4096).read_to_string().unwrap_or_default();
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else { return String::new() };
    let text = v["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str().or_else(|| e["code"].as_str()))
        .map(|m| m.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|m| !m.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if text.is_empty() {
        return String::new();
    }
    format!(": {}", text.chars().take(200).collect::<String>())
}

fn backoff(attempt: u32) {
    // Exponential backoff between retries of a failed request (not synchronisation).
    std::thread::sleep(Duration::from_millis(200 << attempt.min(5)));
}

/// The scopes to ask a token server for: the client's own (`repository:REPO:ACTIONS`) and
/// whatever else the challenge's `scope` names (space-separated: a cross-repository mount needs
/// `pull` on its source too, and the registry says so), each resource once with the union of
/// its actions. Actions come after the last colon: a resource name may hold a port's colon.
fn token_scopes(own: Option<String>, challenged: Option<&str>) -> Vec<String> {
    let mut merged: Vec<(String, Vec<String>)> = Vec::new();
    let challenged = challenged.unwrap_or("").split_whitespace().map(str::to_string);
    for scope in own.into_iter().chain(challenged) {
        let Some((resource, actions)) = scope.rsplit_once(':').filter(|(r, _)| r.contains(':')) else {
            continue;
        };
        let actions = actions.split(',').filter(|a| !a.is_empty()).map(str::to_string);
        match merged.iter_mut().find(|(r, _)| r == resource) {
            Some((_, have)) => {
                for a in actions {
                    if !have.contains(&a) {
                        have.push(a);
                    }
                }
            }
            None => merged.push((resource.to_string(), actions.collect())),
        }
    }
    merged.into_iter().map(|(r, a)| format!("{r}:{}", a.join(","))).collect()
}

/// Splits `Bearer realm="…",service="…"` into its scheme and parameters.
pub fn parse_challenge(header: &str) -> (String, Vec<(String, String)>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim().to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect::<String>().trim().to_string();
        }
        params.push((key, value));
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://auth.docker.io/token".into()),
                ("service".into(), "registry.docker.io".into()),
                ("scope".into(), "repository:library/alpine:pull,push".into()),
            ]
        );
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!((s.as_str(), p[0].1.as_str()), ("Basic", "Registry Realm"));
        let (_, p) = parse_challenge("Bearer realm=http://x/token, service=svc");
        assert_eq!(p[1], ("service".into(), "svc".into()));
    }

    #[test]
    fn token_scopes_add_what_the_challenge_names() {
        let own = || Some("repository:alice/two:pull,push".to_string());
        let cases: &[(Option<String>, Option<&str>, &[&str])] = &[
            (own(), None, &["repository:alice/two:pull,push"]),
            // A manifest GET's challenge asks for less than the client's own scope.
            (own(), Some("repository:alice/two:pull"), &["repository:alice/two:pull,push"]),
            // A cross-repository mount: the destination and the source.
            (
                own(),
                Some("repository:alice/two:pull,push repository:alice/one:pull"),
                &["repository:alice/two:pull,push", "repository:alice/one:pull"],
            ),
            (own(), Some("repository:alice/two:delete"), &["repository:alice/two:pull,push,delete"]),
            // `rl login` pings `/v2/`, whose challenge has no scope.
            (None, None, &[]),
            (None, Some("registry:catalog:*"), &["registry:catalog:*"]),
            (None, Some("repository:localhost:5000/x:pull"), &["repository:localhost:5000/x:pull"]),
            (None, Some("garbage  repository:x"), &[]),
        ];
        for (own, challenged, want) in cases {
            assert_eq!(token_scopes(own.clone(), *challenged), *want, "{own:?} {challenged:?}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["example.com", "10.0.0.1:5000", "localhost.example.com", "[::2]:1"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
