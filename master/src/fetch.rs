//! Getting the feed document: a file opened to be read as it is parsed
//! ([`FeedFile`]), or a download over HTTP(S) with gzip, a time limit and
//! retries with exponential backoff on transient failures. The feed's
//! download is spooled to an unnamed temporary file ([`spool_if_changed`]) and then
//! read as a file, so that ingestion's memory does not grow with the feed;
//! the archive's small files are held in memory ([`get`]).

use crate::cli::{FetchArgs, RetryArgs};
use crate::progress;
use anyhow::{bail, Context as _};
use reqwest::{header, StatusCode, Url};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use tracing::{debug, info, warn};

/// Longest wait between two attempts, whatever the backoff or the server's
/// `Retry-After` says.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// Most bytes reserved up front for a file read whole; a larger one still
/// reads, the buffer just grows.
const MAX_PREALLOCATION: u64 = 64 << 20;

/// Largest feed accepted. The real feeds are tens of MB; a server sending
/// more than this is broken (or hostile), and reading on would exhaust
/// memory instead of failing with a clear error.
pub const MAX_FEED_BYTES: usize = 2 << 30;

/// Where a feed comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Http(Url),
    File(PathBuf),
}

impl Source {
    /// `http://` and `https://` are URLs, `file://` and anything else a path.
    pub fn parse(s: &str) -> anyhow::Result<Source> {
        let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let url = Url::parse(s).with_context(|| format!("invalid URL {s:?}"))?;
            return Ok(Source::Http(url));
        }
        if lower.starts_with("file://") {
            return Ok(Source::File(PathBuf::from(&s[7..])));
        }
        if s.is_empty() {
            bail!("the source is empty: give a URL or a file path");
        }
        Ok(Source::File(PathBuf::from(s)))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Http(url) => write!(f, "{url}"),
            Source::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// How hard to try.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    pub retries: u32,
    pub retry_base: Duration,
    pub timeout: Duration,
}

impl From<&FetchArgs> for FetchPolicy {
    fn from(a: &FetchArgs) -> Self {
        FetchPolicy::from(&a.retry)
    }
}

impl From<&RetryArgs> for FetchPolicy {
    fn from(a: &RetryArgs) -> Self {
        FetchPolicy {
            retries: a.retries,
            retry_base: a.retry_base,
            timeout: a.fetch_timeout,
        }
    }
}

impl FetchPolicy {
    /// `base × 2^attempt`, capped.
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.retry_base
            .checked_mul(factor)
            .unwrap_or(MAX_RETRY_DELAY)
            .min(MAX_RETRY_DELAY)
    }
}

/// Where a download's bytes go: memory (the archive's small files) or a
/// spool file (the feed). A retry starts it again.
trait Sink: Send {
    fn restart(&mut self) -> std::io::Result<()>;
    fn append(&mut self, chunk: &[u8]) -> std::io::Result<()>;
    fn len(&self) -> u64;
}

impl Sink for Vec<u8> {
    fn restart(&mut self) -> std::io::Result<()> {
        self.clear();
        Ok(())
    }

    fn append(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.extend_from_slice(chunk);
        Ok(())
    }

    fn len(&self) -> u64 {
        Vec::len(self) as u64
    }
}

/// An unnamed temporary file and how much of it the current attempt wrote.
/// Its writes are plain blocking ones: chunks of a few KB into the page
/// cache, on the runtime of a batch job with nothing else to serve.
struct SpoolFile {
    file: std::fs::File,
    len: u64,
}

impl Sink for SpoolFile {
    fn restart(&mut self) -> std::io::Result<()> {
        use std::io::Seek as _;
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.len = 0;
        Ok(())
    }

    fn append(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        std::io::Write::write_all(&mut self.file, chunk)?;
        self.len += chunk.len() as u64;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}

/// What a server said identifies the version of a document it sent
/// (`ETag`, `Last-Modified`), sent back on the next GET of it
/// (`If-None-Match`, `If-Modified-Since`) so that an unchanged feed costs a
/// 304 and no download. Held in memory by a scheduled run, not on disk: a
/// restarted master downloads once in full.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<header::HeaderValue>,
    pub last_modified: Option<header::HeaderValue>,
}

impl Validators {
    fn of(headers: &header::HeaderMap) -> Validators {
        Validators {
            etag: headers.get(header::ETAG).cloned(),
            last_modified: headers.get(header::LAST_MODIFIED).cloned(),
        }
    }
}

