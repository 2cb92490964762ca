//! gzip answers assembled from pieces compressed once (issue 27): a day's
//! country section of an answer segment, rendered whole in one index and
//! format, is compressed the first time a gzip client is sent it and kept
//! beside its segment ([`PieceKey`] names it); every later gzip answer
//! that holds that whole section copies those bytes instead of compressing
//! them again. The rest of the answer (its head, partial days, filtered
//! rows) is compressed as it comes.
//!
//! **Why the pieces join.** A gzip member (RFC 1952 §2.3) is a header,
//! one deflate stream, the CRC-32 and the length (mod 2³²) of the
//! uncompressed bytes. A deflate stream (RFC 1951 §3.2.3) is a sequence of
//! blocks, only the last with `BFINAL` set. A compressor's sync flush ends
//! its output on a byte boundary with an empty stored block, no block
//! final; a compressor started afresh refers back (§3.2.5: distances up to
//! 32 KiB) only to bytes it was given itself. So the output of fresh
//! compressors, each sync-flushed, concatenated, is one deflate stream of
//! the concatenated inputs; [`Assembler::finish`] ends it with an empty
//! final block (fixed Huffman codes, `BFINAL` 1, `BTYPE` 01, then the
//! 7-bit end-of-block code 0: bits `1 1 0 0000000`, bytes `03 00`) and
//! the trailer, the CRC of the whole computed from the pieces' with
//! `crc32fast`'s combine. pigz builds its parallel streams the same way.
//!
//! **Trust.** A piece is used only when its stored CRC-32 and length are
//! those of the bytes the answer holds there (rendered afresh, as for any
//! client), and its deflate bytes those it was stored with (their own
//! CRC-32): a piece of another renderer's bytes, or damaged, is
//! compressed again instead, never sent.

use crate::aqi::Index;
use crate::export::Format;
use crate::resolution::Resolution;
use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};

/// The most bytes a section may have in its segment to be made a piece
/// (rendered, with its `AQI` and `Range`, a few percent more): what one
/// chunk of an answer asked for in pieces may hold instead of 32 KiB (a
/// streamed one holds three at most: one the store renders, one handed
/// over, one the gateway compresses; a reader may ask for less,
/// [`crate::store::ReadingStore::query_answer_in_pieces`]). A day of one
/// country of the daily series is below it (Germany's 10,000 sensors:
/// about 1 MB of CSV, 3 MB of GeoJSON); larger sections (the hourly
/// series') are compressed as they come.
pub const PIECE_MAX: usize = 4 << 20;

/// The level pieces are compressed at: the best, whatever `--gzip-level`
/// the rest of an answer is compressed at, as a piece is compressed once
/// and copied into every answer that holds it (its bytes are sent many
/// times; its CPU is spent once).
pub const PIECE_LEVEL: u32 = 9;

/// What a piece holds: `country`'s whole section of `series`' `day` as
/// built from `version`, rendered in `format` with `index`; `opens` when
/// it is the answer's first row (a GeoJSON feature without the comma
/// before it; for the other formats always false, as their rows are the
/// same bytes wherever they stand).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PieceKey {
    pub series: Resolution,
    pub day: i64,
    pub version: i64,
    pub country: String,
    pub index: Index,
    pub format: Format,
    pub opens: bool,
}

impl PieceKey {
    /// The piece's name in its segment's pieces: numbers and the
    /// registries' names, the country as the hex of its bytes (it comes
    /// from a feed, so it never reaches a path or a key as text).
    pub fn name(&self) -> String {
        let country: String = self.country.bytes().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}.{}.{}.{country}.{}.{}.{}.gzp",
            self.series.name(),
            self.day,
            self.version,
            self.index.name(),
            self.format.name(),
            if self.opens { "first" } else { "next" },
        )
    }
}

/// The first bytes of a stored piece.
const MAGIC: &[u8; 8] = b"AIRQGZP2";

/// A section's bytes compressed on their own: raw deflate from a fresh
/// compressor, sync-flushed, with the CRC-32 and length of what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub crc: u32,
    pub len: u64,
    pub deflate: Bytes,
}

impl Piece {
    /// `plain` compressed at `level` (1 to 9). `None` only if the
    /// compressor fails, which it does not on memory.
    pub fn compress(plain: &[u8], level: u32) -> Option<Piece> {
        let mut c = Compress::new(Compression::new(level), false);
        let mut out = Vec::with_capacity(plain.len() / 3 + 64);
        deflate(&mut c, plain, &mut out, FlushCompress::Sync)?;
        Some(Piece {
            crc: crc32fast::hash(plain),
            len: plain.len() as u64,
            deflate: Bytes::from(out),
        })
    }

