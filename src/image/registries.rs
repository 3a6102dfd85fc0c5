//! Which registry serves a name: the per-user `registries.conf` (TOML, the containers-registries
//! v2 format Podman reads) from `$XDG_CONFIG_HOME/rl/`, else `~/.config/containers/`, else
//! `/etc/containers/`. It gives mirrors (how CI runners avoid Docker Hub's rate limits: a pull of
//! `docker.io/…` tries each mirror first), registries whose certificate is not checked
//! (`insecure`: HTTPS without verification, else plain HTTP, as Podman reads it), rewritten
//! locations and the search registries of short names. Read in the `rl` parent.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::reference::{ParseError, Reference};

/// One place to pull from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port][/path]` replacing the matched prefix.
    pub location: String,
    /// TLS without certificate checks, falling back to plain HTTP.
    pub insecure: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct File {
    #[serde(default)]
    unqualified_search_registries: Vec<String>,
    #[serde(default)]
    registry: Vec<Registry>,
}

#[derive(Debug, Default, Deserialize)]
struct Registry {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror: Vec<Mirror>,
}

#[derive(Debug, Default, Deserialize)]
struct Mirror {
    location: String,
    #[serde(default)]
    insecure: bool,
}

/// The registries configuration in force.
#[derive(Debug, Default)]
pub struct Config {
    file: File,
    /// Where it was read from, for messages.
    pub source: Option<PathBuf>,
}

