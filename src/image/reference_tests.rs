//! The reference grammar as a table: each valid input with its normalized and familiar forms,
//! each invalid one with the rule it breaks.

use super::*;

const H64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

enum Want {
    /// Normalized (`Display`) form, then familiar form.
    Good(&'static str, &'static str),
    Bad(Rule),
}
use Want::{Bad, Good};

/// Placeholders keep the table readable: `<h64>`/`<h128>` hex, `<t128>`/`<t129>` tag-length
/// strings, `<n237>`/`<n238>` names that make the full name 255/256 characters long.
fn expand(s: &str) -> String {
    s.replace("<h64>", H64)
        .replace("<h128>", &H64.repeat(2))
        .replace("<t128>", &"t".repeat(128))
        .replace("<t129>", &"t".repeat(129))
        .replace("<n237>", &"n".repeat(237))
        .replace("<n238>", &"n".repeat(238))
}

const CASES: &[(&str, Want)] = &[
    // Docker Hub, short and long spellings.
    ("alpine", Good("docker.io/library/alpine:latest", "alpine:latest")),
    ("alpine:3.19", Good("docker.io/library/alpine:3.19", "alpine:3.19")),
    ("library/alpine", Good("docker.io/library/alpine:latest", "alpine:latest")),
    ("user/app", Good("docker.io/user/app:latest", "user/app:latest")),
    ("docker.io/user/app:1", Good("docker.io/user/app:1", "user/app:1")),
    ("docker.io/alpine", Good("docker.io/library/alpine:latest", "alpine:latest")),
    ("index.docker.io/library/alpine", Good("docker.io/library/alpine:latest", "alpine:latest")),
    ("registry-1.docker.io/user/app", Good("docker.io/user/app:latest", "user/app:latest")),
    ("Index.Docker.IO/user/app", Good("docker.io/user/app:latest", "user/app:latest")),
    ("docker.io/library/a/b", Good("docker.io/library/a/b:latest", "library/a/b:latest")),
    ("0/1", Good("docker.io/0/1:latest", "0/1:latest")),
    ("abc123", Good("docker.io/library/abc123:latest", "abc123:latest")),
    // Without a `/`, `localhost` and `host:port` are a name and a tag, as in Docker.
    ("localhost", Good("docker.io/library/localhost:latest", "localhost:latest")),
    ("localhost:5000", Good("docker.io/library/localhost:5000", "localhost:5000")),
    // Other registries.
    ("localhost/app", Good("localhost/app:latest", "localhost/app:latest")),
    ("localhost:5000/app:tag", Good("localhost:5000/app:tag", "localhost:5000/app:tag")),
    ("127.0.0.1:5000/a/b/c:v1.2", Good("127.0.0.1:5000/a/b/c:v1.2", "127.0.0.1:5000/a/b/c:v1.2")),
    ("[::1]:5000/x", Good("[::1]:5000/x:latest", "[::1]:5000/x:latest")),
    ("[::1]/x", Good("[::1]/x:latest", "[::1]/x:latest")),
    ("[2001:DB8::1]:443/org/x:1", Good("[2001:db8::1]:443/org/x:1", "[2001:db8::1]:443/org/x:1")),
    ("my-registry:5000/app", Good("my-registry:5000/app:latest", "my-registry:5000/app:latest")),
    ("Quay.IO/org/app", Good("quay.io/org/app:latest", "quay.io/org/app:latest")),
    ("reg.example.com/team/app:v1", Good("reg.example.com/team/app:v1", "reg.example.com/team/app:v1")),
    // Digests, alone and with a tag.
    ("quay.io/org/repo@sha256:<h64>", Good("quay.io/org/repo@sha256:<h64>", "quay.io/org/repo@sha256:<h64>")),
    ("repo:tag@sha256:<h64>", Good("docker.io/library/repo:tag@sha256:<h64>", "repo:tag@sha256:<h64>")),
    ("alpine@sha512:<h128>", Good("docker.io/library/alpine@sha512:<h128>", "alpine@sha512:<h128>")),
    // Separators and tags at their limits.
    ("a__b", Good("docker.io/library/a__b:latest", "a__b:latest")),
    ("a--b", Good("docker.io/library/a--b:latest", "a--b:latest")),
    ("a---b/c.d_e", Good("docker.io/a---b/c.d_e:latest", "a---b/c.d_e:latest")),
    ("alpine:Latest_1.0-rc", Good("docker.io/library/alpine:Latest_1.0-rc", "alpine:Latest_1.0-rc")),
    ("alpine:_x", Good("docker.io/library/alpine:_x", "alpine:_x")),
    ("alpine:<t128>", Good("docker.io/library/alpine:<t128>", "alpine:<t128>")),
    ("<n237>", Good("docker.io/library/<n237>:latest", "<n237>:latest")),
    // Invalid: names.
    ("", Bad(Rule::Empty)),
    ("Alpine", Bad(Rule::Uppercase)),
    ("user/App", Bad(Rule::Uppercase)),
    ("Foo/bar", Bad(Rule::Uppercase)),
    ("a-.b", Bad(Rule::InvalidSeparator)),
    ("a___b", Bad(Rule::InvalidSeparator)),
    ("a..b", Bad(Rule::InvalidSeparator)),
    ("-a", Bad(Rule::InvalidSeparator)),
    ("a_", Bad(Rule::InvalidSeparator)),
    ("a$b", Bad(Rule::InvalidCharacter('$'))),
    ("alpïne", Bad(Rule::InvalidCharacter('ï'))),
    ("alpine ", Bad(Rule::InvalidCharacter(' '))),
    (" alpine", Bad(Rule::InvalidCharacter(' '))),
    ("alpine:3.19\n", Bad(Rule::InvalidCharacter('\n'))),
    ("/x", Bad(Rule::EmptyComponent)),
    ("a//b", Bad(Rule::EmptyComponent)),
    ("a/", Bad(Rule::EmptyComponent)),
    ("localhost/", Bad(Rule::EmptyComponent)),
    (":tag", Bad(Rule::MissingName)),
    ("<n238>", Bad(Rule::NameTooLong)),
    ("<h64>", Bad(Rule::LooksLikeId)),
    ("sha256:<h64>", Bad(Rule::LooksLikeId)),
    // Invalid: registries.
    ("host:port/x", Bad(Rule::InvalidRegistry)),
    ("host:/x", Bad(Rule::InvalidRegistry)),
    ("[::1/x", Bad(Rule::InvalidRegistry)),
    ("[::g]:5000/x", Bad(Rule::InvalidRegistry)),
    ("[::1]5000/x", Bad(Rule::InvalidRegistry)),
    ("-bad.com/x", Bad(Rule::InvalidRegistry)),
    ("bad_host.com/x", Bad(Rule::InvalidRegistry)),
    ("a..com/x", Bad(Rule::InvalidRegistry)),
    // Invalid: tags.
    ("alpine:", Bad(Rule::EmptyTag)),
    ("alpine:-x", Bad(Rule::InvalidTag)),
    ("alpine:.x", Bad(Rule::InvalidTag)),
    ("alpine:a:b", Bad(Rule::InvalidTag)),
    ("alpine:<t129>", Bad(Rule::TagTooLong)),
    // Invalid: digests.
    ("@sha256:abc", Bad(Rule::InvalidDigest)),
    ("alpine@sha256:abc", Bad(Rule::InvalidDigest)),
    ("alpine@sha256", Bad(Rule::InvalidDigest)),
    ("alpine@", Bad(Rule::InvalidDigest)),
    ("alpine@sha512:<h64>", Bad(Rule::InvalidDigest)),
    ("alpine@sha256:<h64>@sha256:<h64>", Bad(Rule::InvalidDigest)),
    ("alpine@1sha:<h64>", Bad(Rule::InvalidDigest)),
    ("alpine@md5:d41d8cd98f00b204e9800998ecf8427e", Bad(Rule::UnsupportedDigestAlgorithm)),
    ("alpine@sha256+b64u:<h64>", Bad(Rule::UnsupportedDigestAlgorithm)),
    ("@sha256:<h64>", Bad(Rule::MissingName)),
];

