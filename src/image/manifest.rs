//! Manifests, indexes and platforms, as the registry serves them: OCI image manifests and
//! indexes, and Docker's schema2 manifests and manifest lists (the same JSON shape under other
//! media types), parsed with oci-spec. Used by the pull in the `rl` parent.

use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

/// Media types rl asks for, in preference order.
pub const ACCEPT: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The largest manifest or index rl accepts (the distribution spec's own cap is 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// The largest image config rl accepts.
pub const MAX_CONFIG: u64 = 8 << 20;

/// What a manifest request returned.
#[derive(Debug)]
pub enum Fetched {
    Manifest(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

/// Parses a manifest or index by its media type (the body's own `mediaType` if the header is
/// vague).
pub fn parse(bytes: &[u8], content_type: &str) -> Result<Fetched> {
    let declared = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(str::to_string));
    let kind = match declared.as_deref() {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => content_type.split(';').next().unwrap_or("").trim().to_string(),
    };
    let is_index = kind.contains("index")
        || kind.contains("manifest.list")
        || serde_json::from_slice::<serde_json::Value>(bytes).ok().is_some_and(|v| v.get("manifests").is_some());
    if kind.starts_with("application/vnd.docker.distribution.manifest.v1") {
        bail!("manifest: Docker schema 1 (`{kind}`) is not supported");
    }
    if is_index {
        let index = ImageIndex::from_reader(bytes).context("parse the image index")?;
        Ok(Fetched::Index(Box::new(index)))
    } else {
        let manifest = ImageManifest::from_reader(bytes).context("parse the image manifest")?;
        Ok(Fetched::Manifest(Box::new(manifest)))
    }
}

/// An `os/arch[/variant]` platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// The platform this rl runs on, in OCI's words.
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            other => (other, None),
        };
        Platform { os: "linux".into(), arch: arch.into(), variant: variant.map(str::to_string) }
    }

    /// Parses `--platform os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => {
                Ok(Platform { os: os.to_string(), arch: arch.to_string(), variant: None })
            }
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => {
                Ok(Platform { os: os.to_string(), arch: arch.to_string(), variant: Some(v.to_string()) })
            }
            _ => bail!("platform `{s}`: expected os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8"),
        }
    }

    fn of(d: &Descriptor) -> Option<Platform> {
        let p = d.platform().as_ref()?;
        Some(Platform {
            os: p.os().to_string(),
            arch: p.architecture().to_string(),
            variant: p.variant().clone().filter(|v| !v.is_empty()),
        })
    }

    /// Whether an index entry for `other` can run here: same os and arch; a variant, when we
    /// ask for one, must match (arm64's "v8" is also the default when the entry has none).
    fn matches(&self, other: &Platform) -> bool {
        if self.os != other.os || self.arch != other.arch {
            return false;
        }
        match (&self.variant, &other.variant) {
            (None, _) => true,
            (Some(want), Some(have)) => want == have,
            (Some(want), None) => self.arch == "arm64" && want == "v8",
        }
    }
}

/// Picks the manifest for `platform` from an index; the error lists what the index offers.
pub fn select(index: &ImageIndex, platform: &Platform) -> Result<Descriptor> {
    let entries: Vec<(&Descriptor, Option<Platform>)> =
        index.manifests().iter().map(|d| (d, Platform::of(d))).collect();
    // An exact variant match wins over a variant-less one.
    let exact = entries.iter().find(|(_, p)| p.as_ref().is_some_and(|p| p == platform));
    let loose = entries.iter().find(|(_, p)| p.as_ref().is_some_and(|p| platform.matches(p)));
    if let Some((d, _)) = exact.or(loose) {
        return Ok((*d).clone());
    }
    let offered: Vec<String> = entries.iter().filter_map(|(_, p)| p.as_ref().map(|p| p.to_string())).collect();
    bail!(
        "platform: no image for {platform} in the index (it offers: {}); choose one with --platform",
        if offered.is_empty() { "nothing".to_string() } else { offered.join(", ") }
    )
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From a layer's media type.
    pub fn of_media_type(media_type: &str) -> Result<Compression> {
        Ok(match media_type {
            t if t.ends_with("tar+gzip")
                || t.ends_with(".tar.gzip")
                || t == "application/vnd.docker.image.rootfs.diff.tar.gzip" =>
            {
                Compression::Gzip
            }
            t if t.ends_with("tar+zstd") => Compression::Zstd,
            t if t.ends_with(".tar") || t.ends_with("layer.v1.tar") => Compression::None,
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
            other => bail!("layer: unsupported media type `{other}`"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":1,"platform":{"os":"linux","architecture":"amd64"}},
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333","size":1,"platform":{"os":"linux","architecture":"arm","variant":"v7"}}]}"#;

    #[test]
    fn platform_selection() {
        let Fetched::Index(index) = parse(INDEX.as_bytes(), "").unwrap() else { panic!("not an index") };
        let pick = |p: &str| select(&index, &Platform::parse(p).unwrap()).map(|d| d.digest().to_string());
        assert!(pick("linux/amd64").unwrap().ends_with("1111"));
        assert!(pick("linux/arm64").unwrap().ends_with("2222"));
        assert!(pick("linux/arm64/v8").unwrap().ends_with("2222"));
        assert!(pick("linux/arm/v7").unwrap().ends_with("3333"));
        let err = pick("linux/riscv64").unwrap_err().to_string();
        assert!(err.contains("linux/amd64, linux/arm64/v8, linux/arm/v7"), "{err}");
        assert!(pick("linux/arm/v6").is_err());
    }

    #[test]
    fn platform_parsing() {
        assert_eq!(Platform::parse("linux/arm64/v8").unwrap().to_string(), "linux/arm64/v8");
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn compression_by_media_type() {
        let cases = [
            ("application/vnd.oci.image.layer.v1.tar+gzip", Compression::Gzip),
            ("application/vnd.docker.image.rootfs.diff.tar.gzip", Compression::Gzip),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Compression::Zstd),
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
        ];
        for (t, c) in cases {
            assert_eq!(Compression::of_media_type(t).unwrap(), c, "{t}");
        }
        assert!(Compression::of_media_type("application/x-bogus").is_err());
    }

    #[test]
    fn schema1_is_refused() {
        let e =
            parse(br#"{"schemaVersion":1}"#, "application/vnd.docker.distribution.manifest.v1+prettyjws").unwrap_err();
        assert!(e.to_string().contains("schema 1"), "{e}");
    }
}