    /// As stored: the magic; the CRC-32 and the length of what it holds
    /// and the CRC-32 of its deflate bytes (little-endian); the deflate
    /// bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD + self.deflate.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.crc.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&self.deflate).to_le_bytes());
        out.extend_from_slice(&self.deflate);
        out
    }

    /// A stored piece; `None` for bytes that are not one, or whose deflate
    /// bytes are not those it was stored with (a damaged file is compressed
    /// again, never sent).
    pub fn from_bytes(bytes: Bytes) -> Option<Piece> {
        if bytes.get(..8)? != MAGIC {
            return None;
        }
        let crc = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?);
        let len = u64::from_le_bytes(bytes.get(12..20)?.try_into().ok()?);
        let sealed = u32::from_le_bytes(bytes.get(20..HEAD)?.try_into().ok()?);
        let deflate = bytes.slice(HEAD..);
        (crc32fast::hash(&deflate) == sealed).then_some(Piece { crc, len, deflate })
    }
}

/// Bytes before a stored piece's deflate bytes.
const HEAD: usize = 8 + 4 + 8 + 4;

/// Compresses `input` into `out` (grown as needed) with `flush`; `None`
/// if the compressor fails.
fn deflate(
    c: &mut Compress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    flush: FlushCompress,
) -> Option<()> {
    loop {
        out.reserve(input.len() / 2 + 1024);
        let before = c.total_in();
        c.compress_vec(input, out, flush).ok()?;
        let used = usize::try_from(c.total_in() - before).ok()?;
        input = input.get(used..)?;
        // Done when all the input is in and the compressor left output
        // space unused: it had nothing more to write (zlib's rule for a
        // completed flush).
        if input.is_empty() && out.len() < out.capacity() {
            return Some(());
        }
    }
}

/// One gzip member built from plain bytes, compressed as they come, and
/// pieces, copied.
pub struct Assembler {
    out: Vec<u8>,
    crc: crc32fast::Hasher,
    len: u64,
    level: Compression,
    /// The compressor of the plain bytes since the last piece.
    running: Option<Compress>,
    failed: bool,
}

impl Assembler {
    /// A member whose plain bytes are compressed at `level` (1 to 9).
    pub fn new(level: u32) -> Assembler {
        // RFC 1952 §2.3: ID1 ID2, CM 8 (deflate), no flags, no time, XFL 0,
        // OS 255 (unknown): every gateway sends the same bytes.
        let out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        Assembler {
            out,
            crc: crc32fast::Hasher::new(),
            len: 0,
            level: Compression::new(level),
            running: None,
            failed: false,
        }
    }

