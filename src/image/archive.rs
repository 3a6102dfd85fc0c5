//! Image archives, as `docker save`/`podman save` write them and `rl save`/`rl load` read and
//! write them: what both directions share. Runs in the `rl` parent; the layers themselves pass
//! through stage 1 ([`super::layer_export`] out, [`super::pull::unpack_layers`] in).
//!
//! Two formats, both one tar:
//! - docker-archive: `manifest.json` (a list of `{Config, RepoTags, Layers}`, paths into the
//!   archive), the config as `<hex>.json`, each layer an uncompressed tar (`<id>/layer.tar` from
//!   Docker before 25, `blobs/sha256/<hex>` after), and the legacy `repositories` file.
//! - oci-archive: an OCI image layout (image-layout.md) in a tar: `oci-layout`, `index.json`
//!   (the images, named by the `org.opencontainers.image.ref.name` annotation) and every
//!   manifest, config and layer under `blobs/sha256/<hex>`, addressed by digest.
//!
//! An archive to load is untrusted. It is never extracted: [`Members`] indexes it once (name →
//! where the bytes are) and every read is a bounded `pread` of one member, so a member name can
//! reach nothing on disk. Names are still held to the archive: an absolute name or one with a
//! `..` refuses the archive, as does a symlink or hardlink member whose target leaves it. Only
//! regular file members are read.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::fs::FileExt;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::manifest::Compression;

/// The archive formats, by Podman's `--format` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Docker,
    Oci,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format> {
        match s {
            "docker-archive" => Ok(Format::Docker),
            "oci-archive" => Ok(Format::Oci),
            other => Err(hinted(
                format!("archive format `{other}`: unknown"),
                "use --format docker-archive (the default) or --format oci-archive",
            )),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Docker => "docker-archive",
            Format::Oci => "oci-archive",
        })
    }
}

/// An archive error with a known fix: the CLI prints `hint` on its own line after the error.
#[derive(Debug)]
pub struct Hinted {
    pub message: String,
    pub hint: &'static str,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Hinted {}

pub fn hinted(message: impl Into<String>, hint: &'static str) -> anyhow::Error {
    anyhow::Error::new(Hinted { message: message.into(), hint })
}

/// The hint for an archive rl cannot read at all.
pub const WHAT_LOADS: &str = "rl load reads the archives `rl save`, `docker save`, `podman save` and \
     `skopeo copy … docker-archive:FILE` or `oci-archive:FILE` write (tar, or tar.gz)";
/// The hint for an archive whose content does not add up.
pub const DAMAGED: &str = "the archive is damaged or incomplete: write it again (`rl save -o FILE IMAGE`)";

pub const MANIFEST_JSON: &str = "manifest.json";
pub const INDEX_JSON: &str = "index.json";
pub const OCI_LAYOUT: &str = "oci-layout";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// The image name in an OCI index entry (image-layout.md, annotations.md).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The full image name containerd and Docker ≥ 25 put beside a ref name that is a tag only.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// One image of a docker-archive's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerEntry {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

/// Parses a docker-archive's `manifest.json`.
pub fn parse_docker_manifest(bytes: &[u8]) -> Result<Vec<DockerEntry>> {
    let entries: Vec<DockerEntry> = serde_json::from_slice(bytes).context("parse manifest.json")?;
    if entries.is_empty() {
        bail!("manifest.json lists no image");
    }
    Ok(entries)
}

/// The image name an OCI index entry's annotations give: containerd's full name, else the ref
/// name when it is a name (`repo:tag`, `host/repo`), not a bare tag (`latest`), which names no
/// repository.
pub fn oci_name(annotations: Option<&HashMap<String, String>>) -> Option<String> {
    let a = annotations?;
    if let Some(n) = a.get(CONTAINERD_NAME).filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    a.get(REF_NAME).filter(|n| n.contains(':') || n.contains('/')).cloned()
}

/// `blobs/sha256/<hex>` for a digest (checked: only sha256, 64 lowercase hex digits).
pub fn blob_path(digest: &str) -> Result<String> {
    Ok(format!("blobs/sha256/{}", super::digest::hex_of(digest)?))
}

/// The digest a docker-archive member's name promises: `blobs/sha256/<hex>` (Docker ≥ 25) or a
/// config `<hex>.json`. Layer ids of older archives (`<id>/layer.tar`) are no digests.
pub fn digest_in_name(name: &str) -> Option<String> {
    let hex = name.strip_prefix("blobs/sha256/").or_else(|| name.strip_suffix(".json"))?;
    let d = format!("sha256:{hex}");
    super::digest::hex_of(&d).is_ok().then_some(d)
}

/// How a layer blob is compressed, by its first bytes (an archive's media types may say
/// otherwise: Docker's say `tar` for every layer).
pub fn sniff(head: &[u8]) -> Compression {
    match head {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        _ => Compression::None,
    }
}

/// Whether `block` (the first 512 bytes of a file) is a tar header: POSIX `ustar\0` or GNU
/// `ustar ` magic.
pub fn is_tar(block: &[u8]) -> bool {
    block.len() >= 512 && (&block[257..263] == b"ustar\0" || &block[257..263] == b"ustar ")
}

/// An archive member name made canonical (`./a//b` → `a/b`), or an error for one that leaves the
/// archive: absolute, with `..`, empty or with a NUL.
pub fn member_name(raw: &str) -> Result<String> {
    if raw.starts_with('/') || raw.contains('\0') {
        bail!("member `{raw}`: the name leaves the archive");
    }
    let mut parts = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => bail!("member `{raw}`: the name leaves the archive"),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        bail!("member `{raw}`: empty name");
    }
    Ok(parts.join("/"))
}

