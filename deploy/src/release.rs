//! The release binaries on S3: `airq-deploy provision --stack NAME
//! --upload-release DIR` puts `airq-master`, `airq-gateway` and
//! `airq-worker` under `s3://BUCKET/releases/VERSION/ARCH/`, where the
//! stack's instances download them at boot (the template's user data).
//!
//! A release is checked before anything is sent: the three files must be
//! Linux executables (64-bit little-endian ELF) of one architecture, the
//! one the stack runs. Its default version is content-addressed,
//! `v<crate version>-<12 hex digits of the binaries' SHA-256>`, so uploading
//! the same build again changes nothing and a new build is a new version.

use anyhow::{bail, Context};
use aws_sdk_s3::primitives::ByteStream;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The binaries a release holds, as the template's user data names them.
pub const BINARIES: [&str; 3] = ["airq-master", "airq-gateway", "airq-worker"];

/// The object metadata key holding a binary's SHA-256 (hex).
const SHA256_METADATA: &str = "sha256";

/// An instance architecture, spelled as the template's `Architecture`
/// parameter and the release paths spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Architecture {
    #[value(name = "x86_64")]
    X86_64,
    #[value(name = "arm64")]
    Arm64,
}

impl Architecture {
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86_64",
            Architecture::Arm64 => "arm64",
        }
    }

    pub fn parse(s: &str) -> Option<Architecture> {
        match s {
            "x86_64" => Some(Architecture::X86_64),
            "arm64" => Some(Architecture::Arm64),
            _ => None,
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One binary of a release.
#[derive(Debug, Clone)]
pub struct Binary {
    pub name: &'static str,
    pub path: PathBuf,
    pub len: u64,
    /// SHA-256 of the file, in lower-case hex.
    pub sha256: String,
}

/// The three binaries found in a directory, checked.
#[derive(Debug, Clone)]
pub struct Release {
    pub arch: Architecture,
    pub binaries: Vec<Binary>,
    /// SHA-256 over the binaries' names and digests, in lower-case hex.
    pub digest: String,
}

impl Release {
    /// `v<crate version>-<12 hex digits of the binaries' digest>`.
    pub fn default_version(&self) -> String {
        format!("v{}-{}", env!("CARGO_PKG_VERSION"), &self.digest[..12])
    }
}

/// Reads and checks the binaries in `dir`: all three present, Linux ELF
/// executables of one supported architecture.
pub fn inspect(dir: &Path) -> anyhow::Result<Release> {
    let mut binaries = Vec::new();
    let mut arch = None;
    let mut all = Sha256::new();
    for name in BINARIES {
        let path = dir.join(name);
        let file_arch = elf_architecture(&path)?;
        match arch {
            None => arch = Some(file_arch),
            Some(a) if a != file_arch => bail!(
                "{} is {file_arch} but {} is {a}: a release is built for one architecture",
                path.display(),
                binaries
                    .first()
                    .map(|b: &Binary| b.path.display().to_string())
                    .unwrap_or_default()
            ),
            Some(_) => {}
        }
        let (len, sha256) = digest_file(&path)?;
        all.update(name.as_bytes());
        all.update(b"\0");
        all.update(sha256.as_bytes());
        all.update(b"\n");
        binaries.push(Binary {
            name,
            path,
            len,
            sha256,
        });
    }
    Ok(Release {
        arch: arch.expect("three binaries were read"),
        binaries,
        digest: hex(&all.finalize()),
    })
}

/// The architecture of a Linux executable, from its ELF header.
pub fn elf_architecture(path: &Path) -> anyhow::Result<Architecture> {
    let mut header = [0u8; 20];
    let mut f = std::fs::File::open(path).with_context(|| {
        format!(
            "opening {} (build the release first: cargo build --release --bins, \
             for the instances' architecture)",
            path.display()
        )
    })?;
    f.read_exact(&mut header)
        .ok()
        .filter(|_| header[..4] == *b"\x7fELF")
        .with_context(|| format!("{} is not an ELF (Linux) executable", path.display()))?;
    if header[4] != 2 || header[5] != 1 {
        bail!(
            "{} is not a 64-bit little-endian ELF executable",
            path.display()
        );
    }
    match u16::from_le_bytes([header[18], header[19]]) {
        62 => Ok(Architecture::X86_64),
        183 => Ok(Architecture::Arm64),
        other => bail!(
            "{} is for ELF machine {other}, neither x86_64 (62) nor arm64 (183)",
            path.display()
        ),
    }
}

fn digest_file(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok((len, hex(&hash.finalize())));
        }
        len += n as u64;
        hash.update(&buf[..n]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `v` can name a release: the template's `Release` parameter
/// (`v` first) and an S3 key segment (letters, digits, `.`, `_`, `-`; at
/// most 64 characters).
pub fn check_version(v: &str) -> Result<(), String> {
    let ok = v.starts_with('v')
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{v:?}: a release version is 'v' then letters, digits, '.', '_' or '-', \
             at most 64 characters in all (e.g. v3)"
        ))
    }
}

/// Where a binary of a release lives in the bucket.
pub fn key(version: &str, arch: Architecture, name: &str) -> String {
    format!("releases/{version}/{arch}/{name}")
}

