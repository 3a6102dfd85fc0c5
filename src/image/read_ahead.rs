//! A reader that runs its source on another thread: decompression of a layer (the larger half
//! of an unpack's CPU time) then overlaps with hashing, tar parsing and the file writes instead
//! of taking turns with them. Used by stage 1's unpack, one per compressed layer.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::Scope;

/// Chunks in flight between the threads: enough to ride out a burst of small files.
const DEPTH: usize = 8;
const CHUNK: usize = 256 << 10;

/// The consuming end: reads what the producer thread decoded.
pub struct ReadAhead {
    rx: Receiver<io::Result<Vec<u8>>>,
    /// Used buffers go back to the producer, so a layer costs DEPTH + 2 buffers, not one each.
    spare: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
}

/// Starts reading `source` on a thread of `scope`. Dropping the [`ReadAhead`] stops it.
pub fn spawn<'scope, R: Read + Send + 'scope>(scope: &'scope Scope<'scope, '_>, mut source: R) -> ReadAhead {
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(DEPTH);
    let (spare_tx, spare_rx) = sync_channel::<Vec<u8>>(DEPTH + 2);
    scope.spawn(move || loop {
        let mut buf = spare_rx.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        buf.resize(CHUNK, 0);
        let mut n = 0;
        // Full chunks: fewer hand-offs than one per decoder call.
        let result = loop {
            match source.read(&mut buf[n..]) {
                Ok(0) => break Ok(()),
                Ok(k) => {
                    n += k;
                    if n == buf.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        buf.truncate(n);
        let end = n == 0 || result.is_err();
        if n > 0 && tx.send(Ok(buf)).is_err() {
            return; // the consumer stopped
        }
        if let Err(e) = result {
            let _ = tx.send(Err(e));
        }
        if end {
            return;
        }
    });
    ReadAhead { rx, spare: spare_tx, current: Vec::new(), pos: 0, done: false }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(buf)) => {
                    let old = std::mem::replace(&mut self.current, buf);
                    let _ = self.spare.try_send(old);
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                // The producer finished (its sender dropped).
                Err(_) => self.done = true,
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives bytes in odd-sized pieces, then optionally fails.
    struct Source {
        data: Vec<u8>,
        at: usize,
        fail: bool,
    }

    impl Read for Source {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.at == self.data.len() {
                return if self.fail { Err(io::Error::other("broken source")) } else { Ok(0) };
            }
            let n = out.len().min(7919).min(self.data.len() - self.at);
            out[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn data() -> Vec<u8> {
        (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn passes_every_byte_in_order() {
        let want = data();
        let got = std::thread::scope(|s| {
            let mut r = spawn(s, Source { data: want.clone(), at: 0, fail: false });
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            got
        });
        assert_eq!(got.len(), want.len());
        assert!(got == want);
    }

    #[test]
    fn passes_the_error_after_the_data() {
        std::thread::scope(|s| {
            let mut r = spawn(s, Source { data: data(), at: 0, fail: true });
            let mut got = Vec::new();
            let err = r.read_to_end(&mut got).unwrap_err();
            assert_eq!(err.to_string(), "broken source");
            assert_eq!(got.len(), data().len());
        });
    }

    #[test]
    fn a_consumer_that_stops_early_ends_the_producer() {
        // The scope joins the producer: this returns only if dropping the reader stopped it.
        std::thread::scope(|s| {
            let mut r = spawn(s, Source { data: vec![1; 50 << 20], at: 0, fail: false });
            let mut first = [0u8; 10];
            r.read_exact(&mut first).unwrap();
            drop(r);
        });
    }
}
