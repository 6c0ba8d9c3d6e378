//! Layer compression: gzip (flate2 on the pure-Rust zlib-rs backend, in
//! fixed chunks compressed in parallel: pgzip.rs), zstd
//! (libzstd through the `zstd` crate, single-threaded) or none.
//!
//! The compressed bytes, and so the layer's blob digest, depend on the
//! encoder and its parameters: both are pinned here (encoder via Cargo.lock,
//! parameters in these constants). Changing either changes every digest.

use std::io::{self, Write};
use std::str::FromStr;

use std::sync::Arc;

use super::memo::ChunkMemo;
use super::pgzip::ParallelGzip;
use super::LayerError;
use crate::store::BlobWriter;

/// A chunk of a gzip layer for the memo: key, offset in the blob, length,
/// output CRC-32.
pub(super) type RecordedChunk = ([u8; 32], u64, u32, u32);

/// Default gzip level: 2. In zlib-rs (a port of zlib-ng) that is the fast
/// greedy matcher, which compresses about as well as `gzip -1` and Go's
/// `BestSpeed` (Kaniko's and crane's default) at 2-3x the speed of level 6,
/// Docker's and BuildKit's default: measured on the benchmark's workloads,
/// images come out 0-3% larger (a layer of many small text files up to 8%).
/// `--compression-level 6` gives Docker's ratio.
pub const DEFAULT_GZIP_LEVEL: i32 = 2;
/// Default zstd level: 3, zstd's default, as BuildKit uses.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// How a layer is compressed (`--compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    Uncompressed,
}

impl Compression {
    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::Uncompressed => "application/vnd.oci.image.layer.v1.tar",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Uncompressed => "uncompressed",
        }
    }

    /// Checks `level` (or picks the default) for this compression.
    pub fn level(self, level: Option<i32>) -> Result<i32, LayerError> {
        let (default, range) = match self {
            Compression::Gzip => (DEFAULT_GZIP_LEVEL, 0..=9),
            Compression::Zstd => (DEFAULT_ZSTD_LEVEL, 1..=22),
            Compression::Uncompressed => (0, 0..=0),
        };
        match level {
            None => Ok(default),
            Some(l) if range.contains(&l) => Ok(l),
            Some(l) => Err(LayerError::InvalidLevel {
                compression: self.name(),
                level: l,
                min: *range.start(),
                max: *range.end(),
            }),
        }
    }
}

impl FromStr for Compression {
    type Err = LayerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "uncompressed" => Ok(Compression::Uncompressed),
            other => Err(LayerError::UnknownCompression(other.to_string())),
        }
    }
}

/// The compressor in front of the blob writer.
pub(super) enum Encoder {
    Gzip(ParallelGzip<BlobWriter>),
    Zstd(zstd::stream::write::Encoder<'static, BlobWriter>),
    None(BlobWriter),
}

impl Encoder {
    pub(super) fn new(
        compression: Compression,
        level: i32,
        out: BlobWriter,
        memo: Option<Arc<ChunkMemo>>,
    ) -> Result<Encoder, LayerError> {
        Ok(match compression {
            // Chunked, on every core; the bytes do not depend on the number
            // of cores (see pgzip.rs).
            Compression::Gzip => {
                let gzip = ParallelGzip::new(
                    out,
                    level.unsigned_abs(),
                    std::thread::available_parallelism().map_or(1, |n| n.get()),
                );
                Encoder::Gzip(match memo {
                    Some(memo) => gzip.with_memo(memo),
                    None => gzip,
                })
            }
            Compression::Zstd => Encoder::Zstd(
                zstd::stream::write::Encoder::new(out, level)
                    .map_err(|source| LayerError::Compress { source })?,
            ),
            Compression::Uncompressed => Encoder::None(out),
        })
    }

    /// Ends the stream; for gzip, also the chunks to record in the memo.
    pub(super) fn finish(self) -> io::Result<(BlobWriter, Vec<RecordedChunk>)> {
        match self {
            Encoder::Gzip(e) => e.finish_with_chunks(),
            Encoder::Zstd(e) => Ok((e.finish()?, Vec::new())),
            Encoder::None(w) => Ok((w, Vec::new())),
        }
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::None(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::None(w) => w.flush(),
        }
    }
}