/// Uploads the release under `version`, skipping binaries already there
/// with the same digest.
pub async fn upload(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    version: &str,
    release: &Release,
) -> anyhow::Result<()> {
    for b in &release.binaries {
        let key = key(version, release.arch, b.name);
        let url = format!("s3://{bucket}/{key}");
        if let Some(sha) = uploaded_digest(s3, bucket, &key).await? {
            if sha == b.sha256 {
                eprintln!("found    {url} (the same binary)");
                continue;
            }
            bail!(
                "{url} already holds another binary (SHA-256 {sha}, this one's is {}): \
                 a release version is never overwritten; name a new one with --release",
                b.sha256
            );
        }
        let body = ByteStream::from_path(&b.path)
            .await
            .with_context(|| format!("reading {}", b.path.display()))?;
        s3.put_object()
            .bucket(bucket)
            .key(&key)
            .content_type("application/octet-stream")
            .metadata(SHA256_METADATA, &b.sha256)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "uploading {} to {url}: {}",
                    b.path.display(),
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            })?;
        eprintln!("uploaded {url} ({})", size(b.len));
    }
    Ok(())
}

/// A file size for people.
fn size(bytes: u64) -> String {
    if bytes < 1024 * 1024 {
        format!("{bytes} bytes")
    } else {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}

/// The digest recorded on `key`, `Some("")` for an object without one,
/// `None` if there is no object.
async fn uploaded_digest(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<Option<String>> {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(head) => Ok(Some(
            head.metadata()
                .and_then(|m| m.get(SHA256_METADATA))
                .cloned()
                .unwrap_or_default(),
        )),
        Err(e)
            if e.as_service_error().is_some_and(|se| se.is_not_found())
                || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
        {
            Ok(None)
        }
        Err(e) => Err(anyhow::anyhow!(
            "S3 HeadObject s3://{bucket}/{key}: {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        )),
    }
}

/// The SHA-256 of each of `version`'s binaries for `arch`, as recorded at
/// upload (before pointing the stack at a release uploaded earlier); fails
/// unless all three are there with a digest.
pub async fn uploaded_digests(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    version: &str,
    arch: Architecture,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut missing = Vec::new();
    let mut digests = Vec::new();
    for name in BINARIES {
        let key = key(version, arch, name);
        match uploaded_digest(s3, bucket, &key).await? {
            None => missing.push(format!("s3://{bucket}/{key}")),
            Some(sha) if !is_sha256(&sha) => bail!(
                "s3://{bucket}/{key} has no SHA-256 recorded (it was not uploaded by \
                 airq-deploy): upload the release again with --upload-release DIR"
            ),
            Some(sha) => digests.push((name, sha)),
        }
    }
    if !missing.is_empty() {
        bail!(
            "release {version} for {arch} is not in the bucket (missing {}): upload it with \
             --upload-release DIR",
            missing.join(", ")
        );
    }
    Ok(digests)
}

/// 64 lower-case hex digits.
fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with just an ELF header for `machine`.
    fn fake_elf(dir: &Path, name: &str, machine: u16) {
        let mut h = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
        h.resize(18, 0);
        h.extend_from_slice(&machine.to_le_bytes());
        h.resize(64, 0);
        std::fs::write(dir.join(name), h).unwrap();
    }

    #[test]
    fn a_release_is_three_binaries_of_one_architecture() {
        let dir = tempfile::tempdir().unwrap();
        for name in BINARIES {
            fake_elf(dir.path(), name, 183);
        }
        let r = inspect(dir.path()).unwrap();
        assert_eq!(r.arch, Architecture::Arm64);
        assert_eq!(r.binaries.len(), 3);
        let v = r.default_version();
        assert!(
            v.starts_with(&format!("v{}-", env!("CARGO_PKG_VERSION"))),
            "{v}"
        );
        check_version(&v).unwrap();
        // The version follows the content.
        assert_eq!(inspect(dir.path()).unwrap().default_version(), v);
        fake_elf(dir.path(), "airq-worker", 62);
        let e = inspect(dir.path()).unwrap_err().to_string();
        assert!(e.contains("one architecture"), "{e}");
        std::fs::remove_file(dir.path().join("airq-worker")).unwrap();
        let e = format!("{:#}", inspect(dir.path()).unwrap_err());
        assert!(
            e.contains("airq-worker") && e.contains("cargo build"),
            "{e}"
        );
        std::fs::write(dir.path().join("airq-worker"), "#!/bin/sh\n").unwrap();
        let e = inspect(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not an ELF"), "{e}");
    }

    #[test]
    fn this_test_binary_has_a_known_architecture() {
        let me = std::env::current_exe().unwrap();
        let arch = elf_architecture(&me).unwrap();
        let expected = if cfg!(target_arch = "aarch64") {
            Architecture::Arm64
        } else {
            Architecture::X86_64
        };
        assert_eq!(arch, expected);
    }

    #[test]
    fn versions_and_keys() {
        for ok in ["v1", "v0.3.0-0123456789ab", "v2024_01"] {
            check_version(ok).unwrap();
        }
        for bad in ["", "3", "-v", "v 1", "v/1", "v+1", &"v".repeat(65)] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
        assert_eq!(
            key("v3", Architecture::X86_64, "airq-worker"),
            "releases/v3/x86_64/airq-worker"
        );
    }
}
