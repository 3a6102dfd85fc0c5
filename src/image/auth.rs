//! Registry credentials: Podman's `auth.json` (`$REGISTRY_AUTH_FILE`, else
//! `$XDG_RUNTIME_DIR/containers/auth.json`), which `rl login` writes, and Docker's
//! `~/.docker/config.json`, read too — including its `credHelpers`/`credsStore` helpers
//! (`docker-credential-NAME get`). Runs in the `rl` parent.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::{json, Value};

use super::registry::Credentials;

/// The auth file `rl login` writes.
pub fn auth_file() -> Result<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(f) = env("REGISTRY_AUTH_FILE") {
        return Ok(f);
    }
    if let Some(d) = env("XDG_RUNTIME_DIR") {
        return Ok(d.join("containers/auth.json"));
    }
    match env("HOME") {
        Some(h) => Ok(h.join(".config/containers/auth.json")),
        None => bail!("locate auth.json: neither REGISTRY_AUTH_FILE, XDG_RUNTIME_DIR nor HOME is set"),
    }
}

/// The keys a registry may be stored under (Docker writes Hub as its v1 URL).
fn keys(registry: &str) -> Vec<String> {
    let mut k = vec![registry.to_string(), format!("https://{registry}"), format!("http://{registry}")];
    if registry == "docker.io" {
        k.extend(["https://index.docker.io/v1/".into(), "index.docker.io".into(), "registry-1.docker.io".into()]);
    }
    k
}

fn read_json(path: &std::path::Path) -> Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| format!("parse `{}`", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read `{}`", path.display())),
    }
}

fn decode(registry: &str, entry: &Value) -> Result<Option<Credentials>> {
    let Some(auth) = entry.get("auth").and_then(|a| a.as_str()).filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .with_context(|| format!("credentials for `{registry}`: `auth` is not base64"))?;
    let text = String::from_utf8(raw).with_context(|| format!("credentials for `{registry}`: not UTF-8"))?;
    match text.split_once(':') {
        Some((u, p)) => Ok(Some(Credentials { username: u.into(), password: p.into() })),
        None => bail!("credentials for `{registry}`: `auth` is not user:password"),
    }
}

fn from_auths(registry: &str, doc: &Value) -> Result<Option<Credentials>> {
    let Some(auths) = doc.get("auths") else { return Ok(None) };
    for k in keys(registry) {
        if let Some(entry) = auths.get(&k) {
            if let Some(c) = decode(registry, entry)? {
                return Ok(Some(c));
            }
        }
    }
    Ok(None)
}

/// Asks `docker-credential-NAME get` for `registry`'s credentials.
fn from_helper(name: &str, registry: &str) -> Result<Option<Credentials>> {
    let program = format!("docker-credential-{name}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("run credential helper `{program}`"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(registry.as_bytes());
    }
    let out = child.wait_with_output().with_context(|| format!("run credential helper `{program}`"))?;
    if !out.status.success() {
        // Helpers answer "credentials not found" with a failure: no credentials, not an error.
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(&out.stdout).with_context(|| format!("parse `{program}` output"))?;
    let get = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    Ok(Some(Credentials { username: get("Username"), password: get("Secret") }))
}

/// The credentials for `registry`, if the user stored any.
pub fn lookup(registry: &str) -> Result<Option<Credentials>> {
    if let Some(doc) = read_json(&auth_file()?)? {
        if let Some(c) = from_auths(registry, &doc)? {
            return Ok(Some(c));
        }
    }
    let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else { return Ok(None) };
    let docker = std::env::var_os("DOCKER_CONFIG").map(PathBuf::from).unwrap_or_else(|| home.join(".docker"));
    let Some(doc) = read_json(&docker.join("config.json"))? else { return Ok(None) };
    if let Some(helpers) = doc.get("credHelpers") {
        for k in keys(registry) {
            if let Some(h) = helpers.get(&k).and_then(|h| h.as_str()) {
                return from_helper(h, &k);
            }
        }
    }
    if let Some(c) = from_auths(registry, &doc)? {
        return Ok(Some(c));
    }
    if let Some(store) = doc.get("credsStore").and_then(|s| s.as_str()).filter(|s| !s.is_empty()) {
        return from_helper(store, registry);
    }
    Ok(None)
}

fn load_auth_file() -> Result<(PathBuf, BTreeMap<String, Value>)> {
    let path = auth_file()?;
    let auths = match read_json(&path)? {
        Some(doc) => doc
            .get("auths")
            .and_then(|a| a.as_object())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        None => BTreeMap::new(),
    };
    Ok((path, auths))
}

fn save_auth_file(path: &std::path::Path, auths: &BTreeMap<String, Value>) -> Result<()> {
    if let Some(dir) = path.parent() {
        crate::store::layout::private_dir(dir)?;
    }
    let doc = json!({ "auths": auths });
    crate::store::lock::write_atomic(path, &serde_json::to_vec_pretty(&doc).context("encode auth.json")?)
}

/// Stores credentials for `registry` in auth.json (mode 0600).
pub fn store(registry: &str, creds: &Credentials) -> Result<PathBuf> {
    let (path, mut auths) = load_auth_file()?;
    let raw = format!("{}:{}", creds.username, creds.password);
    auths.insert(registry.to_string(), json!({ "auth": base64::engine::general_purpose::STANDARD.encode(raw) }));
    save_auth_file(&path, &auths)?;
    Ok(path)
}

/// Removes `registry`'s credentials (all with `None`); whether anything was removed.
pub fn remove(registry: Option<&str>) -> Result<bool> {
    let (path, mut auths) = load_auth_file()?;
    let before = auths.len();
    match registry {
        Some(r) => {
            for k in keys(r) {
                auths.remove(&k);
            }
        }
        None => auths.clear(),
    }
    if auths.len() == before {
        return Ok(false);
    }
    save_auth_file(&path, &auths)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_docker_and_podman_entries() {
        let doc = json!({"auths": {
            "https://index.docker.io/v1/": {"auth": "dTpw"},
            "127.0.0.1:5000": {"auth": base64::engine::general_purpose::STANDARD.encode("alice:s3:cret")},
            "empty.example": {"auth": ""},
        }});
        let hub = from_auths("docker.io", &doc).unwrap().unwrap();
        assert_eq!((hub.username.as_str(), hub.password.as_str()), ("u", "p"));
        let local = from_auths("127.0.0.1:5000", &doc).unwrap().unwrap();
        assert_eq!((local.username.as_str(), local.password.as_str()), ("alice", "s3:cret"));
        assert!(from_auths("empty.example", &doc).unwrap().is_none());
        assert!(from_auths("quay.io", &doc).unwrap().is_none());
        let bad = json!({"auths": {"x": {"auth": "!!!"}}});
        assert!(from_auths("x", &bad).is_err());
    }
}
