//! What one virtual user does per arrival.
//!
//! The query journey, as a user (or the web page) lives it: `POST
//! /api/query`; a `200` is the CSV, the answer; a `202` is polled at its
//! `Location` every `poll_interval` until the CSV arrives (`200`), the
//! query fails (`422`), or the poll cap runs out. Time to result runs from
//! the arrival's *intended* start to the last byte of the CSV.
//!
//! Polls start after `interval` and back off (×`backoff`, up to
//! `max_interval`), as a considerate client does: quick enough to see a
//! fast result soon, without a storm of polls when results are slow.
//! `--follow wait` long-polls instead (`?wait=`, each request held until
//! the result is done or 20 s pass), and `--follow events` reads the
//! result's event stream (`/events`) to its end, then fetches the answer;
//! every request after the submit counts as a poll either way, so the
//! report's polls per query compare the three.
//!
//! The plain journey is one `GET` of a path (e.g. `/healthz`), for
//! measuring the generator and the HTTP stack alone.

use crate::client::{Client, Outgoing, Reply};
use crate::mix::Mix;
use crate::stats::{micros, Answer, ErrorKind, Record, Recorder};
use hyper::{Method, Uri};
use std::time::Duration;
use tokio::time::Instant;

/// How a queued result is followed until it is done (`--follow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Follow {
    /// `GET` the result every interval (with back-off).
    #[default]
    Poll,
    /// `GET …?wait=20s`: each poll answered once the result is done.
    Wait,
    /// `GET …/events` (Server-Sent Events) to its end, then the answer.
    Events,
}

/// The `wait` a long poll asks for (the gateway allows up to 25 s).
const LONG_POLL: &str = "20s";

/// How the journey polls a queued query.
#[derive(Debug, Clone)]
pub struct PollPolicy {
    /// Wait before the first poll.
    pub interval: Duration,
    /// Each further wait is the previous one times this (1 = fixed).
    pub backoff: f64,
    /// The longest wait between polls.
    pub max_interval: Duration,
    /// Use the server's `Retry-After` instead of `interval` when given.
    pub retry_after: bool,
    /// Most polls per query.
    pub max_polls: u32,
    /// Longest time from submit to giving up.
    pub max_wait: Duration,
    /// Polling, long polling or the event stream.
    pub follow: Follow,
}

/// What each arrival does.
pub enum Work {
    Query {
        mix: Mix,
        submit_uri: Uri,
        /// Send `Prefer: respond-async` (force the queued path).
        prefer_async: bool,
        poll: PollPolicy,
    },
    Get {
        uri: Uri,
    },
}

impl Work {
    pub fn describe(&self) -> String {
        match self {
            Work::Query {
                mix, prefer_async, ..
            } => format!(
                "query journey{}: {}",
                if *prefer_async {
                    " (Prefer: respond-async)"
                } else {
                    ""
                },
                mix.describe()
            ),
            Work::Get { uri } => format!("GET {uri}"),
        }
    }
}

/// Runs arrival `index`, intended to start at `intended` (`t0` is the run's
/// start), and records it.
pub async fn run(
    client: &Client,
    work: &Work,
    index: u64,
    t0: Instant,
    intended: Instant,
    rec: &mut Recorder,
) {
    let started = Instant::now();
    let mut record = Record {
        index,
        intended_us: micros(intended.saturating_duration_since(t0)),
        start_delay_us: micros(started.saturating_duration_since(intended)),
        submit_us: 0,
        total_us: 0,
        status: 0,
        answer: Answer::None,
        polls: 0,
        follow_bytes: 0,
        bytes: 0,
        error: None,
    };
    let error = match work {
        Work::Get { uri } => plain(client, uri, &mut record, rec).await,
        Work::Query {
            mix,
            submit_uri,
            prefer_async,
            poll,
        } => {
            query(
                client,
                mix,
                submit_uri,
                *prefer_async,
                poll,
                &mut record,
                rec,
            )
            .await
        }
    };
    record.error = error.err();
    record.total_us = micros(intended.elapsed());
    rec.finish(record);
}

/// `GET uri`.
async fn get(client: &Client, uri: &Uri) -> Result<Reply, ErrorKind> {
    client
        .exchange(Outgoing {
            method: Method::GET,
            uri: uri.clone(),
            body: None,
            headers: &[],
        })
        .await
}

/// Records the submit that began at `t` and got `reply`.
fn submitted(t: Instant, reply: &Reply, record: &mut Record, rec: &mut Recorder) {
    let d = t.elapsed();
    rec.submit_latency(d);
    record.submit_us = micros(d);
    record.status = reply.status;
}

async fn plain(
    client: &Client,
    uri: &Uri,
    record: &mut Record,
    rec: &mut Recorder,
) -> Result<(), ErrorKind> {
    let t = Instant::now();
    let reply = get(client, uri).await?;
    submitted(t, &reply, record, rec);
    record.bytes = reply.body_len;
    if (200..300).contains(&reply.status) {
        record.answer = Answer::Plain;
        Ok(())
    } else {
        Err(ErrorKind::Status(reply.status))
    }
}