/// A conditional download's outcome.
pub enum Spooled {
    /// The document, and the validators of this version.
    Changed(FeedFile, Validators),
    /// 304: the version `validators` named is still current.
    NotModified,
}

/// Downloads the feed at `url` into an unnamed temporary file (in the
/// system's temporary directory, `TMPDIR`; deleted when closed, also if
/// the process dies), with [`get`]'s retries and the feed's limit, and
/// returns it open for reading from its start. Memory holds one chunk at a
/// time; the disk holds at most [`MAX_FEED_BYTES`].
///
/// Conditional on `validators` (none: an ordinary GET).
pub async fn spool_if_changed(
    url: &Url,
    policy: &FetchPolicy,
    validators: &Validators,
) -> anyhow::Result<Spooled> {
    let client = http_client(policy)?;
    let file = tempfile::tempfile().context(
        "cannot create a temporary file for the download (set TMPDIR to a writable directory)",
    )?;
    let mut sink = SpoolFile { file, len: 0 };
    let download = Download {
        limit: MAX_FEED_BYTES,
        progress: true,
    };
    let fresh = match fetch_into(&client, url, policy, download, validators, &mut sink).await? {
        Fetched::NotModified => return Ok(Spooled::NotModified),
        Fetched::Body(fresh) => fresh,
    };
    let SpoolFile { mut file, len } = sink;
    std::io::Seek::rewind(&mut file).context("cannot read back the downloaded feed")?;
    Ok(Spooled::Changed(
        FeedFile::from_file(file, url.to_string(), MAX_FEED_BYTES, Some(len)),
        fresh,
    ))
}

/// What a successful attempt got.
enum Fetched {
    /// The body (in the sink), with its validators.
    Body(Validators),
    /// 304 to a conditional GET.
    NotModified,
}

/// Reads the whole document into one buffer.
pub async fn fetch(source: &Source, policy: &FetchPolicy) -> anyhow::Result<Vec<u8>> {
    match source {
        Source::File(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || read_file(&path, MAX_FEED_BYTES))
                .await
                .context("the reading thread failed")?
        }
        Source::Http(url) => fetch_http(url, policy).await,
    }
}

/// A feed file open for reading, refused past a limit as a download is: by
/// its size when opened (a sparse file of gigabytes costs nothing to
/// refuse), and as it is read (a pipe, such as `/dev/stdin`, or a file still
/// growing, has no size to check first): a read that would pass the limit
/// fails with [`FeedFile::too_large`]'s message.
pub struct FeedFile {
    file: std::fs::File,
    /// The file's path, or the URL it was downloaded from.
    name: String,
    limit: u64,
    read: u64,
    /// The file's size when opened, if it is a regular file.
    pub size: Option<u64>,
}

impl FeedFile {
    /// Opens `path`, refusing a regular file over `limit` bytes.
    pub fn open(path: &std::path::Path, limit: usize) -> anyhow::Result<FeedFile> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot read the feed file {}", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot read the feed file {}", path.display()))?;
        let opened = FeedFile::from_file(
            file,
            path.display().to_string(),
            limit,
            meta.is_file().then_some(meta.len()),
        );
        if opened.size.is_some_and(|size| size > opened.limit) {
            return Err(opened.too_large());
        }
        Ok(opened)
    }

    /// An open file (`size`: its length, if known), read under `limit`.
    fn from_file(file: std::fs::File, name: String, limit: usize, size: Option<u64>) -> FeedFile {
        FeedFile {
            file,
            name,
            limit: limit as u64,
            read: 0,
            size,
        }
    }

    /// Makes the file one that can be read again: a pipe (no size) is
    /// copied, under the limit, into a temporary file (deleted when
    /// closed), which it reads from then on.
    pub fn spool(&mut self) -> std::io::Result<()> {
        if self.size.is_some() {
            return Ok(());
        }
        let mut copy = tempfile::tempfile()?;
        let len = std::io::copy(self, &mut copy)?;
        std::io::Seek::rewind(&mut copy)?;
        self.file = copy;
        self.size = Some(len);
        self.read = 0;
        Ok(())
    }

    /// Goes back to the start, to read the file again.
    pub fn rewind(&mut self) -> std::io::Result<()> {
        use std::io::Seek;
        self.file.rewind()?;
        self.read = 0;
        Ok(())
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    fn over_limit(&self) -> bool {
        self.read > self.limit
    }

    fn too_large(&self) -> anyhow::Error {
        anyhow::anyhow!(
            "the feed file {} is larger than {} MiB, the limit on a feed; refusing to read it",
            self.name,
            self.limit >> 20
        )
    }
}