#[test]
fn table() {
    assert!(CASES.len() >= 40);
    for (input, want) in CASES {
        let input = expand(input);
        match (Reference::parse(&input), want) {
            (Ok(r), Good(full, familiar)) => {
                assert_eq!(r.to_string(), expand(full), "normalized form of {input:?}");
                assert_eq!(r.familiar(), expand(familiar), "familiar form of {input:?}");
                assert_eq!(Reference::parse(&r.to_string()).as_ref(), Ok(&r), "reparse of {input:?}");
                assert_eq!(Reference::parse(&r.familiar()).as_ref(), Ok(&r), "reparse familiar of {input:?}");
                assert_eq!(r.name(), format!("{}/{}", r.registry, r.repository));
            }
            (Err(e), Bad(rule)) => {
                assert_eq!(e.rule, *rule, "rule broken by {input:?}");
                assert_eq!(e.input, input);
            }
            (got, _) => panic!("{input:?}: unexpected {got:?}"),
        }
    }
}

#[test]
fn fields() {
    let r = Reference::parse(&format!("repo:tag@sha256:{H64}")).unwrap();
    assert_eq!(r.registry, "docker.io");
    assert_eq!(r.repository, "library/repo");
    assert_eq!(r.tag.as_deref(), Some("tag"));
    assert_eq!(r.digest, Some(format!("sha256:{H64}")));
    assert_eq!(Reference::parse(&format!("quay.io/org/repo@sha256:{H64}")).unwrap().tag, None);
}

