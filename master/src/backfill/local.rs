//! Opening an archive file of a local directory (`--source DIR`): only a
//! regular file inside the source directory is read.
//!
//! A directory is a mirror someone else may write into, so a name of the
//! listing may be anything. Reading a FIFO blocks for ever (and with it the
//! day, whose good files are then never stored); a device such as
//! `/dev/zero` is endless; a symbolic link can point anywhere, such as
//! `/etc/passwd`. So:
//!
//! - FIFOs, sockets and devices are **skipped**, and counted by reason,
//!   whatever name or link leads to them; they are never opened, and the
//!   file is opened with `O_NONBLOCK` all the same, so that one swapped in
//!   after the check cannot block the open;
//! - a symbolic link (of the file, or of the day's directory) is followed
//!   only when its target, fully resolved, is inside the source directory
//!   (a mirror may link days or files it holds twice); one that leads out
//!   of it, or nowhere, is **skipped**;
//! - what is opened is checked again on the open handle (`fstat`, and on
//!   Linux the path the kernel resolved, `/proc/self/fd/N`), not only by
//!   path before opening, so that a name swapped between the check and the
//!   open is not read either; the resolved path is opened with
//!   `O_NOFOLLOW`, so a link swapped in for its last part fails the open;
//! - a directory named like a file is an error (the file cannot be read:
//!   its day is not done), as before;
//! - a regular file larger than the download limit
//!   ([`super::archive::MAX_FILE_BYTES`]) is an error, as over HTTP; its
//!   size is checked on the handle before reading, and the read itself is
//!   capped, in case the file grows.
//!
//! A skipped file does not hold its day back: reading it again would not
//! mend it (as for a file with a broken header).

use anyhow::Context as _;
use std::fmt;
use std::fs::{File, FileType};
use std::path::Path;

/// Why a directory entry was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    /// A symbolic link whose target is outside the source directory.
    LinkOutside,
    /// A symbolic link whose target does not exist (or loops).
    LinkBroken,
    /// A named pipe: reading one blocks until something writes to it.
    Fifo,
    /// A Unix socket: not a file to read.
    Socket,
    /// A block or character device (`/dev/zero` is endless).
    Device,
}

impl Skip {
    /// Every reason, in the order summaries list them.
    pub const ALL: [Skip; 5] = [
        Skip::LinkOutside,
        Skip::LinkBroken,
        Skip::Fifo,
        Skip::Socket,
        Skip::Device,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Skip::LinkOutside => "link out of the source",
            Skip::LinkBroken => "broken link",
            Skip::Fifo => "FIFO",
            Skip::Socket => "socket",
            Skip::Device => "device",
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What opening an entry gave.
#[derive(Debug)]
pub enum Opened {
    /// A regular file inside the source, open, and its size.
    File {
        file: File,
        len: u64,
    },
    Skipped(Skip),
}

/// The reason to skip a file of this type, if any.
fn special(t: FileType) -> Option<Skip> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if t.is_fifo() {
            return Some(Skip::Fifo);
        }
        if t.is_socket() {
            return Some(Skip::Socket);
        }
        if t.is_block_device() || t.is_char_device() {
            return Some(Skip::Device);
        }
    }
    #[cfg(not(unix))]
    let _ = t;
    None
}

