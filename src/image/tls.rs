//! How rl talks to one registry host: plain HTTP or HTTPS, and which certificates HTTPS trusts
//! and presents. Runs in the `rl` parent when a registry client is made (see
//! [`super::registry::Client::new`]).
//!
//! - Roots: the system's CA store, read once per process and only when a verified HTTPS
//!   connection is made — `SSL_CERT_FILE`/`SSL_CERT_DIR` when set (OpenSSL's convention),
//!   else the first distribution bundle that exists — plus every `*.crt` in the registry's
//!   certs.d directory. A host without any bundle falls back to ureq's bundled Mozilla roots.
//! - certs.d, as containers-certs.d(5) and Docker read it: the first of
//!   `$XDG_CONFIG_HOME/containers/certs.d/HOST[:PORT]/`, `/etc/containers/certs.d/…` and
//!   `/etc/docker/certs.d/…` that exists is used, alone (directories are not merged). `*.crt`
//!   are extra CAs; a `NAME.cert` with its `NAME.key` is the client certificate.
//! - Loopback registries (localhost, 127/8, ::1) use plain HTTP as in Docker, unless a certs.d
//!   directory exists for them: then HTTPS, verified.
//! - `insecure = true` in registries.conf (Podman's meaning: unencrypted HTTP and unverified
//!   TLS are both allowed): HTTPS without verifying the certificate (a client certificate from
//!   certs.d is still sent); when the registry does not answer TLS, plain HTTP.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use crate::hint::{hinted, Problem};

/// The distributions' CA bundles, in the order they are tried when no `SSL_CERT_*` is set:
/// Debian/Ubuntu, Fedora/RHEL, openSUSE, Alpine.
const DISTRO_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The largest PEM file read (a full CA bundle is ~250 KB).
const MAX_PEM: u64 = 16 << 20;

/// How requests to a registry go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
    /// `insecure`: HTTPS (unverified) if the registry answers TLS, else plain HTTP.
    HttpsOrHttp,
}

/// The transport chosen for one registry.
#[derive(Debug, Clone)]
pub struct Transport {
    pub scheme: Scheme,
    pub tls: TlsConfig,
    /// The certs.d directory in use, if any.
    pub certs_dir: Option<PathBuf>,
    /// Whether a client certificate from `certs_dir` is presented.
    pub client_cert: bool,
}

/// Chooses how to reach `registry` (the host as the user named it, which names its certs.d
/// directory) at `api_host`, reading its certs.d directory and, for verified HTTPS, the system
/// store.
pub fn transport(registry: &str, api_host: &str, insecure: bool) -> Result<Transport> {
    let certs_dir = certs_dir(registry);
    let certs = match &certs_dir {
        Some(dir) => read_certs_dir(dir)?,
        None => DirCerts::default(),
    };
    let client_cert = certs.client.is_some();
    let builder = TlsConfig::builder().client_cert(certs.client);
    let (scheme, tls) = if insecure {
        (Scheme::HttpsOrHttp, builder.disable_verification(true).build())
    } else if certs_dir.is_none() && super::registry::is_loopback(api_host) {
        (Scheme::Http, builder.build())
    } else {
        (Scheme::Https, builder.root_certs(roots(certs.cas)?).build())
    };
    Ok(Transport { scheme, tls, certs_dir, client_cert })
}

/// The system store plus `extra`.
fn roots(extra: Vec<Certificate<'static>>) -> Result<RootCerts> {
    let system = system_roots()?;
    if system.is_empty() && extra.is_empty() {
        return Ok(RootCerts::WebPki);
    }
    let mut all = Vec::with_capacity(system.len() + extra.len());
    all.extend(system.iter().cloned());
    all.extend(extra);
    Ok(RootCerts::Specific(Arc::new(all)))
}