#[test]
fn short_name_flag() {
    for (input, explicit) in [
        ("alpine", false),
        ("user/app:1", false),
        ("library/alpine", false),
        ("docker.io/alpine", true),
        ("index.docker.io/library/alpine", true),
        ("localhost/app", true),
        ("quay.io/org/repo", true),
        ("[::1]:5000/x", true),
    ] {
        let (_, got) = Reference::parse_with_short_name_flag(input).unwrap();
        assert_eq!(got, explicit, "{input}");
    }
}

#[test]
fn api_host_and_tag_or_digest() {
    let hub = Reference::parse("alpine").unwrap();
    assert_eq!(hub.api_host(), "registry-1.docker.io");
    assert_eq!(hub.tag_or_digest(), "latest");
    let local = Reference::parse("[::1]:5000/x:v1").unwrap();
    assert_eq!(local.api_host(), "[::1]:5000");
    assert_eq!(local.tag_or_digest(), "v1");
    let both = Reference::parse(&format!("quay.io/o/r:v1@sha256:{H64}")).unwrap();
    assert_eq!(both.api_host(), "quay.io");
    assert_eq!(both.tag_or_digest(), format!("sha256:{H64}"));
}

#[test]
fn with_tag_and_digest() {
    let r = Reference::parse(&format!("quay.io/o/r:v1@sha256:{H64}")).unwrap();
    assert_eq!(r.with_tag("v2").to_string(), "quay.io/o/r:v2");
    let pinned = Reference::parse("alpine").unwrap().with_digest(&format!("sha256:{H64}"));
    assert_eq!(pinned.to_string(), format!("docker.io/library/alpine@sha256:{H64}"));
    assert_eq!(pinned.familiar(), format!("alpine@sha256:{H64}"));
    assert_eq!(pinned.tag_or_digest(), format!("sha256:{H64}"));
}

#[test]
fn error_messages() {
    let msg = |s: &str| Reference::parse(s).unwrap_err().to_string();
    assert_eq!(msg("Alpine"), "reference `Alpine`: repository names must be lowercase");
    assert_eq!(msg("a\tb"), "reference `a\\tb`: character '\\t' is not allowed");
    assert_eq!(msg("host:port/x").lines().count(), 1);
    assert!(
        msg("alpine@md5:d41d8cd98f00b204e9800998ecf8427e").ends_with("only sha256 and sha512 digests are supported")
    );
    let e: Box<dyn std::error::Error> = Box::new(Reference::parse("").unwrap_err());
    assert_eq!(e.to_string(), "reference ``: the reference is empty");
}

#[test]
fn from_str_and_serde() {
    let r: Reference = "localhost:5000/app:tag".parse().unwrap();
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(json, r#"{"registry":"localhost:5000","repository":"app","tag":"tag","digest":null}"#);
    assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);
}
