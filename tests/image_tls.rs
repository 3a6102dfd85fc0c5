//! TLS to registries, for real: a test CA and certificates made with the `openssl` CLI, a
//! docker-registry serving HTTPS on 127.0.0.1 (and one demanding a client certificate), and
//! `rl pull`/`push`/`run` trusting it through certs.d, `SSL_CERT_FILE`/`SSL_CERT_DIR`, or
//! registries.conf's `insecure` — and refusing it, with a hint, when nothing says to trust it.
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A test CA with a server certificate for 127.0.0.1 and a client certificate.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Makes the CA, the server and client certificates (EC P-256, fast) in `ctx`'s dir; None
    /// (after `require`) when openssl is missing.
    fn new(ctx: &Ctx) -> Option<Pki> {
        if !require(which("openssl").is_some(), "openssl is not installed") {
            return None;
        }
        let pki = Pki { dir: ctx.mkdir("pki") };
        for name in ["ca", "other-ca", "server", "client"] {
            pki.openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &format!("{name}.key"),
            ]);
        }
        for (ca, cn) in [("ca", "rl test CA"), ("other-ca", "rl unrelated CA")] {
            pki.openssl(&[
                "req",
                "-x509",
                "-new",
                "-key",
                &format!("{ca}.key"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={cn}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-out",
                &format!("{ca}.crt"),
            ]);
        }
        fs::write(pki.path("server.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n").unwrap();
        fs::write(pki.path("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (name, cn) in [("server", "127.0.0.1"), ("client", "rl test client")] {
            pki.openssl(&[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                &format!("/CN={cn}"),
                "-out",
                &format!("{name}.csr"),
            ]);
            pki.openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.crt"),
            ]);
        }
        Some(pki)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl").args(args).current_dir(&self.dir).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A docker-registry serving HTTPS with the server certificate; with `client_auth`, it
    /// demands a client certificate signed by the test CA.
    fn registry(&self, ctx: &Ctx, client_auth: bool) -> Option<OwnRegistry> {
        let mut tls = format!(
            "  tls:\n    certificate: \"{}\"\n    key: \"{}\"\n",
            self.path("server.crt").display(),
            self.path("server.key").display()
        );
        if client_auth {
            tls.push_str(&format!("    clientcas:\n      - \"{}\"\n", self.path("ca.crt").display()));
        }
        OwnRegistry::start(&ctx.dir.join("registry"), &tls, "")
    }
}

/// `rl` with its own config home (certs.d, registries.conf), auth file and Docker config, and
/// no `SSL_CERT_*` unless the test sets them.
fn rl(ctx: &Ctx, args: &[&str]) -> Command {
    let mut c = ctx.rl();
    c.env("XDG_CONFIG_HOME", ctx.dir.join("config"))
        .env("REGISTRY_AUTH_FILE", ctx.dir.join("auth.json"))
        .env("DOCKER_CONFIG", ctx.dir.join("docker"))
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .args(args);
    c
}

fn run(ctx: &Ctx, args: &[&str]) -> Out {
    output(rl(ctx, args), None)
}

/// `ctx`'s certs.d directory for `addr`, created, holding `files` copied from the PKI.
fn certs_d(ctx: &Ctx, addr: &str, pki: &Pki, files: &[(&str, &str)]) -> PathBuf {
    let dir = ctx.mkdir(&format!("config/containers/certs.d/{addr}"));
    for (from, to) in files {
        fs::copy(pki.path(from), dir.join(to)).unwrap();
    }
    dir
}

/// Pulls test/busybox from the shared registry and pushes it to `reg` as `tls/busybox`,
/// trusting it (and presenting the client certificate) through certs.d. Returns the image.
fn seed(reg: &OwnRegistry, pki: &Pki, shared: &str) -> String {
    let seeder = Ctx::with_subids().expect("a seeding context");
    certs_d(
        &seeder,
        &reg.addr,
        pki,
        &[("ca.crt", "ca.crt"), ("client.crt", "client.cert"), ("client.key", "client.key")],
    );
    let src = format!("{shared}/test/busybox");
    run(&seeder, &["pull", "-q", &src]).assert_ok();
    let image = format!("{}/tls/busybox:v1", reg.addr);
    let pushed = run(&seeder, &["push", &src, &image]);
    assert!(pushed.code() == Some(0), "push over TLS\n{pushed}\nregistry log:\n{}", reg.log());
    image
}

/// Every path under `dir` (empty when it does not exist).
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            out.push(e.path());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(tree(&e.path()));
            }
        }
    }
    out.sort();
    out
}

fn setup(client_auth: bool) -> Option<(Ctx, Pki, OwnRegistry, String)> {
    let (ctx, shared) = registry_ctx()?;
    let pki = Pki::new(&ctx)?;
    let reg = pki.registry(&ctx, client_auth)?;
    let image = seed(&reg, &pki, &shared);
    Some((ctx, pki, reg, image))
}

