//! Captured guest output: stdout and stderr share one byte budget
//! (`limits.output`). Writes past the budget are accepted and dropped, so a
//! chatty guest keeps running normally, and the drop is counted and marked
//! in the captured text. Optionally, what is captured is also echoed to the
//! host's own stdout or stderr as it arrives (`wasmcron once`).
//!
//! A run with secrets redacts each stream before anything else sees it
//! (see `redact`): the budget counts, keeps and drops redacted bytes, so
//! `limits.output` bounds what is stored, and the few bytes a stream holds
//! back at a write boundary go through the same budget when [`take`]
//! flushes them — past the cap they are dropped like any others. Echo shows
//! only redacted bytes.
//!
//! [`take`]: CapturedPipe::take

use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::redact::{RedactStream, Redactor};

/// Where captured bytes are echoed as they arrive, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    None,
    Stdout,
    Stderr,
}

/// The shared budget of one run.
#[derive(Debug)]
struct Budget {
    remaining: u64,
}

#[derive(Debug, Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: u64,
}

/// One captured stream of one run; clones share the same buffer.
#[derive(Debug, Clone)]
pub struct CapturedPipe {
    budget: Arc<Mutex<Budget>>,
    captured: Arc<Mutex<Captured>>,
    echo: Echo,
    /// The run's secrets, if it has any worth redacting. The stream's lock
    /// is held while its output is kept, so writes stay in order.
    redactor: Option<(Arc<Redactor>, Arc<Mutex<RedactStream>>)>,
}

/// Creates the stdout and stderr pipes of a run, sharing `limit` bytes,
/// each redacting the values of `redactor`'s secrets if it is given.
pub fn pipes(
    limit: u64,
    stdout_echo: Echo,
    stderr_echo: Echo,
    redactor: Option<Arc<Redactor>>,
) -> (CapturedPipe, CapturedPipe) {
    let budget = Arc::new(Mutex::new(Budget { remaining: limit }));
    let pipe = |echo| CapturedPipe {
        budget: budget.clone(),
        captured: Arc::default(),
        echo,
        redactor: redactor.as_ref().map(|r| (r.clone(), Arc::new(Mutex::new(r.stream())))),
    };
    (pipe(stdout_echo), pipe(stderr_echo))
}

impl CapturedPipe {
    fn accept(&self, bytes: &[u8]) {
        match &self.redactor {
            None => self.keep(bytes),
            Some((_, stream)) => {
                let mut stream = stream.lock().unwrap();
                let redacted = stream.push(bytes);
                self.keep(&redacted);
            }
        }
    }

    /// `text` with this run's secrets redacted, for copies of what the
    /// guest wrote that go elsewhere (the host's log).
    pub(crate) fn redact_text(&self, text: &str) -> String {
        match &self.redactor {
            None => text.to_owned(),
            Some((redactor, _)) => redactor.redact_str(text),
        }
    }

    /// Counts `bytes` (already redacted) against the budget, keeps what fits.
    fn keep(&self, bytes: &[u8]) {
        let keep = {
            let mut budget = self.budget.lock().unwrap();
            let keep = budget.remaining.min(bytes.len() as u64);
            budget.remaining -= keep;
            keep as usize
        };
        let mut captured = self.captured.lock().unwrap();
        captured.bytes.extend_from_slice(&bytes[..keep]);
        captured.dropped += (bytes.len() - keep) as u64;
        drop(captured);
        if keep > 0 {
            // Echo is best effort: a closed host stdout must not fail the guest.
            let _ = match self.echo {
                Echo::None => Ok(()),
                Echo::Stdout => std::io::stdout().lock().write_all(&bytes[..keep]),
                Echo::Stderr => std::io::stderr().lock().write_all(&bytes[..keep]),
            };
        }
    }

    /// Captures a line the host writes on the guest's behalf (its logs).
    pub(crate) fn write_line(&self, line: &[u8]) {
        self.accept(line);
    }