/// The system's CA certificates, read on first use (empty when the host has no bundle).
fn system_roots() -> Result<Arc<Vec<Certificate<'static>>>> {
    static ROOTS: OnceLock<Result<Arc<Vec<Certificate<'static>>>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| load_system_roots().map(Arc::new).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn load_system_roots() -> Result<Vec<Certificate<'static>>> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let (file, dirs) = (env("SSL_CERT_FILE"), env("SSL_CERT_DIR"));
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut add = |certs: Vec<Certificate<'static>>| {
        for c in certs {
            if seen.insert(c.der().to_vec()) {
                out.push(c);
            }
        }
    };
    if file.is_none() && dirs.is_none() {
        if let Some(bundle) = DISTRO_BUNDLES.iter().map(Path::new).find(|p| p.exists()) {
            add(read_pem_certs(bundle).with_context(|| format!("system CA bundle `{}`", bundle.display()))?);
        }
        return Ok(out);
    }
    if let Some(f) = file {
        let path = PathBuf::from(f);
        add(read_pem_certs(&path).with_context(|| format!("CA bundle `{}` (SSL_CERT_FILE)", path.display()))?);
    }
    // OpenSSL's hashed directories also hold CRLs and links to the same files: every file that
    // holds certificates counts, once; anything else is passed over.
    for dir in dirs.iter().flat_map(std::env::split_paths) {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("read CA directory `{}` (SSL_CERT_DIR)", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
        paths.sort();
        for p in paths {
            if let Ok(certs) = read_pem_certs(&p) {
                add(certs);
            }
        }
    }
    Ok(out)
}

/// The certs.d directories searched, in order.
pub fn certs_d_bases() -> Vec<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let config_home = env("XDG_CONFIG_HOME").or_else(|| env("HOME").map(|h| h.join(".config")));
    let mut bases: Vec<PathBuf> = config_home.map(|c| c.join("containers/certs.d")).into_iter().collect();
    bases.push(PathBuf::from("/etc/containers/certs.d"));
    bases.push(PathBuf::from("/etc/docker/certs.d"));
    bases
}

/// The certs.d directory for `host` (`host[:port]`), if one exists.
pub fn certs_dir(host: &str) -> Option<PathBuf> {
    certs_dir_in(&certs_d_bases(), host)
}

/// The first `BASE/host` that is a directory. One the user may not read is passed over, as
/// Podman does: a root-only `/etc/docker/certs.d` must not stop a user's pull.
fn certs_dir_in(bases: &[PathBuf], host: &str) -> Option<PathBuf> {
    if host.is_empty() || host.contains('/') || host.starts_with('.') {
        return None;
    }
    bases.iter().map(|b| b.join(host)).find(|d| std::fs::read_dir(d).is_ok())
}

/// What a certs.d directory holds.
#[derive(Default)]
struct DirCerts {
    cas: Vec<Certificate<'static>>,
    client: Option<ClientCert>,
}

/// Reads `dir`'s `*.crt` (CAs) and its first `NAME.cert`/`NAME.key` pair (the client
/// certificate). A certificate without its key, or a key without its certificate, is an error.
fn read_certs_dir(dir: &Path) -> Result<DirCerts> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("read certs.d directory `{}`", dir.display()))?;
    let mut names: Vec<String> = entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
    names.sort();
    let mut out = DirCerts::default();
    for name in &names {
        let path = dir.join(name);
        if name.ends_with(".crt") {
            let certs = read_pem_certs(&path)?;
            for c in &certs {
                check_ca(&path, c)?;
            }
            out.cas.extend(certs);
        } else if let Some(stem) = name.strip_suffix(".cert") {
            let key = dir.join(format!("{stem}.key"));
            if !key.is_file() {
                bail!("client certificate `{}` has no key `{}`", path.display(), key.display());
            }
            if out.client.is_none() {
                let chain = read_pem_certs(&path)?;
                out.client = Some(ClientCert::new_with_certs(&chain, read_pem_key(&key)?));
            }
        } else if let Some(stem) = name.strip_suffix(".key") {
            let cert = dir.join(format!("{stem}.cert"));
            if !cert.is_file() {
                bail!("client key `{}` has no certificate `{}`", path.display(), cert.display());
            }
        }
    }
    Ok(out)
}

/// Fails, naming `path`, when `cert` is no X.509 certificate a trust store can hold (rustls
/// would otherwise drop it silently and the registry would look untrusted for no clear reason).
fn check_ca(path: &Path, cert: &Certificate<'static>) -> Result<()> {
    let der = rustls::pki_types::CertificateDer::from(cert.der());
    rustls::RootCertStore::empty()
        .add(der)
        .map_err(|e| anyhow!("CA certificate `{}`: not a usable certificate: {e}", path.display()))
}

fn read_pem(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).with_context(|| format!("read `{}`", path.display()))?;
    let mut bytes = Vec::new();
    f.take(MAX_PEM).read_to_end(&mut bytes).with_context(|| format!("read `{}`", path.display()))?;
    Ok(bytes)
}