impl Config {
    /// Reads the first configuration file that exists (none is fine).
    pub fn load() -> Result<Config> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let config_home = env("XDG_CONFIG_HOME").or_else(|| env("HOME").map(|h| h.join(".config")));
        let mut candidates = Vec::new();
        if let Some(c) = &config_home {
            candidates.push(c.join("rl/registries.conf"));
            candidates.push(c.join("containers/registries.conf"));
        }
        candidates.push(PathBuf::from("/etc/containers/registries.conf"));
        for path in candidates {
            match std::fs::read_to_string(&path) {
                Ok(text) => return Config::parse(&text).map(|c| Config { source: Some(path), ..c }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("read `{}`", path.display())),
            }
        }
        Ok(Config::default())
    }

    /// Parses registries.conf text.
    pub fn parse(text: &str) -> Result<Config> {
        let file: File = toml::from_str(text).map_err(|e| anyhow::anyhow!("registries.conf: {}", e.message()))?;
        Ok(Config { file, source: None })
    }

    /// The registries short names are searched in (default: docker.io).
    pub fn search_registries(&self) -> Vec<String> {
        if self.file.unqualified_search_registries.is_empty() {
            vec!["docker.io".into()]
        } else {
            self.file.unqualified_search_registries.clone()
        }
    }

    /// The references a name typed by the user may stand for, in the order to try them: the
    /// name itself when it names a registry (`quay.io/x`, `localhost:5000/x`), else the name in
    /// each unqualified-search registry (`busybox` → `docker.io/library/busybox`, then e.g.
    /// `quay.io/busybox`). Podman's "permissive" short-name mode: the first that resolves wins.
    pub fn candidates(&self, input: &str) -> Result<Vec<Reference>, ParseError> {
        let (r, explicit) = Reference::parse_with_short_name_flag(input)?;
        if explicit {
            return Ok(vec![r]);
        }
        let mut out: Vec<Reference> = Vec::new();
        for reg in self.search_registries() {
            // A search registry that does not make a valid reference (a typo in the config) is
            // passed over: the others still apply.
            if let Ok(c) = Reference::parse(&format!("{}/{input}", reg.trim_end_matches('/'))) {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
        if out.is_empty() {
            out.push(r);
        }
        Ok(out)
    }

    /// The `[[registry]]` whose prefix is the longest match for `name` (`host/repo`).
    fn matching(&self, name: &str) -> Option<&Registry> {
        self.file
            .registry
            .iter()
            .filter(|r| {
                let p = r.prefix.as_deref().or(r.location.as_deref()).unwrap_or("");
                !p.is_empty() && (name == p || name.starts_with(&format!("{p}/")) || name.starts_with(&format!("{p}:")))
            })
            .max_by_key(|r| r.prefix.as_deref().or(r.location.as_deref()).map_or(0, str::len))
    }

    /// Where to pull `name` (`registry/repository`) from, in order: mirrors, then the registry
    /// itself (possibly relocated). Each endpoint is a rewritten `host/repository`. Errors if
    /// the registry is blocked.
    pub fn endpoints(&self, name: &str) -> Result<Vec<Endpoint>> {
        let Some(r) = self.matching(name) else {
            return Ok(vec![Endpoint { location: name.to_string(), insecure: false }]);
        };
        let prefix = r.prefix.as_deref().or(r.location.as_deref()).unwrap_or("");
        if r.blocked {
            anyhow::bail!("registry `{prefix}`: blocked by {}", self.source_name());
        }
        let rest = &name[prefix.len()..];
        let mut out: Vec<Endpoint> = r
            .mirror
            .iter()
            .map(|m| Endpoint { location: format!("{}{rest}", m.location), insecure: m.insecure })
            .collect();
        let own = r.location.as_deref().unwrap_or(prefix);
        out.push(Endpoint { location: format!("{own}{rest}"), insecure: r.insecure });
        Ok(out)
    }

    fn source_name(&self) -> String {
        self.source.as_ref().map_or("registries.conf".into(), |p| format!("`{}`", p.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"
unqualified-search-registries = ["quay.io", "docker.io"]

[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "127.0.0.1:5000"
insecure = true
[[registry.mirror]]
location = "mirror.example.com/hub"

[[registry]]
location = "plain.example:8080"
insecure = true

[[registry]]
prefix = "docker.io/library/busybox"
location = "other.example/bb"

[[registry]]
prefix = "evil.example"
blocked = true
"#;

    fn locs(c: &Config, name: &str) -> Vec<(String, bool)> {
        c.endpoints(name).unwrap().into_iter().map(|e| (e.location, e.insecure)).collect()
    }

    #[test]
    fn endpoints_follow_the_longest_prefix() {
        let c = Config::parse(CONF).unwrap();
        assert_eq!(
            locs(&c, "docker.io/library/alpine"),
            vec![
                ("127.0.0.1:5000/library/alpine".into(), true),
                ("mirror.example.com/hub/library/alpine".into(), false),
                ("docker.io/library/alpine".into(), false),
            ]
        );
        assert_eq!(locs(&c, "docker.io/library/busybox"), vec![("other.example/bb".into(), false)]);
        assert_eq!(locs(&c, "plain.example:8080/x"), vec![("plain.example:8080/x".into(), true)]);
        assert_eq!(locs(&c, "quay.io/x"), vec![("quay.io/x".into(), false)]);
        assert!(c.endpoints("evil.example/x").unwrap_err().to_string().contains("blocked"));
        assert_eq!(c.search_registries(), vec!["quay.io", "docker.io"]);
        assert_eq!(Config::default().search_registries(), vec!["docker.io"]);
    }

    #[test]
    fn short_names_expand_through_the_search_registries() {
        let names = |c: &Config, input: &str| -> Vec<String> {
            c.candidates(input).unwrap().iter().map(|r| r.to_string()).collect()
        };
        let c = Config::parse(CONF).unwrap();
        assert_eq!(names(&c, "busybox"), ["quay.io/busybox:latest", "docker.io/library/busybox:latest"]);
        assert_eq!(names(&c, "user/app:1"), ["quay.io/user/app:1", "docker.io/user/app:1"]);
        // A name with a registry is never searched.
        assert_eq!(names(&c, "docker.io/busybox"), ["docker.io/library/busybox:latest"]);
        assert_eq!(names(&c, "localhost:5000/x"), ["localhost:5000/x:latest"]);
        let pinned = format!("ghcr.io/o/r@sha256:{}", "ab".repeat(32));
        assert_eq!(names(&c, &pinned), vec![pinned]);
        assert_eq!(names(&Config::default(), "alpine"), ["docker.io/library/alpine:latest"]);
        let local = Config::parse("unqualified-search-registries = [\"127.0.0.1:5000\", \"127.0.0.1:5000\"]").unwrap();
        assert_eq!(names(&local, "test/busybox:v1"), ["127.0.0.1:5000/test/busybox:v1"]);
        assert!(c.candidates("UPPER").is_err(), "a bad reference is an error, whatever the config");
    }

    #[test]
    fn bad_toml_names_the_file_kind() {
        assert!(Config::parse("[[registry]\n").unwrap_err().to_string().starts_with("registries.conf:"));
    }
}