    /// Appends `bytes`, compressed.
    pub fn plain(&mut self, bytes: &[u8]) {
        let level = self.level;
        let c = self
            .running
            .get_or_insert_with(|| Compress::new(level, false));
        if deflate(c, bytes, &mut self.out, FlushCompress::None).is_none() {
            self.failed = true;
        }
        self.crc.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Appends `plain` as `piece` holds it compressed, when it does (its
    /// CRC-32 and length are `plain`'s); else nothing, and says so.
    pub fn piece(&mut self, plain: &[u8], piece: &Piece) -> bool {
        let mut crc = crc32fast::Hasher::new();
        crc.update(plain);
        if piece.len != plain.len() as u64 || crc.clone().finalize() != piece.crc {
            return false;
        }
        self.end_running();
        self.out.extend_from_slice(&piece.deflate);
        self.crc.combine(&crc);
        self.len += plain.len() as u64;
        true
    }

    /// Ends the running compressor's output on a byte boundary (a sync
    /// flush); what follows starts afresh.
    fn end_running(&mut self) {
        if let Some(mut c) = self.running.take() {
            if deflate(&mut c, &[], &mut self.out, FlushCompress::Sync).is_none() {
                self.failed = true;
            }
        }
    }

    /// The member's bytes made so far, taken (for an answer sent as it
    /// is made): the header first, then compressed bytes as the running
    /// compressor gives them out and whole pieces.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// The member (what [`Assembler::take`] has not taken of it): the
    /// empty final block and the trailer after what was appended. `None`
    /// if a compressor failed.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        self.end_running();
        if self.failed {
            return None;
        }
        self.out.extend_from_slice(&[0x03, 0x00]);
        self.out
            .extend_from_slice(&self.crc.clone().finalize().to_le_bytes());
        // ISIZE: the length modulo 2^32 (RFC 1952 §2.3.1).
        self.out
            .extend_from_slice(&((self.len & 0xffff_ffff) as u32).to_le_bytes());
        Some(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("a valid gzip member");
        out
    }

    fn rows(n: usize, tag: &str) -> Vec<u8> {
        (0..n)
            .map(|i| {
                format!(
                    "{i},2026-12-07 10:{:02}:00,{tag},48.{i:04},9.{:04},12.5\n",
                    i % 60,
                    i * 7
                )
            })
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn plain_bytes_and_pieces_make_one_member_of_their_concatenation() {
        let (head, a, b, tail) = (
            b"id,timestamp\n".to_vec(),
            rows(5000, "A"),
            rows(3000, "B"),
            rows(7, "C"),
        );
        let (pa, pb) = (
            Piece::compress(&a, 6).unwrap(),
            Piece::compress(&b, 6).unwrap(),
        );
        let mut g = Assembler::new(6);
        g.plain(&head);
        assert!(g.piece(&a, &pa));
        g.plain(&tail);
        assert!(g.piece(&b, &pb));
        assert!(g.piece(&b, &pb), "a piece twice in a row");
        let member = g.finish().unwrap();
        let whole = [&head[..], &a, &tail, &b, &b].concat();
        assert_eq!(gunzip(&member), whole);
        // The trailer, worked out from RFC 1952: the CRC-32 and the
        // length of the whole, little-endian.
        let n = member.len();
        assert_eq!(member[n - 8..n - 4], crc32fast::hash(&whole).to_le_bytes());
        assert_eq!(member[n - 4..], (whole.len() as u32).to_le_bytes());
        // A piece is copied, not compressed again.
        assert!(member
            .windows(pa.deflate.len())
            .any(|w| w == &pa.deflate[..]));
    }

    #[test]
    fn answers_of_pieces_alone_plain_alone_or_nothing_are_members() {
        let a = rows(100, "A");
        let pa = Piece::compress(&a, 1).unwrap();
        let mut g = Assembler::new(1);
        assert!(g.piece(&a, &pa));
        assert_eq!(gunzip(&g.finish().unwrap()), a);
        let mut g = Assembler::new(9);
        g.plain(&a);
        assert_eq!(gunzip(&g.finish().unwrap()), a);
        assert_eq!(gunzip(&Assembler::new(6).finish().unwrap()), b"");
        let empty = Piece::compress(b"", 6).unwrap();
        let mut g = Assembler::new(6);
        assert!(g.piece(b"", &empty));
        assert_eq!(gunzip(&g.finish().unwrap()), b"");
    }

    #[test]
    fn a_member_taken_as_it_is_made_is_the_same_member() {
        let (a, b) = (rows(4000, "A"), rows(2000, "B"));
        let pb = Piece::compress(&b, 6).unwrap();
        let whole = {
            let mut g = Assembler::new(6);
            g.plain(&a);
            assert!(g.piece(&b, &pb));
            g.plain(&a);
            g.finish().unwrap()
        };
        let mut g = Assembler::new(6);
        let mut sent = g.take();
        for part in a.chunks(32 * 1024) {
            g.plain(part);
            sent.extend(g.take());
        }
        assert!(g.piece(&b, &pb));
        sent.extend(g.take());
        g.plain(&a);
        sent.extend(g.finish().unwrap());
        assert_eq!(gunzip(&sent), [&a[..], &b, &a].concat());
        assert_eq!(gunzip(&whole), gunzip(&sent));
    }

    #[test]
    fn a_piece_of_other_bytes_is_refused() {
        let (a, b) = (rows(100, "A"), rows(100, "B"));
        let pa = Piece::compress(&a, 6).unwrap();
        let mut g = Assembler::new(6);
        assert!(!g.piece(&b, &pa), "same length, another CRC");
        assert!(!g.piece(&a[1..], &pa), "another length");
        g.plain(&b);
        assert_eq!(gunzip(&g.finish().unwrap()), b);
    }

    #[test]
    fn pieces_are_stored_and_read_back_and_anything_else_is_not_one() {
        let p = Piece::compress(&rows(10, "A"), 6).unwrap();
        assert_eq!(
            Piece::from_bytes(Bytes::from(p.to_bytes())),
            Some(p.clone())
        );
        assert_eq!(
            Piece::from_bytes(Bytes::from_static(b"AIRQGZP2short")),
            None
        );
        assert_eq!(Piece::from_bytes(Bytes::from_static(b"")), None);
        let mut other = p.to_bytes();
        other[0] = b'X';
        assert_eq!(Piece::from_bytes(Bytes::from(other)), None);
        // A header intact, a deflate byte changed or one missing.
        let mut damaged = p.to_bytes();
        let last = damaged.len() - 1;
        damaged[last] ^= 0x40;
        assert_eq!(Piece::from_bytes(Bytes::from(damaged)), None);
        let mut short = p.to_bytes();
        short.pop();
        assert_eq!(Piece::from_bytes(Bytes::from(short)), None);
    }

    #[test]
    fn a_piece_name_holds_no_text_from_a_feed() {
        let key = PieceKey {
            series: Resolution::Day,
            day: 20_000,
            version: 7,
            country: "../D E".into(),
            index: Index::UsEpa,
            format: Format::Geojson,
            opens: true,
        };
        assert_eq!(
            key.name(),
            "day.20000.7.2e2e2f442045.us-epa.geojson.first.gzp"
        );
    }
}