/// Every certificate in the PEM file `path`; none is an error.
fn read_pem_certs(path: &Path) -> Result<Vec<Certificate<'static>>> {
    let bytes = read_pem(path)?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&bytes) {
        if let PemItem::Certificate(c) = item.map_err(|e| anyhow!("`{}`: bad PEM: {e}", path.display()))? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        bail!("`{}`: no PEM certificate in it", path.display());
    }
    Ok(certs)
}

/// The private key in the PEM file `path`.
fn read_pem_key(path: &Path) -> Result<PrivateKey<'static>> {
    let bytes = read_pem(path)?;
    for item in ureq::tls::parse_pem(&bytes) {
        if let PemItem::PrivateKey(k) = item.map_err(|e| anyhow!("`{}`: bad PEM: {e}", path.display()))? {
            return Ok(k);
        }
    }
    bail!("`{}`: no PEM private key in it", path.display())
}

/// An agent that completes a TLS handshake with anyone, for finding out whether a host speaks
/// TLS at all.
fn probe_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .tls_config(TlsConfig::builder().disable_verification(true).build())
        .build()
        .into()
}

/// Whether `api_host` answers HTTPS: any HTTP response to `GET /v2/` over TLS, using `agent`
/// (verification off, so the answer does not depend on trust).
pub fn answers_https(agent: Option<&ureq::Agent>, api_host: &str) -> bool {
    let own;
    let agent = match agent {
        Some(a) => a,
        None => {
            own = probe_agent();
            &own
        }
    };
    agent.get(&format!("https://{api_host}/v2/")).call().is_ok()
}

/// The rustls error inside a failed request, if the failure was TLS.
fn tls_cause(e: &ureq::Error) -> Option<&rustls::Error> {
    match e {
        ureq::Error::Rustls(r) => Some(r),
        ureq::Error::Io(io) => io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    }
}

/// Explains a request to `registry` that failed with `e` because of TLS, with the fix as a
/// hint; None when `e` is no TLS failure rl knows.
pub fn explain(registry: &str, t: &Transport, what: &str, e: &ureq::Error) -> Option<anyhow::Error> {
    use rustls::{AlertDescription as A, CertificateError as C, Error as R};
    let cause = tls_cause(e)?;
    let dir = match &t.certs_dir {
        Some(d) => format!("`{}`", d.display()),
        None => format!("no certs.d directory for `{registry}`"),
    };
    let trusted = match &t.certs_dir {
        Some(d) => format!("rl trusts the system CA store and the *.crt files in `{}`", d.display()),
        None => format!("rl trusts the system CA store; there is no certs.d directory for `{registry}`"),
    };
    let head = format!("registry `{registry}`: {what}");
    Some(match cause {
        R::InvalidCertificate(c) => {
            let why = match c {
                C::UnknownIssuer => "signed by an unknown authority".to_string(),
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    format!("not valid for the name `{registry}`")
                }
                C::Expired | C::ExpiredContext { .. } => "expired".to_string(),
                C::NotValidYet | C::NotValidYetContext { .. } => "not valid yet".to_string(),
                other => format!("rejected ({other:?})"),
            };
            hinted(
                Problem::RegistryCertUntrusted,
                format!("{head}: the registry's TLS certificate is {why} ({trusted})"),
            )
        }
        R::AlertReceived(a @ (A::CertificateRequired | A::BadCertificate | A::UnknownCA | A::CertificateUnknown)) => {
            let sent = if t.client_cert {
                format!("it refused the client certificate from {dir}")
            } else {
                format!("rl has none to send ({dir})")
            };
            hinted(
                Problem::RegistryClientCert,
                format!("{head}: the registry wants a client certificate (TLS alert: {a:?}): {sent}"),
            )
        }
        R::InvalidMessage(_) | R::InappropriateMessage { .. } => {
            let why = match &t.certs_dir {
                Some(d) => format!(", and the certs.d directory `{}` made rl use HTTPS", d.display()),
                None => String::new(),
            };
            anyhow!(
                "{head}: no TLS handshake: the registry seems to speak plain HTTP on this port{why} (set \
                 `insecure = true` for it in registries.conf to allow plain HTTP)"
            )
        }
        other => anyhow!("{head}: TLS: {other}"),
    })
}

