//! Image references (`alpine`, `quay.io/org/repo:tag`, `host:5000/a/b@sha256:…`): what the user
//! types after `rl pull`, `run`, `tag` and `push`, parsed by the CLI into a [`Reference`] with
//! every default filled in, so the store can key images by one spelling and the registry client
//! ([`super::registry`]) knows whom to ask ([`Reference::api_host`]) and for what
//! ([`Reference::tag_or_digest`]). Pure string work, run in the `rl` parent.
//!
//! The rules are the grammar of Docker's `distribution/reference` package, with its
//! normalisation (`ParseNormalizedNamed`), hand-written here instead of built from regexes:
//!
//! - `reference := name [":" tag] ["@" digest]`; a tag and a digest may both be given, and both
//!   are kept (the digest is what gets pulled).
//! - The first `/`-separated part of the name is a registry when it contains `.` or `:` or is
//!   `localhost`; otherwise the image is on Docker Hub, spelled `docker.io` (`index.docker.io`
//!   and `registry-1.docker.io` are folded into it). Hub names of one part are official images
//!   and gain `library/`.
//! - A registry is `host[:port]`: a DNS name or IPv4 address (letters, digits, inner `-`,
//!   dot-separated) or an IPv6 address in brackets, with a port of digits only. Host names are
//!   case-insensitive (RFC 4343), so they are lowercased; repository paths must be lowercase.
//! - A repository path is `/`-separated components of lowercase letters and digits joined by one
//!   `.`, one or two `_`, or any number of `-`. With the registry, at most 255 characters.
//! - A tag is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; `latest` when neither tag nor digest is given.
//! - A digest is `algorithm:hex`; rl supports `sha256` (64 lowercase hex) and `sha512` (128).
//!
//! One departure: Docker refuses a bare 64-hex-digit name because it is an image id, and looks
//! ids up before parsing; rl refuses `sha256:<64 hex>` too ([`Rule::LooksLikeId`]), which Docker
//! would read as the image `library/sha256` with that tag. Callers look ids up first.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// Docker Hub's canonical name.
pub const DOCKER_HUB: &str = "docker.io";
/// The host Docker Hub's registry API answers on.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Other spellings of Docker Hub, folded into [`DOCKER_HUB`].
const HUB_ALIASES: [&str; 2] = ["index.docker.io", DOCKER_HUB_API];
/// Docker Hub's namespace for official images.
const OFFICIAL_PREFIX: &str = "library/";
/// The tag filled in when none is given.
pub const DEFAULT_TAG: &str = "latest";
/// distribution/reference's `NameTotalLengthMax`: registry, `/` and repository together.
const NAME_MAX: usize = 255;
/// `[\w][\w.-]{0,127}`.
const TAG_MAX: usize = 128;

/// A fully qualified image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Reference {
    /// Registry `host[:port]`, normalized: `docker.io` for Docker Hub (never `index.docker.io` or
    /// `registry-1.docker.io`), host lowercased.
    pub registry: String,
    /// Repository path, e.g. `library/alpine` (Docker Hub single names get `library/`).
    pub repository: String,
    /// Tag; `None` when only a digest was given. `latest` is filled in when neither tag nor
    /// digest is given.
    pub tag: Option<String>,
    /// `sha256:<64 hex>` (or `sha512:<128 hex>`), if given.
    pub digest: Option<String>,
}

/// Why a reference is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What the user typed.
    pub input: String,
    /// The rule it breaks.
    pub rule: Rule,
}

