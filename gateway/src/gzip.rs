//! gzip the gateway makes itself: the web page's files (compressed once
//! at start, `web.rs`), answers kept in the answer cache (compressed once
//! per entry, `direct/`: [`assembled`]) and direct answers streamed to a
//! client that accepts gzip ([`append`]), their whole days of a segment
//! copied from gzip pieces compressed once. Every other answer (a queued
//! result's download, an error) is compressed by the router's
//! compression layer (`api.rs`), which leaves a body already encoded
//! alone.

use airq_core::export::AnswerChunk;
use airq_core::gzip::{Assembler, Piece, PieceKey, PIECE_LEVEL};
use airq_core::store::ReadingStore;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write as _;
use std::ops::Range;
use std::sync::Arc;

/// What the compression layer appends inside the quotes of a gzipped
/// answer's `ETag` (see `api.rs`).
pub const GZIP_TAG_SUFFIX: &str = "-gzip";

/// `--gzip-level` for the router's compression layer.
pub fn layer_level(level: u32) -> tower_http::CompressionLevel {
    tower_http::CompressionLevel::Precise(i32::try_from(level).unwrap_or(6))
}

/// `bytes` gzipped at `level`, if that is smaller. Deterministic (no file
/// name, no time in the header), so every gateway sends the same bytes.
pub fn compressed(bytes: &[u8], level: Compression) -> Option<Vec<u8>> {
    // Grown as it fills: answers compress to a third or less.
    let mut encoder = GzEncoder::new(Vec::new(), level);
    // Writing into a Vec cannot fail.
    encoder.write_all(bytes).ok()?;
    let gzip = encoder.finish().ok()?;
    (gzip.len() < bytes.len()).then_some(gzip)
}

/// The gzip form of `plain`, an answer (at `level`), if smaller: the
/// bytes at each of `pieces`' ranges, a whole section of a segment, are
/// copied from the gzip piece the store keeps, or compressed on their own
/// and given to the store to keep; the rest is compressed as it comes.
/// The same bytes whichever way a piece came (pieces are always
/// compressed at [`PIECE_LEVEL`]).
pub async fn assembled(
    store: &Arc<dyn ReadingStore>,
    plain: Bytes,
    pieces: Vec<(Range<usize>, Arc<PieceKey>)>,
    level: u32,
) -> Option<Bytes> {
    let mut kept = Vec::with_capacity(pieces.len());
    for (_, key) in &pieces {
        kept.push(kept_piece(store, key).await);
    }
    let answer = plain.clone();
    let assembled = tokio::task::spawn_blocking(move || {
        let mut member = Assembler::new(level);
        let mut built = Vec::new();
        let mut at = 0;
        for ((range, key), piece) in pieces.into_iter().zip(kept) {
            let (before, bytes) = (answer.get(at..range.start)?, answer.get(range.clone())?);
            member.plain(before);
            at = range.end;
            if let Some(p) = place_whole(&mut member, bytes, piece) {
                built.push((key, p));
            }
        }
        member.plain(answer.get(at..)?);
        Some((member.finish(), built))
    })
    .await;
    let Ok(Some((gzip, built))) = assembled else {
        tracing::warn!(
            "could not gzip an answer for the cache; the router's layer compresses it per response"
        );
        return None;
    };
    keep(store, built);
    gzip.filter(|g| g.len() < plain.len())
        .map(|g| Bytes::from(g.into_boxed_slice()))
}

/// Appends `chunk` to `member`, an answer gzipped as it streams: the
/// piece it names, kept by the store or compressed now, and given to the
/// store to keep (off the runtime's threads: [`place_whole`]); else its
/// bytes, compressed as they come (a chunk of about 32 KiB, as the
/// router's layer would). `None` if the blocking task was lost (it
/// panicked, or the runtime is shutting down): the answer cannot go on.
pub async fn append(
    mut member: Assembler,
    store: &Arc<dyn ReadingStore>,
    chunk: &AnswerChunk,
) -> Option<Assembler> {
    let Some(key) = &chunk.piece else {
        member.plain(&chunk.bytes);
        return Some(member);
    };
    let kept = kept_piece(store, key).await;
    let bytes = chunk.bytes.clone();
    let (member, built) = tokio::task::spawn_blocking(move || {
        let built = place_whole(&mut member, &bytes, kept);
        (member, built)
    })
    .await
    .ok()?;
    if let Some(piece) = built {
        keep(store, vec![(key.clone(), piece)]);
    }
    Some(member)
}