/// The error for a registry that answers TLS where rl spoke plain HTTP (a loopback registry
/// without a certs.d directory).
pub fn https_expected(registry: &str, what: &str) -> anyhow::Error {
    hinted(
        Problem::RegistryCertUntrusted,
        format!(
            "registry `{registry}`: {what}: the registry speaks HTTPS, but rl uses plain HTTP for a loopback \
             registry without a certs.d directory (none for `{registry}`)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rl-tls-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// PEM text with any bytes inside: parsing does not look at the DER.
    fn pem(label: &str, body: &[u8]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(body);
        format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
    }

    #[test]
    fn the_first_existing_certs_d_directory_wins() {
        let t = tempdir("lookup");
        let bases = vec![t.join("user"), t.join("etc-containers"), t.join("etc-docker")];
        assert_eq!(certs_dir_in(&bases, "r.example:5000"), None);
        fs::create_dir_all(bases[2].join("r.example:5000")).unwrap();
        assert_eq!(certs_dir_in(&bases, "r.example:5000"), Some(bases[2].join("r.example:5000")));
        fs::create_dir_all(bases[1].join("r.example:5000")).unwrap();
        fs::create_dir_all(bases[0].join("r.example:5000")).unwrap();
        assert_eq!(certs_dir_in(&bases, "r.example:5000"), Some(bases[0].join("r.example:5000")));
        // The port is part of the name: `r.example` is another registry.
        assert_eq!(certs_dir_in(&bases, "r.example"), None);
        // A file is no directory; names that would leave the base are never looked up.
        fs::write(bases[0].join("file.example"), "").unwrap();
        assert_eq!(certs_dir_in(&bases, "file.example"), None);
        for bad in ["", "..", "../etc-docker/r.example:5000", "a/b"] {
            assert_eq!(certs_dir_in(&bases, bad), None, "{bad}");
        }
        let _ = fs::remove_dir_all(&t);
    }

    #[test]
    fn client_certificate_pairs_and_bad_files() {
        let t = tempdir("pairs");
        assert!(read_certs_dir(&t).unwrap().client.is_none(), "an empty directory is fine");

        fs::write(t.join("client.cert"), pem("CERTIFICATE", b"not really der")).unwrap();
        let err = read_certs_dir(&t).err().unwrap().to_string();
        assert!(err.contains("client.cert") && err.contains("has no key"), "{err}");
        fs::write(t.join("client.key"), pem("PRIVATE KEY", b"not really a key")).unwrap();
        assert!(read_certs_dir(&t).unwrap().client.is_some());

        fs::write(t.join("orphan.key"), pem("PRIVATE KEY", b"k")).unwrap();
        let err = read_certs_dir(&t).err().unwrap().to_string();
        assert!(err.contains("orphan.key") && err.contains("has no certificate"), "{err}");
        fs::remove_file(t.join("orphan.key")).unwrap();

        fs::write(t.join("ca.crt"), "garbage, no PEM at all\n").unwrap();
        let err = format!("{:#}", read_certs_dir(&t).err().unwrap());
        assert!(err.contains("ca.crt") && err.contains("no PEM certificate"), "{err}");
        fs::write(t.join("ca.crt"), pem("CERTIFICATE", b"not der")).unwrap();
        let err = format!("{:#}", read_certs_dir(&t).err().unwrap());
        assert!(err.contains("ca.crt") && err.contains("not a usable certificate"), "{err}");
        fs::write(t.join("ca.crt"), "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n").unwrap();
        let err = format!("{:#}", read_certs_dir(&t).err().unwrap());
        assert!(err.contains("ca.crt") && err.contains("bad PEM"), "{err}");

        fs::remove_file(t.join("ca.crt")).unwrap();
        fs::write(t.join("client.key"), "no key here\n").unwrap();
        let err = format!("{:#}", read_certs_dir(&t).err().unwrap());
        assert!(err.contains("client.key") && err.contains("no PEM private key"), "{err}");
        let _ = fs::remove_dir_all(&t);
    }

    #[test]
    fn scheme_follows_loopback_certs_d_and_insecure() {
        // No certs.d directory named like these exists on a test host.
        let t = transport("127.0.0.1:1", "127.0.0.1:1", false).unwrap();
        assert_eq!((t.scheme, t.certs_dir.is_none()), (Scheme::Http, true));
        assert_eq!(transport("127.0.0.1:1", "127.0.0.1:1", true).unwrap().scheme, Scheme::HttpsOrHttp);
        assert!(transport("127.0.0.1:1", "127.0.0.1:1", true).unwrap().tls.disable_verification());
        let t = transport("rl-test.invalid", "rl-test.invalid", false).unwrap();
        assert_eq!(t.scheme, Scheme::Https);
        assert!(!t.tls.disable_verification());
    }
}
