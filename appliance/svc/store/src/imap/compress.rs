//! COMPRESS=DEFLATE (RFC 4978): the command, and the raw-deflate layer it puts under the session.
//!
//! What it is: [`compress`] answers the command and, after its tagged `OK`, wraps the session's
//! stream (plain TCP or TLS) in a [`Deflate`] that decompresses what it reads and compresses
//! what it writes (raw deflate, RFC 1951, no zlib header; flate2 with its pure-Rust backend).
//! What it is not: a buffer policy. The session decides when to flush; every flush of the
//! [`Deflate`] ends with a deflate *sync flush*, so each response batch (a pipeline's replies,
//! an IDLE push, a continuation) reaches the client whole and decodable at once.
//!
//! Invariants:
//! - Compression starts right after the CRLF of the tagged `OK` (written and flushed
//!   uncompressed); octets the client pipelined after the command line are compressed data and
//!   go through the decompressor first ([`hermes_proto::imap::CommandReader::take_buffered`]).
//! - A second COMPRESS is answered `NO [COMPRESSIONACTIVE]`; the capability is no longer listed.
//! - Memory is bounded: at most [`OUT_CHUNK`] of compressed output is held before it is written
//!   to the socket (a write waits for the socket, so a slow reader applies back-pressure), and
//!   reads decompress into the caller's buffer.
//! - Corrupt compressed input is an I/O error: the connection ends, nothing panics.

use super::reply::Reply;
use super::session::{End, Session};
use super::stream::Stream;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Compressed output held before it is pushed to the socket.
const OUT_CHUNK: usize = 16 * 1024;
/// Most plain octets taken by one write call (a big FETCH literal goes through in slices).
const MAX_WRITE: usize = 64 * 1024;
/// Compressed input read from the socket at a time.
const IN_CHUNK: usize = 8 * 1024;
/// Compression level: 6 (zlib's default) is what Dovecot uses; IMAP text compresses 4-8x.
const LEVEL: u32 = 6;

/// COMPRESS: only `DEFLATE` exists (RFC 4978 §3).
pub(super) async fn compress(s: &mut Session, tag: &str, mechanism: &str) -> Result<(), End> {
    if s.user.is_none() {
        return s.finish(tag, Reply::bad("Command not allowed before login")).await;
    }
    if s.io.get_ref().is_compressed() {
        let reply = Reply::no("Compression is already active").with_code("COMPRESSIONACTIVE");
        return s.finish(tag, reply).await;
    }
    if mechanism != "DEFLATE" {
        return s.finish(tag, Reply::bad("Unsupported compression mechanism")).await;
    }
    s.finish(tag, Reply::ok("DEFLATE active")).await?;
    s.io.flush().await?;
    let pipelined = s.reader.take_buffered();
    let inner = s.detach_stream();
    if matches!(inner, Stream::Detached) {
        return Err(End::Closed);
    }
    s.install(Stream::Deflate(Box::new(Deflate::new(inner, pipelined))));
    tracing::debug!("COMPRESS=DEFLATE active");
    Ok(())
}

/// A raw-deflate layer over another stream. See the module invariants.
pub struct Deflate {
    inner: Box<Stream>,
    comp: Compress,
    decomp: Decompress,
    /// Compressed input not yet decompressed: `in_buf[in_pos..]`.
    in_buf: Vec<u8>,
    in_pos: usize,
    in_eof: bool,
    /// The last decompression filled the caller's buffer: the inflater may still hold output
    /// for input already consumed, so the next read must drain it before reading the socket.
    out_full: bool,
    /// Compressed output not yet written: `out_buf[out_pos..]`.
    out_buf: Vec<u8>,
    out_pos: usize,
}

impl Deflate {
    /// Wraps `inner`; `pending` are compressed octets already read from it.
    pub fn new(inner: Stream, pending: Vec<u8>) -> Deflate {
        Deflate {
            inner: Box::new(inner),
            comp: Compress::new(Compression::new(LEVEL), false),
            decomp: Decompress::new(false),
            in_buf: pending,
            in_pos: 0,
            in_eof: false,
            out_full: false,
            out_buf: Vec::with_capacity(OUT_CHUNK),
            out_pos: 0,
        }
    }

    /// The stream under the compression layer.
    pub fn inner(&self) -> &Stream {
        &self.inner
    }

    /// Compresses `input` (all of it) into `out_buf` with `flush`.
    fn deflate(&mut self, mut input: &[u8], flush: FlushCompress) -> io::Result<()> {
        loop {
            if self.out_buf.capacity() - self.out_buf.len() < 64 {
                self.out_buf.reserve(OUT_CHUNK);
            }
            let before_in = self.comp.total_in();
            self.comp.compress_vec(input, &mut self.out_buf, flush).map_err(io::Error::other)?;
            let consumed = usize::try_from(self.comp.total_in() - before_in).unwrap_or(0);
            input = input.get(consumed..).unwrap_or_default();
            // The compressor stops early only when it ran out of output space: then there is
            // more to come. With room left over, everything (including a flush) is out.
            let full = self.out_buf.len() == self.out_buf.capacity();
            if input.is_empty() && !full {
                return Ok(());
            }
        }
    }

    /// Writes `out_buf` to the inner stream until it is empty.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.out_buf.len() {
            let chunk = self.out_buf.get(self.out_pos..).unwrap_or_default();
            let n = ready!(Pin::new(self.inner.as_mut()).poll_write(cx, chunk))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.out_buf.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Deflate {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.in_pos < this.in_buf.len() || this.out_full {
                let input = this.in_buf.get(this.in_pos..).unwrap_or_default();
                let out = buf.initialize_unfilled();
                let before_in = this.decomp.total_in();
                let before_out = this.decomp.total_out();
                let status = this
                    .decomp
                    .decompress(input, out, FlushDecompress::Sync)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let consumed = usize::try_from(this.decomp.total_in() - before_in).unwrap_or(0);
                let produced = usize::try_from(this.decomp.total_out() - before_out).unwrap_or(0);
                this.out_full = produced > 0 && produced == out.len();
                this.in_pos += consumed;
                if this.in_pos >= this.in_buf.len() {
                    this.in_buf.clear();
                    this.in_pos = 0;
                }
                if produced > 0 {
                    buf.advance(produced);
                    return Poll::Ready(Ok(()));
                }
                if status == Status::StreamEnd {
                    // The client ended the deflate stream: nothing more can follow.
                    return Poll::Ready(Ok(()));
                }
                if consumed > 0 {
                    continue;
                }
                // No progress with input left: it is incomplete; read more.
            }
            if this.in_eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; IN_CHUNK];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(this.inner.as_mut()).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                this.in_eof = true;
                return Poll::Ready(Ok(()));
            }
            if this.in_pos > 0 {
                this.in_buf.drain(..this.in_pos);
                this.in_pos = 0;
            }
            this.in_buf.extend_from_slice(rb.filled());
        }
    }
}

impl AsyncWrite for Deflate {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.out_buf.len() - this.out_pos >= OUT_CHUNK {
            ready!(this.poll_drain(cx))?;
        }
        // Taken in slices so a large literal is compressed and written progressively.
        let take = buf.len().min(MAX_WRITE);
        this.deflate(buf.get(..take).unwrap_or_default(), FlushCompress::None)?;
        Poll::Ready(Ok(take))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A sync flush is idempotent enough: repeating it after a Pending costs 5 octets.
        if this.out_pos == 0 {
            this.deflate(&[], FlushCompress::Sync)?;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(this.inner.as_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(this.inner.as_mut()).poll_shutdown(cx)
    }
}
