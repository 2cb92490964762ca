//! A direct answer as an HTTP response: streamed straight from the reading
//! store, or already in memory (from the answer cache).
//!
//! A streamed answer awaits its first chunk before the response starts, so
//! a store that is down answers 503. After that the status is sent: a store
//! failure mid-stream is logged and the body aborted (the connection is cut,
//! so the client sees a truncated transfer rather than a short answer that
//! looks complete). Every format streams alike: the store hands chunks of
//! about 32 KiB already rendered, and at most one is held here at a time.
//! For a client that accepts gzip the answer is gzipped here instead of by
//! the router's layer, and a chunk may be a whole day of a segment (at
//! most `airq_core::gzip::PIECE_MAX`), sent as its gzip piece
//! (`crate::gzip::append`).
//!
//! The rest of a streamed answer is read from the store by a task of its
//! own, which holds the direct slot and the store's read, and hands the
//! body one chunk at a time: each chunk must be taken within the send
//! timeout or the task gives up, releasing both at once. The body then
//! ends with an error, so the connection is cut once the client has taken
//! what was already handed over (the connection's own send timeout cuts it
//! sooner if it takes nothing at all). A body cannot do this by itself: it
//! runs only when polled, and a client that stops reading stops the polls.

use super::answer_cache::Answer;
use crate::answer_headers::{self, Label};
use crate::error::ApiError;
use airq_core::export::AnswerStream;
use airq_core::gzip::Assembler;
use airq_core::store::ReadingStore;
use airq_core::BackendError;
use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// What the store-reading task hands the body.
enum Piece {
    Chunk(Bytes),
    /// The store failed mid-answer.
    Failed(io::Error),
    /// The answer is complete.
    End,
}

/// How a streamed answer is encoded: as the store renders it (the
/// router's layer compresses it for a client that accepts gzip), or
/// gzipped here, its whole days of a segment from gzip pieces
/// (`crate::gzip::append`): asked of the store in pieces for that.
pub enum Encoding {
    AsRendered,
    Gzip {
        store: Arc<dyn ReadingStore>,
        level: u32,
    },
}

/// Answers with `chunks` (the store's answer, labelled `label`), holding
/// `permit` (its direct slot) until the body has been handed over, the
/// client went away, or the client took no chunk for `send_timeout`.
pub async fn streamed(
    mut chunks: AnswerStream,
    label: &Label,
    permit: OwnedSemaphorePermit,
    send_timeout: Duration,
    max_rows: u64,
    encoding: Encoding,
) -> Result<Response, ApiError> {
    let first = match chunks.next().await {
        Some(Ok(chunk)) => chunk,
        Some(Err(e)) => return Err(ApiError::unavailable(super::STORE_DOWN)(e)),
        None => {
            return Err(ApiError::unavailable(super::STORE_DOWN)(
                BackendError::Corrupt("the store ended an answer before its header".into()),
            ))
        }
    };
    let gzip = matches!(encoding, Encoding::Gzip { .. });
    // One chunk in hand at a time: the wait for room is the wait for the
    // client to take the previous one.
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        // The slot is held for as long as this task reads the store.
        let _slot = permit;
        let mut member = match &encoding {
            Encoding::Gzip { level, .. } => Some(Assembler::new(*level)),
            Encoding::AsRendered => None,
        };
        let mut rows = 0;
        let mut first = Some(first);
        loop {
            let (next, is_first) = match first.take() {
                Some(chunk) => (Some(Ok(chunk)), true),
                None => (chunks.next().await, false),
            };
            // Cut once it passes the row limit mid-stream (the first chunk
            // is sent whatever its rows, as ever).
            let over = matches!(&next, Some(Ok(c)) if !is_first && rows + c.rows > max_rows);
            if let (Some(Ok(c)), false) = (&next, over) {
                rows += c.rows;
            }
            // What this step hands the body, in order.
            let pieces = match next {
                Some(Ok(chunk)) if !over => match (member.take(), &encoding) {
                    (Some(m), Encoding::Gzip { store, .. }) => {
                        match crate::gzip::append(m, store, &chunk).await {
                            Some(mut m) => {
                                let out = frames(m.take());
                                member = Some(m);
                                out
                            }
                            None => {
                                tracing::error!("gzipping a direct answer failed; cutting it");
                                vec![Piece::Failed(io::Error::other("gzip failed"))]
                            }
                        }
                    }
                    _ => vec![Piece::Chunk(chunk.bytes)],
                },
                Some(Ok(_)) => {
                    tracing::warn!(
                        max_rows,
                        "a direct answer passed --max-result-rows mid-stream; cutting it"
                    );
                    vec![Piece::Failed(io::Error::other(
                        "the answer passed --max-result-rows",
                    ))]
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, "direct answer aborted mid-stream");
                    vec![Piece::Failed(io::Error::other(e.to_string()))]
                }
                // The member's end, then the answer's.
                None => match member.take().map(Assembler::finish) {
                    None => vec![Piece::End],
                    Some(Some(tail)) => {
                        let mut out = frames(tail);
                        out.push(Piece::End);
                        out
                    }
                    Some(None) => vec![Piece::Failed(io::Error::other("gzip failed"))],
                },
            };
            if pieces.is_empty() && tx.is_closed() {
                // The compressor holds all of it so far, and the client
                // went away.
                return;
            }
            for piece in pieces {
                let last = !matches!(piece, Piece::Chunk(_));
                match tokio::time::timeout(send_timeout, tx.send(piece)).await {
                    Ok(Ok(())) if !last => {}
                    // Done, or the body is gone (the client went away).
                    Ok(_) => return,
                    Err(_) => {
                        tracing::warn!(timeout = ?send_timeout,
                            "a client took no chunk of a direct answer within --send-timeout; \
                             releasing its slot and cutting the answer");
                        return;
                    }
                }
            }
        }
    });
    let body = futures::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Some(Piece::Chunk(bytes)) => Some((Ok(bytes), Some(rx))),
            // The status has been sent and cannot change any more: ending
            // the body with an error makes the server cut the connection,
            // so the client sees a truncated transfer rather than a short
            // answer that looks complete.
            Some(Piece::Failed(e)) => Some((Err(e), None)),
            Some(Piece::End) => None,
            // The task gave up on a client too slow to take the answer.
            None => Some((
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client took no chunk within --send-timeout",
                )),
                None,
            )),
        }
    })
    // An unfold panics if polled again after its end; a body may be.
    .fuse();
    let mut response = Response::new(Body::from_stream(body));
    label.apply(&mut response);
    let h = response.headers_mut();
    if gzip {
        // Already encoded: the router's compression layer leaves it.
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        h.insert(header::VARY, header::ACCEPT_ENCODING.into());
    }
    h.insert(answer_headers::ANSWER, HeaderValue::from_static("direct"));
    Ok(response)
}