/// The rule an invalid reference breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Nothing was given.
    Empty,
    /// A tag or digest without a name before it (`:tag`, `@sha256:…`).
    MissingName,
    /// An uppercase letter in the repository path (`Alpine`).
    Uppercase,
    /// A character no part of a reference may hold (whitespace, control, non-ASCII, or
    /// punctuation in the repository path).
    InvalidCharacter(char),
    /// A path component that starts or ends with a separator, or joins with a bad one
    /// (`a-.b`, `a___b`, `-a`).
    InvalidSeparator,
    /// An empty path component (`a//b`, `/x`, `a/`).
    EmptyComponent,
    /// Registry and repository longer than 255 characters.
    NameTooLong,
    /// A registry that is not `host[:port]` (`host:port/x`, `[::1/x`).
    InvalidRegistry,
    /// Nothing after the `:` (`alpine:`).
    EmptyTag,
    /// A tag outside `[A-Za-z0-9_][A-Za-z0-9_.-]*` (`alpine:-x`).
    InvalidTag,
    /// A tag longer than 128 characters.
    TagTooLong,
    /// A digest that is not `algorithm:hex` of the algorithm's length in lowercase hex.
    InvalidDigest,
    /// A well-formed digest of an algorithm other than sha256 or sha512 (`md5:…`).
    UnsupportedDigestAlgorithm,
    /// A 64-hex-digit string (bare or after `sha256:`): an image id, not a name.
    LooksLikeId,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Empty => f.write_str("the reference is empty"),
            Rule::MissingName => f.write_str("a repository name must come before the tag or digest"),
            Rule::Uppercase => f.write_str("repository names must be lowercase"),
            Rule::InvalidCharacter(c) => write!(f, "character {c:?} is not allowed"),
            Rule::InvalidSeparator => f.write_str(
                "path components must start and end with a letter or digit, joined by one `.`, one or two `_`, \
                 or `-`s",
            ),
            Rule::EmptyComponent => f.write_str("path components must not be empty (no `//`, leading or trailing `/`)"),
            Rule::NameTooLong => write!(f, "the registry and repository must be at most {NAME_MAX} characters"),
            Rule::InvalidRegistry => f.write_str(
                "the registry must be a host name, IPv4 address or [IPv6] address, with an optional numeric :port",
            ),
            Rule::EmptyTag => f.write_str("the tag after `:` is empty"),
            Rule::InvalidTag => f.write_str(
                "tags must start with a letter, digit or `_` and hold only letters, digits, `_`, `.` and `-`",
            ),
            Rule::TagTooLong => write!(f, "tags must be at most {TAG_MAX} characters"),
            Rule::InvalidDigest => {
                f.write_str("digests must be `sha256:` and 64 lowercase hex digits, or `sha512:` and 128")
            }
            Rule::UnsupportedDigestAlgorithm => f.write_str("only sha256 and sha512 digests are supported"),
            Rule::LooksLikeId => f.write_str("64 hex digits are an image id, not a repository name"),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // escape_debug keeps the message on one line whatever the user typed.
        write!(f, "reference `{}`: {}", self.input.escape_debug(), self.rule)
    }
}

impl std::error::Error for ParseError {}

impl Reference {
    /// Parses and normalizes a reference typed by the user.
    pub fn parse(s: &str) -> Result<Reference, ParseError> {
        Reference::parse_with_short_name_flag(s).map(|(r, _)| r)
    }

    /// Parses like [`Reference::parse`], and says whether the input named a registry explicitly
    /// (`false` for `alpine` or `user/app`, `true` for `docker.io/alpine`): short names may be
    /// resolved through search registries later.
    pub fn parse_with_short_name_flag(s: &str) -> Result<(Reference, bool), ParseError> {
        parse(s).map_err(|rule| ParseError { input: s.to_string(), rule })
    }

    /// The name without tag or digest: `docker.io/library/alpine`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Docker's short display form: `alpine:latest` for `docker.io/library/alpine:latest`,
    /// `user/app:1` for `docker.io/user/app:1`, the full form for other registries.
    pub fn familiar(&self) -> String {
        let name = if self.registry == DOCKER_HUB {
            match self.repository.strip_prefix(OFFICIAL_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        };
        name + &self.suffix()
    }

    /// What to ask the registry for: the digest if present, else the tag.
    pub fn tag_or_digest(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or(DEFAULT_TAG)
    }

    /// The API host to contact: `registry-1.docker.io` for Docker Hub, else the registry.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The same repository at `tag`, without a digest (`name:tag`). `tag` is not checked: pass
    /// one that came from [`Reference::parse`] or a registry.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference { tag: Some(tag.to_string()), digest: None, ..self.clone() }
    }

    /// The same repository pinned to `digest`, without a tag (`name@digest`, the form the store
    /// records next to the tag). `digest` is not checked: pass one rl computed or verified.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference { tag: None, digest: Some(digest.to_string()), ..self.clone() }
    }

    /// `:tag`, `@digest`, both or neither.
    fn suffix(&self) -> String {
        let mut s = String::new();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

impl fmt::Display for Reference {
    /// `docker.io/library/alpine:latest`, `host:5000/a/b@sha256:…`, `r/x:tag@sha256:…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.registry, self.repository, self.suffix())
    }
}

impl FromStr for Reference {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Reference, ParseError> {
        Reference::parse(s)
    }
}

/// The whole grammar, right to left: digest, tag, then registry and path.
fn parse(s: &str) -> Result<(Reference, bool), Rule> {
    if s.is_empty() {
        return Err(Rule::Empty);
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(Rule::InvalidCharacter(c));
    }
    if is_id(s) || s.strip_prefix("sha256:").is_some_and(is_id) {
        return Err(Rule::LooksLikeId);
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, d)) => (rest, Some(check_digest(d)?)),
        None => (s, None),
    };
    let (name, tag) = split_tag(rest);
    if let Some(t) = tag {
        check_tag(t)?;
    }
    if name.is_empty() {
        return Err(Rule::MissingName);
    }
    let (registry, path, explicit) = split_registry(name)?;
    check_path(path)?;
    let repository = if registry == DOCKER_HUB && !path.contains('/') {
        format!("{OFFICIAL_PREFIX}{path}")
    } else {
        path.to_string()
    };
    if registry.len() + 1 + repository.len() > NAME_MAX {
        return Err(Rule::NameTooLong);
    }
    let tag = match (tag, digest) {
        (None, None) => Some(DEFAULT_TAG),
        (t, _) => t,
    };
    let r = Reference { registry, repository, tag: tag.map(str::to_string), digest: digest.map(str::to_string) };
    Ok((r, explicit))
}

