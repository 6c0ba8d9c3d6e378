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
//! Chunks are compressed by a pool of worker threads while the caller goes
//! on producing input (reading files, building the tar, hashing it); the
//! outputs are written in order as they come back. At most a few chunks per
//! thread are in flight, so memory stays bounded whatever the layer's size.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use super::compress::RecordedChunk;
use super::memo::{chunk_key, crc32, ChunkMemo, MIN_CHUNKS};

/// Input per chunk (pigz's default block size).
pub const CHUNK: usize = 128 * 1024;
/// The deflate window: how much earlier input primes a chunk.
const WINDOW: usize = 32 * 1024;
/// Chunks in flight per worker thread.
const IN_FLIGHT_PER_THREAD: usize = 4;

/// One chunk to compress: its place in the stream, its bytes, the window of
/// input before it, whether it ends the stream, and the memo of earlier
/// chunks to look it up in (for chunks past the first [`MIN_CHUNKS`]).
struct Job {
    index: u64,
    level: u32,
    data: Vec<u8>,
    dictionary: Vec<u8>,
    last: bool,
    memo: Option<Arc<ChunkMemo>>,
}

/// A chunk's output; with a memo, also its key and the output's CRC-32 (to
/// be recorded).
struct Output {
    bytes: Vec<u8>,
    recorded: Option<([u8; 32], u32)>,
}

type Done = (u64, io::Result<Output>);

/// The chunk's output: copied from an earlier layer when the memo has it,
/// else compressed.
fn produce(job: &Job) -> io::Result<Output> {
    let Some(memo) = &job.memo else {
        let bytes = deflate(job.level, &job.data, &job.dictionary, job.last)?;
        return Ok(Output {
            bytes,
            recorded: None,
        });
    };
    let key = chunk_key(job.level, job.last, &job.dictionary, &job.data);
    let (bytes, crc) = match memo.get(&key) {
        Some(copied) => copied,
        None => {
            let bytes = deflate(job.level, &job.data, &job.dictionary, job.last)?;
            let crc = crc32(&bytes);
            (bytes, crc)
        }
    };
    Ok(Output {
        bytes,
        recorded: Some((key, crc)),
    })
}

/// Worker threads that compress jobs and send back the outputs.
struct Pool {
    jobs: Option<mpsc::SyncSender<Job>>,
    results: mpsc::Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(threads: usize) -> Pool {
        let (jobs, queue) = mpsc::sync_channel::<Job>(threads * IN_FLIGHT_PER_THREAD);
        let queue = Arc::new(Mutex::new(queue));
        let (done, results) = mpsc::channel::<Done>();
        let workers = (0..threads)
            .map(|_| {
                let (queue, done) = (Arc::clone(&queue), done.clone());
                std::thread::spawn(move || loop {
                    let job = match queue.lock() {
                        Ok(q) => match q.recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        },
                        Err(_) => return,
                    };
                    let out = produce(&job);
                    if done.send((job.index, out)).is_err() {
                        return;
                    }
                })
            })
            .collect();
        Pool {
            jobs: Some(jobs),
            results,
            workers,
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the queue ends the workers once their chunk is done.
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// A gzip writer that compresses chunks in parallel.
pub struct ParallelGzip<W: Write> {
    out: W,
    level: u32,
    threads: usize,
    /// Worker threads (none with one thread: chunks are compressed inline).
    pool: Option<Pool>,
    current: Vec<u8>,
    /// The last full chunk, held back since it may turn out to be the
    /// stream's end.
    held: Option<Vec<u8>>,
    /// The input just before the next chunk submitted (at most one window).
    dictionary: Vec<u8>,
    /// Chunks submitted so far, and written out so far.
    submitted: u64,
    written: u64,
    /// Outputs that came back ahead of their turn.
    ready: BTreeMap<u64, Output>,
    /// Earlier layers' chunks, when this layer may reuse them.
    memo: Option<Arc<ChunkMemo>>,
    /// Bytes written so far (the next output's offset in the blob).
    offset: u64,
    /// Chunks to record: key, offset, length, output CRC-32.
    recorded: Vec<RecordedChunk>,
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
            pool: None,
            current: Vec::with_capacity(CHUNK),
            held: None,
            dictionary: Vec::new(),
            submitted: 0,
            written: 0,
            ready: BTreeMap::new(),
            memo: None,
            offset: 0,
            recorded: Vec::new(),
            crc: Crc::new(),
            header_written: false,
        }
    }

