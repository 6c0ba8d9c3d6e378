//! Gzip on every core, pigz-style, with output that does not depend on the
//! number of threads.
//!
//! The input is cut into fixed 128 KiB chunks. Each chunk is deflated on its
//! own (raw deflate, primed with the 32 KiB of input before it as the
//! dictionary, so the ratio stays that of one stream) and ends with a sync
//! flush, which byte-aligns it; the last ends the stream. The chunks'
//! outputs, concatenated in order between a gzip header and trailer, are one
//! valid deflate stream that any gunzip reads. Because the chunking is fixed,
//! the bytes (and the layer digest) are the same with one thread or many.
//!
//! Chunks are compressed in batches on scoped threads; memory stays at a
//! few chunks per thread, whatever the layer's size.

use std::io::{self, Write};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Input per chunk (pigz's default block size).
pub const CHUNK: usize = 128 * 1024;
/// The deflate window: how much earlier input primes a chunk.
const WINDOW: usize = 32 * 1024;

/// A gzip writer that compresses chunks in parallel.
pub struct ParallelGzip<W: Write> {
    out: W,
    level: u32,
    threads: usize,
    /// Full chunks waiting for the next batch.
    pending: Vec<Vec<u8>>,
    current: Vec<u8>,
    /// The input just before `pending[0]` (at most one window).
    dictionary: Vec<u8>,
    crc: Crc,
    header_written: bool,
}

impl<W: Write> ParallelGzip<W> {
    /// A writer at gzip `level` (0-9) on up to `threads` threads.
    pub fn new(out: W, level: u32, threads: usize) -> Self {
        ParallelGzip {
            out,
            level: level.min(9),
            threads: threads.max(1),
            pending: Vec::new(),
            current: Vec::with_capacity(CHUNK),
            dictionary: Vec::new(),
            crc: Crc::new(),
            header_written: false,
        }
    }

    /// The gzip header: no name, mtime 0, OS 255 ("unknown"), as flate2's
    /// `GzEncoder` and Go's compress/gzip write it: no host-dependent bytes.
    fn header(&self) -> [u8; 10] {
        let xfl = match self.level {
            9 => 2,
            0 | 1 => 4,
            _ => 0,
        };
        [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
    }

    /// Compresses the pending chunks (the last of them ending the stream
    /// when `last`) and writes them out in order.
    fn flush_batch(&mut self, last: bool) -> io::Result<()> {
        if !self.header_written {
            let header = self.header();
            self.out.write_all(&header)?;
            self.header_written = true;
        }
        let chunks = std::mem::take(&mut self.pending);
        if chunks.is_empty() {
            return Ok(());
        }
        let n = chunks.len();
        let dictionaries: Vec<&[u8]> = (0..n)
            .map(|i| match i {
                0 => &self.dictionary[..],
                _ => tail(&chunks[i - 1]),
            })
            .collect();
        let level = self.level;
        let threads = self.threads.min(n);
        let mut outputs: Vec<io::Result<Vec<u8>>> = Vec::with_capacity(n);
        let compressor = || Compress::new(Compression::new(level), false);
        if threads == 1 {
            let mut c = compressor();
            for i in 0..n {
                let end = last && i + 1 == n;
                outputs.push(deflate(&mut c, &chunks[i], dictionaries[i], end));
            }
        } else {
            // Thread t takes chunks t, t + threads, ...
            let mut slots: Vec<Option<io::Result<Vec<u8>>>> = (0..n).map(|_| None).collect();
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let (chunks, dictionaries) = (&chunks, &dictionaries);
                        scope.spawn(move || {
                            let mut c = compressor();
                            (t..n)
                                .step_by(threads)
                                .map(|i| {
                                    let end = last && i + 1 == n;
                                    (i, deflate(&mut c, &chunks[i], dictionaries[i], end))
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                // A panicked thread leaves its slots empty: an error below.
                for results in handles.into_iter().filter_map(|h| h.join().ok()) {
                    for (i, r) in results {
                        slots[i] = Some(r);
                    }
                }
            });
            for slot in slots {
                outputs.push(
                    slot.unwrap_or_else(|| Err(io::Error::other("a compression thread panicked"))),
                );
            }
        }
        for output in outputs {
            self.out.write_all(&output?)?;
        }
        self.dictionary = tail(&chunks[n - 1]).to_vec();
        Ok(())
    }

    /// Ends the stream (trailer: CRC-32 and size mod 2^32) and returns the
    /// inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        // The last chunk (possibly empty) ends the deflate stream.
        let current = std::mem::take(&mut self.current);
        if !current.is_empty() || self.pending.is_empty() {
            self.pending.push(current);
        }
        self.flush_batch(true)?;
        self.out.write_all(&self.crc.sum().to_le_bytes())?;
        self.out.write_all(&self.crc.amount().to_le_bytes())?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let take = buf.len().min(CHUNK - self.current.len());
        self.current.extend_from_slice(&buf[..take]);
        self.crc.update(&buf[..take]);
        if self.current.len() == CHUNK {
            let full = std::mem::replace(&mut self.current, Vec::with_capacity(CHUNK));
            self.pending.push(full);
            // A batch gives every thread eight chunks (1 MiB); the last
            // full chunk waits, since it may turn out to be the stream's end.
            if self.pending.len() > self.threads * 8 {
                let keep = self.pending.pop();
                self.flush_batch(false)?;
                self.pending.extend(keep);
            }
        }
        Ok(take)
    }

    /// Flushes the inner writer only: chunk boundaries stay fixed, so a
    /// flush never changes the bytes.
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The last window of `chunk`.
fn tail(chunk: &[u8]) -> &[u8] {
    &chunk[chunk.len().saturating_sub(WINDOW)..]
}

/// One chunk as raw deflate primed with `dictionary`; ends the stream when
/// `last`, else with a sync flush.
fn deflate(c: &mut Compress, data: &[u8], dictionary: &[u8], last: bool) -> io::Result<Vec<u8>> {
    // Reusing one compressor per thread saves allocating and clearing its
    // tables for every chunk.
    c.reset();
    if !dictionary.is_empty() {
        c.set_dictionary(dictionary).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out: Vec<u8> = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(4096));
        }
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = c.total_in() as usize == data.len();
        match status {
            Status::StreamEnd => break,
            // With room left over after the call, the sync flush is complete.
            _ if !last && all_in && out.len() < out.capacity() => break,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Mixed input: text-like runs and pseudo-random bytes.
    fn sample(len: usize) -> Vec<u8> {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..len)
            .map(|i| {
                if (i / 5000) % 3 == 0 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                } else {
                    b"the quick brown fox jumps over the lazy dog\n"[i % 44]
                }
            })
            .collect()
    }

    fn gzip(data: &[u8], threads: usize, write_size: usize) -> Vec<u8> {
        let mut w = ParallelGzip::new(Vec::new(), 6, threads);
        for piece in data.chunks(write_size.max(1)) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn round_trips_at_every_size_around_chunk_boundaries() {
        for len in [
            0,
            1,
            100,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK,
            7 * CHUNK + 5,
        ] {
            let data = sample(len);
            let z = gzip(&data, 2, 10_000);
            assert_eq!(gunzip(&z), data, "length {len}");
        }
    }

    #[test]
    fn bytes_do_not_depend_on_threads_or_write_sizes() {
        let data = sample(20 * CHUNK + 123);
        let one = gzip(&data, 1, 1 << 20);
        assert_eq!(gzip(&data, 2, 4096), one);
        assert_eq!(gzip(&data, 8, 77_777), one);
    }

    #[test]
    fn ratio_stays_close_to_a_single_stream() {
        let data = sample(40 * CHUNK);
        let parallel = gzip(&data, 2, 1 << 16).len();
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap().len();
        assert!(
            (parallel as f64) < single as f64 * 1.02,
            "parallel {parallel} vs single {single}"
        );
    }

    #[test]
    fn independent_gunzip_reads_it() {
        let data = sample(5 * CHUNK + 9);
        let z = gzip(&data, 2, 1 << 16);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        std::fs::write(&path, &z).unwrap();
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .expect("gzip runs");
        assert!(out.status.success());
        assert_eq!(out.stdout, data);
        // And gzip -t finds the trailer (CRC and size) right.
        let test = std::process::Command::new("gzip")
            .arg("-t")
            .arg(&path)
            .status()
            .expect("gzip runs");
        assert!(test.success());
    }
}