impl std::io::Read for FeedFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.over_limit() {
            return Err(std::io::Error::other(self.too_large()));
        }
        // One byte past the limit tells a file of exactly `limit` bytes from
        // a longer one.
        let room = usize::try_from(self.limit + 1 - self.read).unwrap_or(usize::MAX);
        let len = buf.len().min(room);
        let n = self.file.read(&mut buf[..len])?;
        self.read += n as u64;
        if self.over_limit() {
            return Err(std::io::Error::other(self.too_large()));
        }
        Ok(n)
    }
}

/// Reads a feed file whole, refusing one over `limit` bytes (see
/// [`FeedFile`]).
fn read_file(path: &std::path::Path, limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut file = FeedFile::open(path, limit)?;
    let reserve = file.size.unwrap_or(0);
    let mut body = Vec::with_capacity(reserve.min(MAX_PREALLOCATION) as usize);
    if let Err(e) = std::io::Read::read_to_end(&mut file, &mut body) {
        if file.over_limit() {
            return Err(file.too_large());
        }
        return Err(e).with_context(|| format!("cannot read the feed file {}", path.display()));
    }
    Ok(body)
}

/// One failed attempt, and whether another may succeed.
#[derive(Debug)]
enum AttemptError {
    Transport(reqwest::Error),
    /// The body passed its limit; not retried.
    TooLarge(usize),
    /// The download could not be written where it is kept (a full disk);
    /// not retried.
    Sink(std::io::Error),
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
}

impl AttemptError {
    fn is_transient(&self) -> bool {
        match self {
            // A body or decode error is a download cut short (with gzip on,
            // reqwest reports the broken stream as a decode error).
            AttemptError::Transport(e) => {
                e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() || e.is_decode()
            }
            AttemptError::TooLarge(_) | AttemptError::Sink(_) => false,
            AttemptError::Status { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
        }
    }
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // `{:#}`-style chain: reqwest's top-level message alone ("error
            // sending request") hides the cause.
            AttemptError::Transport(e) => {
                write!(f, "{e}")?;
                let mut cause = std::error::Error::source(e);
                while let Some(c) = cause {
                    write!(f, ": {c}")?;
                    cause = c.source();
                }
                Ok(())
            }
            AttemptError::Status { status, .. } => write!(f, "the server answered {status}"),
            AttemptError::TooLarge(limit) => write!(
                f,
                "the body is larger than {} MiB; refusing to read further",
                limit >> 20
            ),
            AttemptError::Sink(e) => write!(f, "cannot keep the download: {e}"),
        }
    }
}

/// What one download may hold and show.
#[derive(Debug, Clone, Copy)]
pub struct Download {
    /// Largest body accepted; a larger one fails, without a retry.
    pub limit: usize,
    /// A download bar on stderr: for the one large feed document, not for
    /// the archive's thousands of small files (their run has its own bar).
    pub progress: bool,
}

/// The HTTP client of a run: gzip, the policy's time limits, our user
/// agent. One per run, so that the archive's many files share connections.
pub fn http_client(policy: &FetchPolicy) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .gzip(true)
        .connect_timeout(policy.timeout.min(Duration::from_secs(30)))
        .timeout(policy.timeout)
        .user_agent(concat!("airq-master/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot set up the HTTP client")
}

async fn fetch_http(url: &Url, policy: &FetchPolicy) -> anyhow::Result<Vec<u8>> {
    let client = http_client(policy)?;
    let download = Download {
        limit: MAX_FEED_BYTES,
        progress: true,
    };
    get(&client, url, policy, download).await
}

/// GETs `url` whole into memory, retrying transient failures (connect
/// errors, timeouts, cut downloads, 5xx, 429, 408) with exponential
/// backoff; a longer `Retry-After` wins.
pub async fn get(
    client: &reqwest::Client,
    url: &Url,
    policy: &FetchPolicy,
    download: Download,
) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    match fetch_into(
        client,
        url,
        policy,
        download,
        &Validators::default(),
        &mut body,
    )
    .await?
    {
        Fetched::Body(_) => Ok(body),
        Fetched::NotModified => bail!("{url} answered 304 Not Modified to an unconditional GET"),
    }
}