/// Bytes of gzip handed to the body at a time: the store's own chunk
/// size, so a client must take as much per `--send-timeout` either way.
const FRAME: usize = airq_core::export::CHUNK;

/// `bytes` as chunks of at most [`FRAME`] bytes (none for none).
fn frames(bytes: Vec<u8>) -> Vec<Piece> {
    let bytes = Bytes::from(bytes);
    (0..bytes.len())
        .step_by(FRAME)
        .map(|at| Piece::Chunk(bytes.slice(at..(at + FRAME).min(bytes.len()))))
        .collect()
}

/// Whether an in-memory answer was found in the answer cache or computed
/// for this request (and its concurrent twins).
#[derive(Debug, Clone, Copy)]
pub enum Cache {
    Hit,
    Miss,
}

/// A direct answer already in memory: its gzip form when it has one and
/// the request accepts gzip (`Content-Encoding: gzip`, which the router's
/// compression layer leaves alone), else its bytes. Either way with
/// `Vary: Accept-Encoding`, as the layer gives the answers it sees.
pub fn in_memory(answer: Answer, label: &Label, cache: Cache, gzip: bool) -> Response {
    let gzipped = answer.gzip.filter(|_| gzip);
    let encoded = gzipped.is_some();
    let mut response = Response::new(Body::from(gzipped.unwrap_or(answer.plain)));
    label.apply(&mut response);
    let h = response.headers_mut();
    if encoded {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    // Either form may differ by Accept-Encoding (this one's, or the
    // compression layer's).
    h.insert(header::VARY, header::ACCEPT_ENCODING.into());
    h.insert(answer_headers::ANSWER, HeaderValue::from_static("direct"));
    let cache = match cache {
        Cache::Hit => "hit",
        Cache::Miss => "miss",
    };
    h.insert(answer_headers::CACHE, HeaderValue::from_static(cache));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_handed_over_in_frames_of_32_kib_at_most() {
        let bytes: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();
        let sizes: Vec<usize> = frames(bytes.clone())
            .into_iter()
            .map(|p| match p {
                Piece::Chunk(b) => b.len(),
                _ => panic!("a frame is a chunk"),
            })
            .collect();
        assert_eq!(sizes, [32 * 1024, 32 * 1024, 32 * 1024, 4 * 1024]);
        let joined: Vec<u8> = frames(bytes.clone())
            .into_iter()
            .flat_map(|p| match p {
                Piece::Chunk(b) => b.to_vec(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(joined, bytes);
        assert!(frames(Vec::new()).is_empty());
    }
}
