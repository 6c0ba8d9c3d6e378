//! The build's clock: `SOURCE_DATE_EPOCH` or now, as RFC 3339 timestamps
//! (without a date crate) for image configs and history entries, and as the
//! mtime of files in new layers.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::image::History;
use crate::plan::Step;

/// The history comment BuildKit writes on Dockerfile steps.
const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// Timestamps of one build.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// `SOURCE_DATE_EPOCH`, in seconds.
    epoch: Option<i64>,
}

impl Clock {
    pub fn new(epoch: Option<i64>) -> Clock {
        Clock { epoch }
    }

    /// Whether `SOURCE_DATE_EPOCH` pins every timestamp.
    pub fn pinned(&self) -> bool {
        self.epoch.is_some()
    }

    /// When a layer is made now: `SOURCE_DATE_EPOCH`, else the time of day.
    pub fn created(&self) -> String {
        rfc3339(self.epoch.unwrap_or_else(now))
    }

    /// The mtime of files written into new layers: `SOURCE_DATE_EPOCH`, or 0.
    pub fn mtime(&self) -> u64 {
        self.epoch.map(|e| e.max(0) as u64).unwrap_or(0)
    }

    /// A step's history entry, created at `created` (now when `None`).
    pub fn history(&self, step: &Step, created: Option<String>) -> History {
        History {
            created: Some(created.unwrap_or_else(|| self.created())),
            created_by: Some(step.created_by.clone()),
            comment: Some(HISTORY_COMMENT.to_string()),
            ..History::default()
        }
    }

    /// The time of a metadata-only step: that of the stage's latest layer
    /// (`last_created`), so that a fully cached rebuild gives the same
    /// image id; `SOURCE_DATE_EPOCH` when set.
    pub fn metadata_time(&self, last_created: Option<&str>) -> Option<String> {
        match self.epoch {
            Some(_) => None,
            None => last_created.map(str::to_string),
        }
    }
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Now, in seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