#[test]
fn an_untrusted_registry_is_refused_with_a_hint() {
    let Some((ctx, pki, reg, image)) = setup(false) else { return };
    // Loopback without certs.d is plain HTTP; the registry answers TLS, and rl says so.
    let out = run(&ctx, &["pull", &image]);
    out.assert_error(&format!("registry `{}`", reg.addr)).assert_error("speaks HTTPS");
    out.assert_hint(&["certs.d/HOST:PORT/ca.crt", "insecure = true"]);
    let before = tree(&ctx.store);
    assert!(tree(&ctx.store.join("layers")).is_empty(), "nothing was fetched: {before:?}");

    // A certs.d directory switches to HTTPS; a CA that did not sign the certificate does not help.
    certs_d(&ctx, &reg.addr, &pki, &[("other-ca.crt", "other.crt")]);
    let out = run(&ctx, &["pull", &image]);
    out.assert_error(&format!("registry `{}`", reg.addr)).assert_error("signed by an unknown authority");
    out.assert_hint(&["ca.crt", "insecure = true"]);
    assert_eq!(tree(&ctx.store), before, "a refused pull leaves the store as it was");

    // A broken file in certs.d is named.
    let dir = certs_d(&ctx, &reg.addr, &pki, &[]);
    fs::write(dir.join("broken.crt"), "not a certificate\n").unwrap();
    let out = run(&ctx, &["pull", &image]);
    out.assert_error(&dir.join("broken.crt").display().to_string());
    fs::remove_file(dir.join("broken.crt")).unwrap();
    fs::copy(pki.path("client.crt"), dir.join("client.cert")).unwrap();
    run(&ctx, &["pull", &image]).assert_error("has no key");
    assert_eq!(tree(&ctx.store), before);
    assert_eq!(run(&ctx, &["images", "-q"]).assert_ok().stdout_trim(), "", "no image was stored");
}

#[test]
fn a_ca_in_certs_d_lets_push_pull_and_run_work() {
    let Some((ctx, pki, reg, image)) = setup(false) else { return };
    certs_d(&ctx, &reg.addr, &pki, &[("ca.crt", "ca.crt")]);
    let out = run(&ctx, &["pull", &image]);
    assert!(out.code() == Some(0), "{out}\nregistry log:\n{}", reg.log());
    let ran = run(&ctx, &["run", "--rm", "--pull=never", &image, "echo", "over tls"]);
    ran.assert_ok();
    assert_eq!(ran.stdout_trim(), "over tls", "{ran}");
    // Pushing back under another tag goes over the same verified connection.
    let again = format!("{}/tls/busybox:v2", reg.addr);
    run(&ctx, &["push", "-q", &image, &again]).assert_ok();
    run(&ctx, &["pull", "-q", &again]).assert_ok();
}

#[test]
fn ssl_cert_file_and_dir_are_the_system_store() {
    let Some((ctx, pki, reg, image)) = setup(false) else { return };
    // An empty certs.d directory: HTTPS for this loopback registry, trusting only the system store.
    certs_d(&ctx, &reg.addr, &pki, &[]);
    run(&ctx, &["pull", &image]).assert_error("signed by an unknown authority");

    let mut bundle = fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    bundle.extend(fs::read(pki.path("ca.crt")).unwrap());
    fs::write(ctx.dir.join("bundle.pem"), bundle).unwrap();
    let mut c = rl(&ctx, &["pull", &image]);
    c.env("SSL_CERT_FILE", ctx.dir.join("bundle.pem"));
    output(c, None).assert_ok();

    let cas = ctx.mkdir("cadir");
    fs::copy(pki.path("ca.crt"), cas.join("rl-test.pem")).unwrap();
    fs::write(cas.join("README"), "not a certificate\n").unwrap();
    let mut c = rl(&ctx, &["pull", &image]);
    c.env("SSL_CERT_DIR", &cas);
    output(c, None).assert_ok();

    let mut c = rl(&ctx, &["pull", &image]);
    c.env("SSL_CERT_FILE", ctx.dir.join("missing.pem"));
    output(c, None).assert_error("SSL_CERT_FILE");
}

#[test]
fn an_insecure_registry_needs_no_ca() {
    let Some((ctx, _pki, reg, image)) = setup(false) else { return };
    let shared = test_registry().unwrap_or_default();
    let conf = format!(
        "[[registry]]\nlocation = \"{}\"\ninsecure = true\n\n[[registry]]\nlocation = \"{shared}\"\ninsecure = true\n",
        reg.addr
    );
    fs::write(ctx.mkdir("config/containers").join("registries.conf"), conf).unwrap();
    // TLS without verification for the HTTPS registry…
    let out = run(&ctx, &["pull", &image]);
    assert!(out.code() == Some(0), "{out}\nregistry log:\n{}", reg.log());
    ctx.run_cmd_in_image(&["--rm", "--pull=never"], &image, &["true"]).assert_ok();
    // …and plain HTTP for the one that does not answer TLS.
    run(&ctx, &["pull", "-q", &format!("{shared}/test/busybox")]).assert_ok();
}

#[test]
fn a_client_certificate_comes_from_certs_d() {
    let Some((ctx, pki, reg, image)) = setup(true) else { return };
    let dir = certs_d(&ctx, &reg.addr, &pki, &[("ca.crt", "ca.crt")]);
    let out = run(&ctx, &["pull", &image]);
    out.assert_error(&format!("registry `{}`", reg.addr)).assert_error("client certificate");
    out.assert_hint(&["client.cert", "client.key"]);

    fs::copy(pki.path("client.crt"), dir.join("client.cert")).unwrap();
    fs::copy(pki.path("client.key"), dir.join("client.key")).unwrap();
    let out = run(&ctx, &["pull", &image]);
    assert!(out.code() == Some(0), "{out}\nregistry log:\n{}", reg.log());
}