/// Opens `path`, an entry of a day's directory under `root`, if it is a
/// regular file inside `root`. `root` must be canonical (no links, no `..`).
/// `Err` is a file that should be readable but is not: its day is not done.
pub fn open(root: &Path, path: &Path) -> anyhow::Result<Opened> {
    let shown = path.display();
    // The name itself, not where it leads.
    let named = std::fs::symlink_metadata(path).with_context(|| format!("cannot read {shown}"))?;
    if let Some(skip) = special(named.file_type()) {
        return Ok(Opened::Skipped(skip));
    }
    // Every link on the way resolved: the file's link, and the day's
    // directory if it is one.
    let real = match std::fs::canonicalize(path) {
        Ok(real) => real,
        Err(_) if named.file_type().is_symlink() => return Ok(Opened::Skipped(Skip::LinkBroken)),
        Err(e) => return Err(e).with_context(|| format!("cannot read {shown}")),
    };
    if !real.starts_with(root) {
        return Ok(Opened::Skipped(Skip::LinkOutside));
    }
    let target =
        std::fs::symlink_metadata(&real).with_context(|| format!("cannot read {shown}"))?;
    if let Some(skip) = special(target.file_type()) {
        return Ok(Opened::Skipped(skip));
    }
    if target.is_dir() {
        anyhow::bail!("cannot read {shown}: a directory, not a file");
    }

    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use nix::fcntl::OFlag;
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits());
    }
    let file = options
        .open(&real)
        .with_context(|| format!("cannot read {shown}"))?;
    // What was opened, whatever happened to the names since.
    let opened = file
        .metadata()
        .with_context(|| format!("cannot read {shown}"))?;
    if let Some(skip) = special(opened.file_type()) {
        return Ok(Opened::Skipped(skip));
    }
    if !opened.is_file() {
        anyhow::bail!("cannot read {shown}: not a regular file");
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd as _;
        // Where the kernel found the file. Without /proc (a bare
        // container) the checks by path above stand alone.
        if let Ok(at) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
            if !at.starts_with(root) {
                return Ok(Opened::Skipped(Skip::LinkOutside));
            }
        }
    }
    Ok(Opened::File {
        file,
        len: opened.len(),
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn skipped(root: &Path, path: &Path) -> Option<Skip> {
        match open(root, path).expect("no error") {
            Opened::Skipped(s) => Some(s),
            Opened::File { .. } => None,
        }
    }

    #[test]
    fn only_regular_files_inside_the_root_are_opened() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir
            .path()
            .canonicalize()
            .expect("canonical")
            .join("archive");
        let day = root.join("2025-10-15");
        std::fs::create_dir_all(&day).expect("day");
        let good = day.join("good.csv");
        std::fs::write(&good, "x\n").expect("written");
        std::fs::write(dir.path().join("outside.csv"), "x\n").expect("written");
        let link = |name: &str, to: &Path| {
            let at = day.join(name);
            std::os::unix::fs::symlink(to, &at).expect("a link");
            at
        };

        let Opened::File { len, .. } = open(&root, &good).expect("opens") else {
            panic!("a regular file is read");
        };
        assert_eq!(len, 2);
        assert_eq!(skipped(&root, &link("inside.csv", &good)), None);
        assert_eq!(
            skipped(&root, &link("rel.csv", Path::new("good.csv"))),
            None
        );
        for (name, to) in [
            ("zero.csv", Path::new("/dev/zero")),
            ("passwd.csv", Path::new("/etc/passwd")),
            ("up.csv", Path::new("../../outside.csv")),
        ] {
            assert_eq!(
                skipped(&root, &link(name, to)),
                Some(Skip::LinkOutside),
                "{name}"
            );
        }
        assert_eq!(
            skipped(&root, &link("nowhere.csv", Path::new("missing.csv"))),
            Some(Skip::LinkBroken)
        );
        let fifo = day.join("fifo.csv");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("a FIFO");
        assert_eq!(skipped(&root, &fifo), Some(Skip::Fifo));
        assert_eq!(
            skipped(&root, &link("to-fifo.csv", &fifo)),
            Some(Skip::Fifo)
        );
        let socket = day.join("socket.csv");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("a socket");
        assert_eq!(skipped(&root, &socket), Some(Skip::Socket));

        // A day's directory that is a link out of the source.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).expect("dir");
        std::fs::write(elsewhere.join("f.csv"), "x\n").expect("written");
        std::os::unix::fs::symlink(&elsewhere, root.join("2025-10-16")).expect("a link");
        assert_eq!(
            skipped(&root, &root.join("2025-10-16").join("f.csv")),
            Some(Skip::LinkOutside)
        );

        // A directory named like a file cannot be read.
        let sub = day.join("dir.csv");
        std::fs::create_dir(&sub).expect("dir");
        let err = open(&root, &sub).expect_err("an error");
        assert!(format!("{err:#}").contains("a directory"), "{err:#}");
    }
}
