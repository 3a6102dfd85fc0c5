//! `rl login [-u USER] [-p PASSWORD | --password-stdin] REGISTRY` and `rl logout [--all]
//! [REGISTRY]`: credentials checked against the registry, then kept in Podman's auth.json.

use std::io::BufRead;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::image::auth;
use crate::image::registry::{Client, Credentials};

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// User name.
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin: a password on the command line is visible to others).
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// Registry host[:port] (default docker.io).
    pub registry: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Remove the credentials of every registry.
    #[arg(short, long)]
    pub all: bool,
    /// Registry host[:port] (default docker.io).
    pub registry: Option<String>,
}

/// `docker.io` for Docker Hub's aliases, the host otherwise.
fn normalize(registry: Option<&str>) -> String {
    match registry.map(|r| r.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/')) {
        None | Some("") | Some("index.docker.io") | Some("registry-1.docker.io") | Some("index.docker.io/v1") => {
            "docker.io".into()
        }
        Some(r) => r.to_string(),
    }
}

fn read_line(what: &str) -> Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).with_context(|| format!("read the {what} from stdin"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// `rl login`.
pub fn login(args: LoginArgs) -> Result<i32> {
    let registry = normalize(args.registry.as_deref());
    let username = match args.username {
        Some(u) => u,
        None => read_line("user name")?,
    };
    let password = match (args.password, args.password_stdin) {
        (Some(_), true) => bail!("login: give either --password or --password-stdin, not both"),
        (Some(p), false) => p,
        (None, _) => read_line("password")?,
    };
    if username.is_empty() || password.is_empty() {
        bail!("login `{registry}`: user name and password must not be empty");
    }
    let api_host = if registry == "docker.io" { "registry-1.docker.io" } else { registry.as_str() };
    let creds = Credentials { username, password };
    // The registry's own registries.conf entry (mirrors are for pulls) may make it insecure.
    let insecure = crate::image::registries::Config::load()?.endpoints(&registry)?.last().is_some_and(|e| e.insecure);
    Client::new(&registry, api_host, "", Some(creds.clone()), insecure)
        .ping()
        .with_context(|| format!("login `{registry}`"))?;
    let file = auth::store(&registry, &creds)?;
    eprintln!("Login Succeeded! (credentials in `{}`)", file.display());
    Ok(0)
}

/// `rl logout`.
pub fn logout(args: LogoutArgs) -> Result<i32> {
    if args.all {
        auth::remove(None)?;
        eprintln!("Removed login credentials for all registries");
        return Ok(0);
    }
    let registry = normalize(args.registry.as_deref());
    if !auth::remove(Some(&registry))? {
        bail!("logout `{registry}`: not logged in");
    }
    eprintln!("Removed login credentials for {registry}");
    Ok(0)
}
