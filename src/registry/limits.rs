//! Bounds on every exchange with a registry, so that a stalled, trickling
//! or endless answer ends in a clear error within bounded time and memory:
//!
//! * a deadline for an answer to start (its status and headers), stretched
//!   for an upload by the time its body needs at the minimum speed;
//! * a deadline for a small body (manifest, token, error text) to arrive
//!   whole;
//! * a minimum throughput for every body, like curl's
//!   `--speed-limit`/`--speed-time`: fewer than `speed_limit` bytes per
//!   second over `speed_time` abandons the transfer;
//! * size caps checked while a body streams, never only against its
//!   declared `Content-Length` (a chunked answer declares none).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use reqwest::Response;

/// The time and speed bounds of registry requests (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long an answer may take to start, and a small body to arrive.
    pub timeout: Duration,
    /// Bytes per second below which a transfer counts as stalled...
    pub speed_limit: u64,
    /// ...when it stays below for this long.
    pub speed_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(30),
            speed_limit: 1024,
            speed_time: Duration::from_secs(20),
        }
    }
}

impl Limits {
    /// The deadline for an answer to a request whose body is `body_len`
    /// bytes: the timeout plus the time the body takes at the minimum speed.
    pub fn answer_deadline(&self, body_len: usize) -> Duration {
        let upload = body_len as f64 / self.speed_limit.max(1) as f64;
        self.timeout
            .saturating_add(Duration::from_secs_f64(upload.min(1e9)))
    }

    /// The bytes a body must deliver in each `speed_time` window.
    fn window_bytes(&self) -> u64 {
        (self.speed_limit as f64 * self.speed_time.as_secs_f64()).ceil() as u64
    }
}

/// Why reading a body stopped early.
#[derive(Debug)]
pub(super) enum BodyError {
    /// Slower than the minimum speed, or past the deadline: what happened.
    Stalled(String),
    /// More than the cap allows.
    TooLarge { limit: u64 },
    /// The connection broke.
    Transport(reqwest::Error),
}

/// Watches one body as it streams: bytes per window, and an overall
/// deadline where one applies.
pub(super) struct Meter {
    limits: Limits,
    started: Instant,
    window_start: Instant,
    window_bytes: u64,
    total: u64,
    deadline: Option<Instant>,
}

impl Meter {
    /// A meter for a body of any length (blobs): only the speed counts.
    pub fn new(limits: Limits) -> Meter {
        let now = Instant::now();
        Meter {
            limits,
            started: now,
            window_start: now,
            window_bytes: 0,
            total: 0,
            deadline: None,
        }
    }

    /// A meter for a small body, which must also arrive whole within the
    /// timeout.
    pub fn small(limits: Limits) -> Meter {
        let mut m = Meter::new(limits);
        m.deadline = Some(m.started + limits.timeout);
        m
    }

    /// Bytes seen so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    fn window_end(&self) -> Instant {
        let end = self.window_start + self.limits.speed_time;
        match self.deadline {
            Some(d) => d.min(end),
            None => end,
        }
    }

    fn stalled(&self, now: Instant) -> BodyError {
        if self.deadline.is_some_and(|d| now >= d) {
            return BodyError::Stalled(format!(
                "registry sent {} bytes in {}, the whole answer was due within {}",
                self.total,
                seconds(now - self.started),
                seconds(self.limits.timeout)
            ));
        }
        BodyError::Stalled(format!(
            "registry sent {} bytes in {} (minimum {} bytes/s over {})",
            self.window_bytes,
            seconds(now - self.window_start),
            self.limits.speed_limit,
            seconds(self.limits.speed_time)
        ))
    }

    /// Counts `n` bytes that just arrived.
    fn record(&mut self, n: usize) -> Result<(), BodyError> {
        let now = Instant::now();
        self.total += n as u64;
        self.window_bytes += n as u64;
        if self.deadline.is_some_and(|d| now >= d) {
            return Err(self.stalled(now));
        }
        if self.window_bytes >= self.limits.window_bytes() {
            // Fast enough: a new window starts.
            self.window_start = now;
            self.window_bytes = 0;
        } else if now >= self.window_start + self.limits.speed_time {
            return Err(self.stalled(now));
        }
        Ok(())
    }

    /// The next chunk of `resp`'s body (`None` at its end), waiting no
    /// longer than the window or the deadline allows.
    pub async fn next_chunk(&mut self, resp: &mut Response) -> Result<Option<Bytes>, BodyError> {
        let wait = self.window_end().saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, resp.chunk()).await {
            Err(_) => Err(self.stalled(Instant::now())),
            Ok(Err(e)) => Err(BodyError::Transport(e)),
            Ok(Ok(None)) => Ok(None),
            Ok(Ok(Some(chunk))) => {
                self.record(chunk.len())?;
                Ok(Some(chunk))
            }
        }
    }
}

/// Reads a small body whole (manifest, config, token): at most `limit`
/// bytes, within the timeout, at the minimum speed.
pub(super) async fn read_small(
    mut resp: Response,
    limits: Limits,
    limit: u64,
) -> Result<Bytes, BodyError> {
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut meter = Meter::small(limits);
    let mut out = BytesMut::new();
    while let Some(chunk) = meter.next_chunk(&mut resp).await? {
        if meter.total() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// The first `limit` bytes of an error body, as text; whatever fails while
/// reading it (a stall, a broken connection) just ends the text there.
pub(super) async fn read_error_text(mut resp: Response, limits: Limits, limit: usize) -> String {
    let mut meter = Meter::small(limits);
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = meter.next_chunk(&mut resp).await {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `2.5 s`, `20 s`, `0.05 s`.
pub(super) fn seconds(d: Duration) -> String {
    let text = format!("{:.2}", d.as_secs_f64());
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} s")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(speed_limit: u64, speed_time_ms: u64) -> Limits {
        Limits {
            timeout: Duration::from_secs(30),
            speed_limit,
            speed_time: Duration::from_millis(speed_time_ms),
        }
    }

    #[test]
    fn a_fast_enough_body_opens_a_new_window() {
        let mut m = Meter::new(limits(100, 1000));
        m.record(100).unwrap();
        assert_eq!(m.window_bytes, 0);
        m.record(50).unwrap();
        assert_eq!(m.window_bytes, 50);
        assert_eq!(m.total(), 150);
    }

    #[test]
    fn a_trickle_is_stalled_when_its_window_ends_short() {
        let mut m = Meter::new(limits(1000, 20));
        m.record(1).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        match m.record(1) {
            Err(BodyError::Stalled(msg)) => {
                assert!(msg.starts_with("registry sent 2 bytes in "), "{msg}");
                assert!(msg.contains("minimum 1000 bytes/s over 0.02 s"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_small_body_has_a_deadline() {
        let mut m = Meter::small(Limits {
            timeout: Duration::from_millis(10),
            speed_limit: 1,
            speed_time: Duration::from_secs(60),
        });
        assert!(m.window_end() <= m.started + Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(20));
        match m.record(5) {
            Err(BodyError::Stalled(msg)) => {
                assert!(msg.contains("whole answer was due within"), "{msg}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn uploads_get_time_for_their_body() {
        let l = limits(1024, 1000);
        assert_eq!(l.answer_deadline(0), Duration::from_secs(30));
        assert_eq!(l.answer_deadline(10 * 1024), Duration::from_secs(40));
    }

    #[test]
    fn seconds_are_short() {
        assert_eq!(seconds(Duration::from_secs(20)), "20 s");
        assert_eq!(seconds(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(seconds(Duration::from_millis(50)), "0.05 s");
    }
}