    /// Looks chunks up in (and records them for) `memo`: see memo.rs.
    pub fn with_memo(mut self, memo: Arc<ChunkMemo>) -> Self {
        self.memo = Some(memo);
        self
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

    /// Hands one chunk to the workers (or compresses it here, with one
    /// thread), then writes out whatever is done.
    fn submit(&mut self, data: Vec<u8>, last: bool) -> io::Result<()> {
        if !self.header_written {
            let header = self.header();
            self.out.write_all(&header)?;
            self.offset = header.len() as u64;
            self.header_written = true;
        }
        let dictionary = std::mem::replace(&mut self.dictionary, tail(&data).to_vec());
        let index = self.submitted;
        self.submitted += 1;
        let job = Job {
            index,
            level: self.level,
            data,
            dictionary,
            last,
            memo: self.memo.clone().filter(|_| index >= MIN_CHUNKS),
        };
        if self.threads == 1 {
            let out = produce(&job)?;
            return self.emit(out);
        }
        // Keep at most a few chunks per thread in flight.
        while self.submitted - self.written > (self.threads * IN_FLIGHT_PER_THREAD) as u64 {
            self.collect(true)?;
        }
        let threads = self.threads;
        let pool = self.pool.get_or_insert_with(|| Pool::new(threads));
        match &pool.jobs {
            Some(jobs) if jobs.send(job).is_ok() => {}
            _ => return Err(io::Error::other("a compression thread panicked")),
        }
        self.collect(false)
    }

    /// Writes out the outputs that are next in order; with `wait`, first
    /// waits for at least one more to come back.
    fn collect(&mut self, wait: bool) -> io::Result<()> {
        let Some(pool) = &self.pool else {
            return Ok(());
        };
        if wait {
            match pool.results.recv() {
                Ok((i, out)) => {
                    self.ready.insert(i, out?);
                }
                Err(_) => return Err(io::Error::other("a compression thread panicked")),
            }
        }
        while let Ok((i, out)) = pool.results.try_recv() {
            self.ready.insert(i, out?);
        }
        while let Some(out) = self.ready.remove(&self.written) {
            self.emit(out)?;
        }
        Ok(())
    }

    /// Writes the next output in order.
    fn emit(&mut self, out: Output) -> io::Result<()> {
        self.out.write_all(&out.bytes)?;
        if let Some((key, crc)) = out.recorded {
            self.recorded
                .push((key, self.offset, out.bytes.len() as u32, crc));
        }
        self.offset += out.bytes.len() as u64;
        self.written += 1;
        Ok(())
    }

    /// Ends the stream (trailer: CRC-32 and size mod 2^32) and returns the
    /// inner writer.
    #[cfg(test)]
    pub fn finish(self) -> io::Result<W> {
        Ok(self.finish_with_chunks()?.0)
    }

    /// [`finish`](Self::finish), also returning the chunks to record in the
    /// memo (key, offset in the stream, length, output CRC-32).
    pub fn finish_with_chunks(mut self) -> io::Result<(W, Vec<RecordedChunk>)> {
        // The last chunk (possibly empty) ends the deflate stream.
        let current = std::mem::take(&mut self.current);
        match self.held.take() {
            Some(held) if current.is_empty() => self.submit(held, true)?,
            Some(held) => {
                self.submit(held, false)?;
                self.submit(current, true)?;
            }
            None => self.submit(current, true)?,
        }
        while self.written < self.submitted {
            self.collect(true)?;
        }
        self.out.write_all(&self.crc.sum().to_le_bytes())?;
        self.out.write_all(&self.crc.amount().to_le_bytes())?;
        let ParallelGzip {
            out,
            pool,
            recorded,
            ..
        } = self;
        drop(pool);
        Ok((out, recorded))
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let take = buf.len().min(CHUNK - self.current.len());
        self.current.extend_from_slice(&buf[..take]);
        self.crc.update(&buf[..take]);
        if self.current.len() == CHUNK {
            let full = std::mem::replace(&mut self.current, Vec::with_capacity(CHUNK));
            if let Some(held) = self.held.replace(full) {
                self.submit(held, false)?;
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

/// Whether `data` looks incompressible: its bytes are spread so evenly
/// (order-2 Rényi entropy above log2(251), about 7.97 bits per byte) that
/// Huffman coding could save well under 1%, as with random, compressed or
/// encrypted content. Integer arithmetic only, so the answer (and the
/// layer's bytes) is the same on every machine.
fn incompressible(data: &[u8]) -> bool {
    if data.len() < 4096 {
        return false;
    }
    // Four tables, so that runs of one byte do not serialise on a counter.
    let mut counts = [[0u32; 256]; 4];
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        counts[0][q[0] as usize] += 1;
        counts[1][q[1] as usize] += 1;
        counts[2][q[2] as usize] += 1;
        counts[3][q[3] as usize] += 1;
    }
    for &b in quads.remainder() {
        counts[0][b as usize] += 1;
    }
    let collisions: u128 = (0..256)
        .map(|i| {
            let c = u128::from(counts[0][i] + counts[1][i] + counts[2][i] + counts[3][i]);
            c * c
        })
        .sum();
    let n = data.len() as u128;
    collisions * 251 <= n * n
}

/// `data` as stored deflate blocks (the chunk starts byte-aligned, after a
/// sync flush, so each block header is one byte); the last block ends the
/// stream when `last`. Costs 5 bytes per 64 KiB instead of a match search
/// that would find nothing.
fn store(data: &[u8], last: bool) -> Vec<u8> {
    let blocks: Vec<&[u8]> = data.chunks(usize::from(u16::MAX)).collect();
    let mut out = Vec::with_capacity(data.len() + 5 * blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        let len = block.len() as u16;
        out.push(u8::from(last && i + 1 == blocks.len()));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out
}

/// One chunk as raw deflate primed with `dictionary`; ends the stream when
/// `last`, else with a sync flush. A chunk that looks incompressible is
/// stored as it is.
fn deflate(level: u32, data: &[u8], dictionary: &[u8], last: bool) -> io::Result<Vec<u8>> {
    if incompressible(data) {
        return Ok(store(data, last));
    }
    // A new compressor for every chunk: a reset one keeps stale window
    // bytes that can steer its choice between equally long matches at the
    // chunk's end, which made the bytes depend on which thread compressed
    // what before. (A new one costs no measurable time.)
    let mut c = Compress::new(Compression::new(level), false);
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
pub(super) mod tests {
    use super::*;
    use std::io::Read;

    /// Mixed input: text-like runs and pseudo-random bytes.
    fn sample(len: usize) -> Vec<u8> {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..len)
            .map(|i| {
                if (i / 5000) % 3 == 0 {
                    xorshift(&mut state) as u8
                } else {
                    b"the quick brown fox jumps over the lazy dog\n"[i % 44]
                }
            })
            .collect()
    }

    /// Source-like text: words of a small vocabulary in pseudo-random order,
    /// so chunks end in the middle of many equally long matches.
    fn words(len: usize) -> Vec<u8> {
        let vocabulary: Vec<&[u8]> = b"def class return import self if else for in not and or None True data layer image build cache ( ) [ ] : , . = == + -"
            .split(|&b| b == b' ')
            .collect();
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            xorshift(&mut state);
            out.extend_from_slice(vocabulary[(state % vocabulary.len() as u64) as usize]);
            out.push(if state.is_multiple_of(9) { b'\n' } else { b' ' });
        }
        out.truncate(len);
        out
    }

    /// One step of a xorshift64 generator: the next state.
    pub(in crate::layer) fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Incompressible bytes (xorshift output).
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| (xorshift(&mut state) >> 24) as u8)
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
    fn text_bytes_do_not_depend_on_threads() {
        // A compressor reused across chunks made these differ (stale window
        // bytes); every chunk now gets a new one.
        let data = words(24 * CHUNK + 77);
        let one = gzip(&data, 1, 1 << 20);
        assert_eq!(gunzip(&one), data);
        assert_eq!(gzip(&data, 2, 100_000), one);
        assert_eq!(gzip(&data, 3, 65_536), one);
    }

    #[test]
    fn incompressible_chunks_are_stored_and_text_is_not() {
        assert!(incompressible(&noise(CHUNK, 7)));
        assert!(!incompressible(&words(CHUNK)));
        assert!(!incompressible(&vec![0u8; CHUNK]));
        // Half noise, half zeros, as in a sparse binary.
        let mut half = noise(CHUNK / 2, 9);
        half.resize(CHUNK, 0);
        assert!(!incompressible(&half));
        // Small pieces are always deflated.
        assert!(!incompressible(&noise(1000, 3)));

        // Noise, text, noise, and a noise tail that ends the stream stored.
        let mut data = noise(3 * CHUNK, 1);
        data.extend(words(2 * CHUNK));
        data.extend(noise(2 * CHUNK + 5000, 2));
        let z = gzip(&data, 2, 50_000);
        assert_eq!(gunzip(&z), data);
        // Stored noise costs 5 bytes per 64 KiB block over the input.
        let text_alone = gzip(&words(2 * CHUNK), 1, 1 << 20).len();
        assert!(
            z.len() < 5 * CHUNK + 5000 + text_alone + 200,
            "{} bytes",
            z.len()
        );
        assert_eq!(gzip(&data, 1, 1 << 20), z);
        // Frozen: these bytes are part of every layer digest imgb makes.
        let digest = crate::digest::Sha256Digest::of(&z).to_string();
        assert_eq!(
            digest,
            "sha256:8c018ec5314272abc7159300137c262b1890ce92b7834b270d26594001657dd9"
        );
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