/// [`get`], into `sink`, which each attempt starts again.
async fn fetch_into(
    client: &reqwest::Client,
    url: &Url,
    policy: &FetchPolicy,
    download: Download,
    validators: &Validators,
    sink: &mut dyn Sink,
) -> anyhow::Result<Fetched> {
    let attempts = policy.retries.saturating_add(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match attempt_http(client, url, download, validators, sink).await {
            Ok(fetched) => return Ok(fetched),
            Err(e) if e.is_transient() && attempt < attempts => {
                let mut delay = policy.backoff(attempt - 1);
                if let AttemptError::Status {
                    retry_after: Some(asked),
                    ..
                } = e
                {
                    delay = delay.max(asked).min(MAX_RETRY_DELAY);
                }
                warn!(
                    %url,
                    attempt,
                    of = attempts,
                    retry_in_ms = delay.as_millis() as u64,
                    error = %e,
                    "fetch failed; retrying"
                );
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                let tries = if attempt == 1 {
                    "1 attempt".to_owned()
                } else {
                    format!("{attempt} attempts")
                };
                let kind = if e.is_transient() {
                    "giving up"
                } else {
                    "not retrying"
                };
                bail!("cannot fetch {url} ({tries}, {kind}): {e}");
            }
        }
    }
}

async fn attempt_http(
    client: &reqwest::Client,
    url: &Url,
    download: Download,
    validators: &Validators,
    sink: &mut dyn Sink,
) -> Result<Fetched, AttemptError> {
    sink.restart().map_err(AttemptError::Sink)?;
    let mut request = client.get(url.clone());
    if let Some(etag) = &validators.etag {
        request = request.header(header::IF_NONE_MATCH, etag.clone());
    }
    if let Some(modified) = &validators.last_modified {
        request = request.header(header::IF_MODIFIED_SINCE, modified.clone());
    }
    let mut resp = request.send().await.map_err(AttemptError::Transport)?;
    let status = resp.status();
    if status == StatusCode::NOT_MODIFIED && validators != &Validators::default() {
        return Ok(Fetched::NotModified);
    }
    let fresh = Validators::of(resp.headers());
    if !status.is_success() {
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Err(AttemptError::Status {
            status,
            retry_after,
        });
    }
    // With gzip on the wire the decoded length is unknown (None here).
    let length = resp.content_length();
    let pb = if download.progress {
        progress::download(length)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let downloaded = async {
        while let Some(chunk) = resp.chunk().await.map_err(AttemptError::Transport)? {
            if sink.len() + chunk.len() as u64 > download.limit as u64 {
                return Err(AttemptError::TooLarge(download.limit));
            }
            sink.append(&chunk).map_err(AttemptError::Sink)?;
            pb.inc(chunk.len() as u64);
        }
        Ok(())
    }
    .await;
    // Cleared on every path, so a retry does not start under a stale bar.
    pb.finish_and_clear();
    downloaded?;
    if download.progress {
        info!(%url, bytes = sink.len(), "downloaded");
    } else {
        debug!(%url, bytes = sink.len(), "downloaded");
    }
    Ok(Fetched::Body(fresh))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(
            Source::parse("https://example.org/a.json").ok(),
            Url::parse("https://example.org/a.json")
                .ok()
                .map(Source::Http)
        );
        assert_eq!(
            Source::parse("HTTP://example.org/").ok(),
            Url::parse("http://example.org/").ok().map(Source::Http)
        );
        assert_eq!(
            Source::parse("data/x.json").ok(),
            Some(Source::File("data/x.json".into()))
        );
        assert_eq!(
            Source::parse("file:///tmp/x.json").ok(),
            Some(Source::File("/tmp/x.json".into()))
        );
        assert!(Source::parse("").is_err());
        assert!(Source::parse("http://").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn feed_files_are_capped_like_downloads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("feed.json");
        std::fs::write(&path, b"[1234567]").expect("written");
        assert_eq!(read_file(&path, 9).expect("at the limit"), b"[1234567]");
        let err = read_file(&path, 8).expect_err("over the limit");
        assert!(err.to_string().contains("feed.json"), "{err}");
        // Without a size to check first, the read itself is capped.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("a FIFO");
        let writer = std::thread::spawn({
            let fifo = fifo.clone();
            move || {
                // The reader stops at the limit; a closed pipe is expected.
                let _ = std::fs::write(&fifo, vec![b' '; 1 << 20]);
            }
        });
        let err = read_file(&fifo, 1000).expect_err("over the limit");
        assert!(err.to_string().contains("refusing to read it"), "{err}");
        drop(err);
        writer.join().expect("the writer");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = FetchPolicy {
            retries: 3,
            retry_base: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(p.backoff(0), Duration::from_millis(100));
        assert_eq!(p.backoff(1), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(800));
        assert_eq!(p.backoff(40), MAX_RETRY_DELAY);
    }
}