/// Where a symlink member at `link` pointing to `target` leads, as a member name.
fn link_target(link: &str, target: &str) -> Result<String> {
    if target.starts_with('/') {
        bail!("member `{link}`: its link target `{target}` leaves the archive");
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    bail!("member `{link}`: its link target `{target}` leaves the archive");
                }
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// Where a member's bytes lie in the archive file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub offset: u64,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Member {
    File(Span),
    /// A symlink or hardlink, to this member name.
    Link(String),
    Other,
}

/// The members of an archive file, by canonical name.
#[derive(Debug, Default)]
pub struct Members {
    map: BTreeMap<String, Member>,
}

impl Members {
    /// Indexes the tar in `file` (seeking over contents). A later member of the same name
    /// replaces an earlier one, as when tar extracts.
    pub fn index(file: &File) -> Result<Members> {
        let mut out = Members::default();
        let mut at = file;
        at.seek(io::SeekFrom::Start(0)).context("read the tar")?;
        let mut archive = tar::Archive::new(file);
        for entry in archive.entries_with_seek().context("read the tar")? {
            let entry = entry.context("read the tar")?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = member_name(&raw)?;
            let kind = entry.header().entry_type();
            let member = if kind.is_file() || kind == tar::EntryType::Continuous {
                Member::File(Span { offset: entry.raw_file_position(), size: entry.size() })
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .ok_or_else(|| anyhow!("member `{name}`: a link without a target"))?;
                Member::Link(if kind.is_symlink() {
                    link_target(&name, &target)?
                } else {
                    member_name(&target).with_context(|| format!("member `{name}`: hardlink"))?
                })
            } else {
                Member::Other
            };
            out.map.insert(name, member);
        }
        Ok(out)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// The regular file member `name` leads to, through links within the archive.
    pub fn find(&self, name: &str) -> Result<Span> {
        let start = member_name(name)?;
        let mut at = start.clone();
        for _ in 0..16 {
            match self.map.get(&at) {
                Some(Member::File(span)) => return Ok(*span),
                Some(Member::Link(to)) => at = to.clone(),
                Some(Member::Other) => bail!("member `{name}`: not a regular file"),
                None if at == start => return Err(hinted(format!("member `{name}`: missing"), DAMAGED)),
                None => return Err(hinted(format!("member `{name}`: its link to `{at}` leads nowhere"), DAMAGED)),
            }
        }
        bail!("member `{name}`: too many levels of links")
    }

    /// A small member's bytes (a manifest, an index, a config), at most `max`.
    pub fn read(&self, file: &File, name: &str, max: u64) -> Result<Vec<u8>> {
        let span = self.find(name)?;
        if span.size > max {
            bail!("member `{name}`: {} bytes, more than the {max} rl accepts", span.size);
        }
        let mut buf = Vec::with_capacity(span.size as usize);
        SpanReader::new(file, span).read_to_end(&mut buf).with_context(|| format!("read member `{name}`"))?;
        Ok(buf)
    }
}

/// Reads one member's bytes with `pread`: many at once from one file, each its own position.
pub struct SpanReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl<'a> SpanReader<'a> {
    pub fn new(file: &'a File, span: Span) -> SpanReader<'a> {
        SpanReader { file, pos: span.offset, end: span.offset + span.size }
    }
}

impl Read for SpanReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive ends inside a member"));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Which format an indexed archive holds. `manifest.json` wins: Docker ≥ 25 writes both, and
/// its `RepoTags` carry the full names.
pub fn detect(members: &Members) -> Result<Format> {
    if members.contains(MANIFEST_JSON) {
        Ok(Format::Docker)
    } else if members.contains(INDEX_JSON) {
        Ok(Format::Oci)
    } else {
        Err(hinted("no manifest.json or index.json: neither a docker-archive nor an oci-archive", WHAT_LOADS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn member_names() {
        for (raw, want) in [("a/b", "a/b"), ("./manifest.json", "manifest.json"), ("a//./b/", "a/b")] {
            assert_eq!(member_name(raw).unwrap(), want, "{raw}");
        }
        for bad in ["/etc/passwd", "../x", "a/../../x", "a/..", "", ".", "a\0b"] {
            assert!(member_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(link_target("a/b/layer.tar", "../c/layer.tar").unwrap(), "a/c/layer.tar");
        assert_eq!(link_target("b/layer.tar", "../c/layer.tar").unwrap(), "c/layer.tar");
        for bad in [("x/l", "../../etc/passwd"), ("l", "/etc/passwd"), ("l", "..")] {
            assert!(link_target(bad.0, bad.1).unwrap_err().to_string().contains("leaves"), "{bad:?}");
        }
    }

    #[test]
    fn docker_manifests() {
        let m = format!(r#"[{{"Config":"{H}.json","RepoTags":["busybox:latest"],"Layers":["{H}/layer.tar"]}}]"#);
        let e = parse_docker_manifest(m.as_bytes()).unwrap();
        assert_eq!(e[0].repo_tags.as_deref(), Some(&["busybox:latest".to_string()][..]));
        assert_eq!(e[0].layers, [format!("{H}/layer.tar")]);
        let nameless = format!(r#"[{{"Config":"{H}.json","RepoTags":null,"Layers":[]}}]"#);
        assert_eq!(parse_docker_manifest(nameless.as_bytes()).unwrap()[0].repo_tags, None);
        for bad in ["[]", "{}", "not json", r#"[{"Config":"c"}]"#] {
            assert!(parse_docker_manifest(bad.as_bytes()).is_err(), "{bad}");
        }
        assert_eq!(digest_in_name(&format!("blobs/sha256/{H}")), Some(format!("sha256:{H}")));
        assert_eq!(digest_in_name(&format!("{H}.json")), Some(format!("sha256:{H}")));
        assert_eq!(digest_in_name(&format!("{H}/layer.tar")), None);
        assert_eq!(digest_in_name("config.json"), None);
    }

    #[test]
    fn oci_names() {
        let ann = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert_eq!(oci_name(Some(&ann(&[(REF_NAME, "busybox:1")]))).as_deref(), Some("busybox:1"));
        assert_eq!(oci_name(Some(&ann(&[(REF_NAME, "latest")]))), None);
        let both = ann(&[(REF_NAME, "latest"), (CONTAINERD_NAME, "docker.io/library/a:latest")]);
        assert_eq!(oci_name(Some(&both)).as_deref(), Some("docker.io/library/a:latest"));
        assert_eq!(oci_name(None), None);
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(sniff(b"etc/"), Compression::None);
        assert_eq!(sniff(b""), Compression::None);
        let mut block = vec![0u8; 512];
        assert!(!is_tar(&block) && !is_tar(b"ustar"));
        block[257..263].copy_from_slice(b"ustar\0");
        assert!(is_tar(&block));
        assert!(Format::parse("oci-archive").is_ok() && Format::parse("oci").is_err());
    }

    /// A tar in memory with the given (name, content) files and (name, target) symlinks.
    fn tar_of(files: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // set_path refuses `..`; an archive to load may still carry one.
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        for (name, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, name, target).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn index_of(bytes: &[u8]) -> (File, Result<Members>) {
        let path = std::env::temp_dir().join(format!("rl-archive-{}-{}", std::process::id(), bytes.len()));
        std::fs::write(&path, bytes).unwrap();
        let f = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let m = Members::index(&f);
        (f, m)
    }

    #[test]
    fn members_and_detection() {
        let t = tar_of(&[("./index.json", b"{}"), ("blobs/sha256/x", b"data")], &[("a/l", "../blobs/sha256/x")]);
        assert!(is_tar(&t));
        let (f, m) = index_of(&t);
        let m = m.unwrap();
        assert_eq!(detect(&m).unwrap(), Format::Oci);
        assert_eq!(m.read(&f, "a/l", 100).unwrap(), b"data");
        assert!(m.read(&f, "blobs/sha256/x", 3).unwrap_err().to_string().contains("more than"));
        assert!(m.find("nope").unwrap_err().to_string().contains("missing"));
        assert!(m.find("a").is_err(), "a directory is no file");

        let (_, escaping) = index_of(&tar_of(&[("../evil", b"x")], &[]));
        assert!(escaping.unwrap_err().to_string().contains("leaves the archive"));
        let (_, link_out) = index_of(&tar_of(&[("manifest.json", b"[]")], &[("l", "../../etc/passwd")]));
        assert!(link_out.unwrap_err().to_string().contains("leaves the archive"));
        let (_, neither) = index_of(&tar_of(&[("x", b"")], &[]));
        assert!(detect(&neither.unwrap()).unwrap_err().to_string().contains("no manifest.json or index.json"));
    }
}
