//! `imgb prune` and `imgb du`: garbage collection and disk usage of the
//! content store.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Context};

use super::args::PruneArgs;
use super::Failure;
use crate::store::{ContentStore, PruneOptions, StoreError};

/// How long prune waits for other imgb processes to close the store.
const BUSY_WAIT: Duration = Duration::from_secs(30);

pub fn prune(state: &Path, args: &PruneArgs) -> Result<(), Failure> {
    let keep_storage = args
        .keep_storage
        .as_deref()
        .map(parse_size)
        .transpose()
        .map_err(Failure::Usage)?;
    let until = prune_until(&args.filter)?;
    let store = open(state)?;
    let mut all = args.all;
    if let Some(age) = until {
        let cutoff = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        apply_until(&store, cutoff, args.all).map_err(Failure::User)?;
        // What --all would remove has been narrowed to the old images above.
        all = false;
    }
    let opts = PruneOptions {
        all,
        keep_storage,
        verify: args.verify,
        // Unpacked filesystems of layer chains: RUN and COPY --from unpack
        // them again when needed.
        derived: vec![state.join("snapshots")],
    };
    let started = Instant::now();
    let mut told = false;
    let report = loop {
        match store.prune(&opts) {
            Err(StoreError::Busy(_)) if started.elapsed() < BUSY_WAIT => {
                if !told {
                    eprintln!(
                        "waiting for other imgb processes using {} to finish...",
                        state.display()
                    );
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(StoreError::Busy(path)) => {
                return Err(Failure::User(anyhow!(
                    "the store at {} is still in use by another imgb process after {}s\n\
                     hint: run `imgb prune` when no build, pull or push is running",
                    path.display(),
                    BUSY_WAIT.as_secs()
                )))
            }
            other => break other.context("prune failed").map_err(Failure::User)?,
        }
    };
    for (blob, found) in &report.corrupt {
        println!(
            "corrupt: {} ({} bytes hash to {found}); removed",
            blob.digest, blob.size
        );
    }
    for name in &report.dropped_refs {
        println!("untagged: {name}");
    }
    for root in &report.dropped_roots {
        println!("dropped {} root: {}", root.namespace, root.digest);
    }
    for blob in &report.removed {
        println!("deleted: {}", blob.digest);
    }
    if args.verify {
        println!(
            "verified: {} corrupt blob{} found",
            report.corrupt.len(),
            if report.corrupt.len() == 1 { "" } else { "s" }
        );
    }
    if report.derived_bytes > 0 {
        println!("snapshots: {} removed", human_size(report.derived_bytes));
    }
    println!("Total reclaimed space: {}", human_size(report.reclaimed()));
    Ok(())
}

/// `--filter until=24h` (the only filter; Docker's `builder prune` and
/// `image prune` take the same spelling).
fn prune_until(filters: &[String]) -> Result<Option<Duration>, Failure> {
    let mut until = None;
    for filter in filters {
        match filter.split_once('=') {
            Some(("until", value)) => {
                until = Some(parse_duration(value).map_err(Failure::Usage)?);
            }
            _ => {
                return Err(Failure::Usage(anyhow!(
                    "unsupported --filter {filter:?}: only until=DURATION (e.g. until=24h) is supported"
                )))
            }
        }
    }
    Ok(until)
}

/// Drops cache roots last used before `cutoff` and, with `--all`, the names
/// of images created before it; `prune` then removes what nothing holds.
fn apply_until(store: &ContentStore, cutoff: SystemTime, all: bool) -> anyhow::Result<()> {
    for root in store.all_roots()? {
        if root.used < cutoff {
            store.remove_root(&root.namespace, &root.digest)?;
        }
    }
    if !all {
        return Ok(());
    }
    let cutoff_secs = cutoff
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    for (name, digest) in store.refs()? {
        let created = super::images::created_of(store, &digest);
        // An image without a creation time counts as old, as in Docker.
        if created.is_none_or(|t| t < cutoff_secs) {
            store.remove_ref(&name)?;
            println!("untagged: {name}");
        }
    }
    Ok(())
}

/// Go's `time.ParseDuration` for what people type: `24h`, `90m`, `1h30m`,
/// `45s`, `1.5h`.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let bad = || anyhow!("invalid duration {s:?}: use e.g. 24h, 90m or 1h30m");
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        let unit_end = rest[n..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .map_or(rest.len(), |i| n + i);
        let mult = match &rest[n..unit_end] {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * mult;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

pub fn du(state: &Path) -> Result<(), Failure> {
    let store = open(state)?;
    let usage = store
        .disk_usage()
        .context("cannot measure the store")
        .map_err(Failure::User)?;
    println!("{:<40} {:>10}", "WHAT", "SIZE");
    for (name, size) in &usage.images {
        println!("{:<40} {:>10}", format!("image {name}"), human_size(*size));
    }
    println!(
        "{:<40} {:>10}",
        "images (shared blobs once)",
        human_size(usage.referenced)
    );
    for (ns, size) in &usage.roots_only {
        println!(
            "{:<40} {:>10}",
            format!("{ns} (not in an image)"),
            human_size(*size)
        );
    }
    println!(
        "{:<40} {:>10}",
        format!("unreferenced ({} blobs)", usage.unreferenced_count),
        human_size(usage.unreferenced)
    );
    println!("{:<40} {:>10}", "temporary files", human_size(usage.temp));
    println!(
        "{:<40} {:>10}",
        format!("total ({} blobs)", usage.blob_count),
        human_size(usage.total + usage.temp)
    );
    Ok(())
}

fn open(state: &Path) -> Result<ContentStore, Failure> {
    ContentStore::open(state)
        .with_context(|| format!("cannot open the store at {}", state.display()))
        .map_err(Failure::User)
}

/// Parses `--keep-storage` sizes as Docker does (go-units `RAMInBytes`):
/// `1024`, `512k`, `10MB`, `1.5GiB`; Docker compatibility: `KB`, `MB`, ...
/// are binary multiples (1024), like Docker's.
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        anyhow!("invalid size {s:?}: expected a number with an optional unit, like 10GB")
    })?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(anyhow!(
                "invalid size {s:?}: unknown unit {other:?} (use B, KB, MB, GB or TB)"
            ))
        }
    };
    Ok((value * mult as f64) as u64)
}

/// Docker's `HumanSize`: decimal units, about four significant digits.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if value >= 100.0 {
        format!("{value:.1}")
    } else if value >= 10.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    };
    let trimmed = digits.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("10GB").unwrap(), 10 << 30);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("1.5MiB").unwrap(), 3 << 19);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5XB").is_err());
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5_400));
        assert!(parse_duration("3d").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(20_000_000_000), "20GB");
    }
}