fn log_unexpected(what: &str, status: u16, body: Option<&bytes::Bytes>) {
    tracing::debug!(
        what,
        status,
        body = %body.map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default(),
        "unexpected answer"
    );
}

/// The wait after `wait`: multiplied by the backoff, capped.
fn next_wait(wait: Duration, poll: &PollPolicy) -> Duration {
    let next = wait.as_secs_f64() * poll.backoff.max(1.0);
    Duration::from_secs_f64(next.min(poll.max_interval.as_secs_f64()).max(0.0))
        .max(poll.interval.min(poll.max_interval))
}

async fn query(
    client: &Client,
    mix: &Mix,
    submit_uri: &Uri,
    prefer_async: bool,
    poll: &PollPolicy,
    record: &mut Record,
    rec: &mut Recorder,
) -> Result<(), ErrorKind> {
    const ASYNC: &[(&str, &str)] = &[("prefer", "respond-async")];
    let t = Instant::now();
    let reply = client
        .exchange(Outgoing {
            method: Method::POST,
            uri: submit_uri.clone(),
            body: Some(mix.body(record.index)),
            headers: if prefer_async { ASYNC } else { &[] },
        })
        .await?;
    submitted(t, &reply, record, rec);
    match reply.status {
        200 if reply.is_answer => {
            record.answer = Answer::Direct;
            record.bytes = reply.body_len;
            return Ok(());
        }
        200 => return Err(ErrorKind::Protocol),
        202 => {}
        s => {
            log_unexpected("submit", s, reply.body_head.as_ref());
            return Err(ErrorKind::Status(s));
        }
    }
    let path = reply
        .location
        .as_deref()
        .and_then(|l| client.target().same_origin_path(l))
        .ok_or(ErrorKind::Protocol)?;
    let uri: Uri = format!("{}{path}", client.target().prefix)
        .parse()
        .map_err(|_| ErrorKind::Protocol)?;
    record.answer = Answer::Queued;
    let give_up = t + poll.max_wait;
    let uri = match poll.follow {
        Follow::Poll => uri,
        Follow::Wait => format!("{uri}?wait={LONG_POLL}")
            .parse()
            .map_err(|_| ErrorKind::Protocol)?,
        Follow::Events => {
            let events: Uri = format!("{uri}/events")
                .parse()
                .map_err(|_| ErrorKind::Protocol)?;
            record.polls += 1;
            let t = Instant::now();
            // The stream ends after the result's last event (or 204 when
            // there is nothing more to say).
            let reply = get(client, &events).await?;
            rec.poll_latency(t.elapsed());
            record.follow_bytes += reply.body_len;
            if !matches!(reply.status, 200 | 204) {
                log_unexpected("events", reply.status, reply.body_head.as_ref());
                return Err(ErrorKind::Status(reply.status));
            }
            uri
        }
    };
    let mut wait = match poll.follow {
        Follow::Poll => poll.interval,
        Follow::Wait | Follow::Events => Duration::ZERO,
    };
    loop {
        // `checked_add`: a server's Retry-After can be any number.
        let next = Instant::now().checked_add(wait);
        if record.polls >= poll.max_polls || next.is_none_or(|n| n > give_up) {
            return Err(ErrorKind::PollCap);
        }
        tokio::time::sleep(wait).await;
        record.polls += 1;
        let t = Instant::now();
        let reply = get(client, &uri).await?;
        rec.poll_latency(t.elapsed());
        record.status = reply.status;
        match reply.status {
            200 if reply.is_answer => {
                record.bytes = reply.body_len;
                return Ok(());
            }
            200 => return Err(ErrorKind::Protocol),
            202 if poll.follow != Follow::Poll => {
                record.follow_bytes += reply.body_len;
                wait = Duration::ZERO;
            }
            202 => {
                record.follow_bytes += reply.body_len;
                wait = match reply.retry_after {
                    // Never longer than the whole journey may take.
                    Some(s) if poll.retry_after => Duration::from_secs(s).min(poll.max_wait),
                    _ => next_wait(wait, poll),
                };
            }
            s => {
                log_unexpected("poll", s, reply.body_head.as_ref());
                return Err(ErrorKind::Status(s));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_waits_back_off_to_a_cap() {
        let p = PollPolicy {
            interval: Duration::from_millis(50),
            backoff: 1.5,
            max_interval: Duration::from_secs(1),
            retry_after: false,
            max_polls: 10,
            max_wait: Duration::from_secs(60),
            follow: Follow::Poll,
        };
        let mut w = p.interval;
        let mut waits = vec![w];
        for _ in 0..10 {
            w = next_wait(w, &p);
            waits.push(w);
        }
        assert_eq!(waits[1], Duration::from_millis(75));
        assert_eq!(waits[2], Duration::from_micros(112_500));
        assert!(waits.windows(2).all(|x| x[0] <= x[1]));
        assert_eq!(*waits.last().unwrap(), Duration::from_secs(1));
        let fixed = PollPolicy { backoff: 1.0, ..p };
        assert_eq!(
            next_wait(Duration::from_millis(50), &fixed),
            Duration::from_millis(50)
        );
    }
}