/// Puts `bytes`, a whole section of a segment, into `member`: as `kept`
/// if that is its piece; else compressed alone, whatever the rest (the
/// bytes a kept piece gives next time), returned for the store to keep;
/// else (it would not compress) as plain bytes. The one way both
/// [`assembled`] and [`append`] place a whole day.
fn place_whole(member: &mut Assembler, bytes: &[u8], kept: Option<Piece>) -> Option<Piece> {
    if kept.is_some_and(|p| member.piece(bytes, &p)) {
        pieces_outcome("hit");
        return None;
    }
    match Piece::compress(bytes, PIECE_LEVEL) {
        Some(p) if member.piece(bytes, &p) => {
            pieces_outcome("built");
            Some(p)
        }
        _ => {
            member.plain(bytes);
            None
        }
    }
}

/// The piece `key` names, if the store keeps one (a store that fails to
/// read it is logged: the chunk is compressed instead).
async fn kept_piece(store: &Arc<dyn ReadingStore>, key: &PieceKey) -> Option<Piece> {
    match store.gzip_piece(key).await {
        Ok(bytes) => bytes.and_then(Piece::from_bytes),
        Err(e) => {
            tracing::warn!(piece = %key.name(), error = %e, "could not read a gzip piece");
            None
        }
    }
}

/// Tasks keeping pieces at once, at most: beyond them a piece is not
/// kept (it is made again by a later answer), so a burst of new days
/// holds a bounded number of pieces in memory on their way to the store.
static KEEPING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// Gives pieces made for an answer to the store to keep, in a task of
/// their own: the answer never waits for them.
fn keep(store: &Arc<dyn ReadingStore>, built: Vec<(Arc<PieceKey>, Piece)>) {
    if built.is_empty() {
        return;
    }
    let Ok(permit) = KEEPING.try_acquire() else {
        return;
    };
    let store = store.clone();
    tokio::spawn(async move {
        let _permit = permit;
        for (key, piece) in built {
            let bytes = Bytes::from(piece.to_bytes());
            if let Err(e) = store.keep_gzip_piece(&key, bytes).await {
                tracing::warn!(piece = %key.name(), error = %e, "could not keep a gzip piece");
            }
        }
    });
}

fn pieces_outcome(outcome: &'static str) {
    metrics::counter!("airq_gzip_pieces_total", "outcome" => outcome).increment(1);
}

/// Whether a request's `Accept-Encoding` takes gzip (RFC 9110 §12.5.3):
/// its `gzip` (or `x-gzip`) entry has a weight above 0, or it has none and
/// its `*` entry does. Codings are case-insensitive; a weight that is not
/// a number from 0 to 1 refuses. No header takes none here: the plain
/// bytes are always right.
pub fn accepts(request: &HeaderMap) -> bool {
    // The highest weight each was given, if named.
    let (mut gzip, mut any) = (None::<f32>, None::<f32>);
    let entries = request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for entry in entries {
        let mut parts = entry.split(';');
        let coding = parts.next().unwrap_or_default().trim();
        let slot = if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            &mut gzip
        } else if coding == "*" {
            &mut any
        } else {
            continue;
        };
        let weight = parts
            .filter_map(|p| p.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, q)| {
                q.trim()
                    .parse::<f32>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q))
            })
            .unwrap_or(0.0);
        *slot = Some(slot.map_or(weight, |w| w.max(weight)));
    }
    gzip.or(any).is_some_and(|w| w > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn accept_encoding_is_parsed_as_rfc_9110_says() {
        let takes = |value: &'static str| accepts(&with(&[value]));
        for yes in [
            "gzip",
            "GZip",
            "x-gzip",
            "deflate, gzip;q=1.0, *;q=0.5",
            "br;q=1, gzip ; Q=0.001",
            "*",
            "identity, *;q=0.1",
            "gzip;q=0, gzip;q=0.5",
        ] {
            assert!(takes(yes), "{yes}");
        }
        for no in [
            "",
            "identity",
            "br, deflate",
            "gzip;q=0",
            "gzip; q=0.000",
            "gzip;q=0, *",
            "*;q=0",
            "gzip;q=2",
            "gzip;q=nope",
            "gzipped",
        ] {
            assert!(!takes(no), "{no}");
        }
        assert!(!accepts(&HeaderMap::new()));
        // Entries may be split over several header lines.
        assert!(accepts(&with(&["br", "gzip"])));
    }

    #[test]
    fn compressed_is_deterministic_and_only_when_smaller() {
        let text = b"timestamp,sensor_id,P1\n".repeat(200);
        let a = compressed(&text, Compression::default()).expect("smaller");
        assert_eq!(Some(a.clone()), compressed(&text, Compression::default()));
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&a[..]), &mut plain)
            .expect("valid gzip");
        assert_eq!(plain, text);
        assert_eq!(compressed(b"x", Compression::default()), None);
    }
}