/// 64 lowercase hex digits: what Docker calls an image id.
fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(is_lower_hex)
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// Splits `name[:tag]`. Path components hold no `:`, so the tag starts at the first `:` after the
/// last `/`; a `:` before it belongs to the registry's port.
fn split_tag(s: &str) -> (&str, Option<&str>) {
    let start = s.rfind('/').map_or(0, |i| i + 1);
    match s[start..].find(':') {
        Some(i) => (&s[..start + i], Some(&s[start + i + 1..])),
        None => (s, None),
    }
}

/// Splits off the registry, if the first component is one; returns the normalized registry,
/// the path, and whether the registry was explicit.
fn split_registry(name: &str) -> Result<(String, &str, bool), Rule> {
    match name.split_once('/') {
        Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
            Ok((check_registry(first)?, path, true))
        }
        _ => Ok((DOCKER_HUB.to_string(), name, false)),
    }
}

/// Checks `host[:port]` and returns it lowercased, with Docker Hub's aliases folded.
fn check_registry(d: &str) -> Result<String, Rule> {
    let port = if let Some(inner) = d.strip_prefix('[') {
        let (addr, after) = inner.split_once(']').ok_or(Rule::InvalidRegistry)?;
        addr.parse::<Ipv6Addr>().map_err(|_| Rule::InvalidRegistry)?;
        match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(Rule::InvalidRegistry)?),
        }
    } else {
        let (host, port) = match d.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (d, None),
        };
        if !is_domain_name(host) {
            return Err(Rule::InvalidRegistry);
        }
        port
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Rule::InvalidRegistry);
        }
    }
    let d = d.to_ascii_lowercase();
    Ok(if HUB_ALIASES.contains(&d.as_str()) { DOCKER_HUB.to_string() } else { d })
}

/// Dot-separated labels of letters, digits and inner `-` (an IPv4 address is one of these too).
fn is_domain_name(host: &str) -> bool {
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            match (b.first(), b.last()) {
                (Some(first), Some(last)) => {
                    first.is_ascii_alphanumeric()
                        && last.is_ascii_alphanumeric()
                        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                }
                _ => false,
            }
        })
}

/// Checks a repository path: `/`-separated components, each lowercase letters and digits joined
/// by `.`, `_`, `__` or `-`s.
fn check_path(path: &str) -> Result<(), Rule> {
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(Rule::Uppercase);
    }
    if let Some(c) = path.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(*c))) {
        return Err(Rule::InvalidCharacter(c));
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err(Rule::EmptyComponent);
        }
        check_component(component)?;
    }
    Ok(())
}

/// `[a-z0-9]+ (separator [a-z0-9]+)*` with separator `[_.]|__|[-]+`; the characters are already
/// known to be lowercase letters, digits and separators.
fn check_component(c: &str) -> Result<(), Rule> {
    let is_sep = |b: u8| matches!(b, b'.' | b'_' | b'-');
    let b = c.as_bytes();
    if b.first().copied().is_some_and(is_sep) || b.last().copied().is_some_and(is_sep) {
        return Err(Rule::InvalidSeparator);
    }
    for run in c.split(|ch: char| ch.is_ascii_alphanumeric()).filter(|r| !r.is_empty()) {
        if !matches!(run, "." | "_" | "__") && !run.bytes().all(|b| b == b'-') {
            return Err(Rule::InvalidSeparator);
        }
    }
    Ok(())
}

/// `[\w][\w.-]{0,127}`.
fn check_tag(t: &str) -> Result<(), Rule> {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let b = t.as_bytes();
    match b.first() {
        None => return Err(Rule::EmptyTag),
        Some(first) if !word(first) => return Err(Rule::InvalidTag),
        Some(_) => {}
    }
    if !b.iter().all(|c| word(c) || *c == b'.' || *c == b'-') {
        return Err(Rule::InvalidTag);
    }
    if b.len() > TAG_MAX {
        return Err(Rule::TagTooLong);
    }
    Ok(())
}

/// `algorithm:hex`: the algorithm as distribution/reference spells one (`[A-Za-z][A-Za-z0-9]*`
/// parts joined by `+`, `.`, `_` or `-`), the hex checked for the algorithms rl supports.
fn check_digest(d: &str) -> Result<&str, Rule> {
    let (alg, hex) = d.split_once(':').ok_or(Rule::InvalidDigest)?;
    let well_formed = alg.split(['+', '.', '_', '-']).all(|part| {
        part.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if !well_formed {
        return Err(Rule::InvalidDigest);
    }
    let len = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Err(Rule::UnsupportedDigestAlgorithm),
    };
    if hex.len() != len || !hex.bytes().all(is_lower_hex) {
        return Err(Rule::InvalidDigest);
    }
    Ok(d)
}

#[cfg(test)]
#[path = "reference_tests.rs"]
mod tests;