    /// The captured bytes and how many were dropped past the budget. If any
    /// were, a marker line saying so ends the captured text. Call it once,
    /// when the run has ended: it first flushes what redaction held back.
    pub fn take(&self) -> (Vec<u8>, u64) {
        if let Some((_, stream)) = &self.redactor {
            let mut stream = stream.lock().unwrap();
            let rest = stream.finish();
            self.keep(&rest);
        }
        let mut captured = self.captured.lock().unwrap();
        let dropped = captured.dropped;
        let mut bytes = std::mem::take(&mut captured.bytes);
        if dropped > 0 {
            if !bytes.is_empty() && !bytes.ends_with(b"\n") {
                bytes.push(b'\n');
            }
            bytes.extend_from_slice(
                format!("[wasmcron: output truncated at limits.output; {dropped} more bytes dropped]\n").as_bytes(),
            );
        }
        (bytes, dropped)
    }
}

impl IsTerminal for CapturedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// How much a guest may hand over in one write; it bounds the host's
/// allocation per call, not the total.
const WRITE_PERMIT: usize = 64 * 1024;

impl OutputStream for CapturedPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.accept(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedPipe {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.accept(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_shared_and_overflow_is_marked() {
        let (out, err) = pipes(10, Echo::None, Echo::None, None);
        out.accept(b"123456");
        err.accept(b"abcdef");
        out.accept(b"zzz");
        let (stdout, out_dropped) = out.take();
        let (stderr, err_dropped) = err.take();
        assert_eq!(out_dropped, 3);
        assert_eq!(err_dropped, 2);
        assert!(stdout.starts_with(b"123456\n[wasmcron: output truncated"));
        assert!(stderr.starts_with(b"abcd\n[wasmcron: output truncated"));
        assert!(String::from_utf8(stderr).unwrap().contains("2 more bytes dropped"));
    }

    fn with_secret(limit: u64) -> (CapturedPipe, CapturedPipe) {
        let redactor = Redactor::new([("TOKEN", b"s3cr3t-token".as_slice())]).map(Arc::new);
        pipes(limit, Echo::None, Echo::None, redactor)
    }

    #[test]
    fn secrets_are_redacted_across_writes_and_streams_stay_apart() {
        let (out, err) = with_secret(1000);
        out.accept(b"token: s3cr");
        err.accept(b"3t-token is not a secret on its own\n");
        out.accept(b"3t-token\n");
        assert_eq!(out.take().0, b"token: [REDACTED:TOKEN]\n");
        assert_eq!(err.take().0, b"3t-token is not a secret on its own\n");
        assert_eq!(out.redact_text("error: s3cr3t-token"), "error: [REDACTED:TOKEN]");
    }

    #[test]
    fn the_budget_counts_redacted_bytes_and_the_held_tail_obeys_it() {
        // 12 bytes of secret become 16 of marker; the budget counts those.
        let (out, _err) = with_secret(16);
        out.accept(b"s3cr3t-token");
        out.accept(b"s3cr3t-tok");
        let (stdout, dropped) = out.take();
        let text = String::from_utf8(stdout).unwrap();
        assert!(text.starts_with("[REDACTED:TOKEN]\n[wasmcron: output truncated"), "{text}");
        assert_eq!(dropped, 10, "the held-back tail was dropped past the cap, not kept");
        assert!(!text.contains("s3cr"), "{text}");

        // The held tail is flushed at the end when it fits.
        let (out, _err) = with_secret(100);
        out.accept(b"ends with s3cr3t-tok");
        assert_eq!(out.take(), (b"ends with s3cr3t-tok".to_vec(), 0));
    }

    #[test]
    fn under_budget_is_untouched() {
        let (out, _err) = pipes(100, Echo::None, Echo::None, None);
        out.accept(b"hello\n");
        assert_eq!(out.take(), (b"hello\n".to_vec(), 0));
    }
}
