//! The workload's output: echoed line by line with a prefix, and scanned for the readiness
//! string.

use std::io::{Read, Write};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

/// Finds a byte string in a stream that arrives in pieces, including across piece borders.
#[derive(Debug)]
pub(super) struct ReadinessMatcher {
    needle: Vec<u8>,
    /// The last `needle.len() - 1` bytes seen, which a match may start in.
    tail: Vec<u8>,
}

impl ReadinessMatcher {
    pub(super) fn new(needle: &[u8]) -> ReadinessMatcher {
        ReadinessMatcher {
            needle: needle.to_vec(),
            tail: Vec::new(),
        }
    }

    /// Feeds the next piece; returns true when the needle ends inside it.
    pub(super) fn feed(&mut self, piece: &[u8]) -> bool {
        if self.needle.is_empty() {
            return true;
        }
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(piece);
        let found = window
            .windows(self.needle.len())
            .any(|candidate| candidate == self.needle.as_slice());
        let keep = (self.needle.len() - 1).min(window.len());
        self.tail = window.split_off(window.len() - keep);
        found
    }
}

/// Sent by the output threads to the waiting loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OutputEvent {
    /// The readiness string appeared.
    Ready,
}

/// Copies `reader` to stderr line by line, each line prefixed with `prefix`, until end of file.
/// Sends [`OutputEvent::Ready`] once when `matcher` finds its string.
pub(super) fn spawn_echo(
    mut reader: impl Read + Send + 'static,
    prefix: String,
    mut matcher: Option<ReadinessMatcher>,
    events: Sender<OutputEvent>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("lazypull-workload-output".to_owned())
        .spawn(move || {
            let mut buffer = [0u8; 8192];
            let mut line = Vec::new();
            loop {
                let read = match reader.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(read) => read,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let piece = &buffer[..read];
                if let Some(found) = matcher.as_mut().map(|m| m.feed(piece))
                    && found
                {
                    matcher = None;
                    // The receiver is gone only once the run is over; nothing waits then.
                    let _ = events.send(OutputEvent::Ready);
                }
                for &byte in piece {
                    line.push(byte);
                    if byte == b'\n' {
                        print_line(&prefix, &line);
                        line.clear();
                    }
                }
            }
            if !line.is_empty() {
                line.push(b'\n');
                print_line(&prefix, &line);
            }
        })
}

fn print_line(prefix: &str, line: &[u8]) {
    let mut stderr = std::io::stderr().lock();
    // Echoing is best effort: a closed stderr must not stop the workload or the recording.
    let _ = stderr.write_all(prefix.as_bytes());
    let _ = stderr.write_all(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_finds_string_split_across_pieces() {
        let mut matcher = ReadinessMatcher::new(b"READY");
        assert!(!matcher.feed(b"starting... RE"));
        assert!(!matcher.feed(b"A"));
        assert!(matcher.feed(b"DY\n"));
    }

    #[test]
    fn matcher_finds_string_inside_one_piece() {
        let mut matcher = ReadinessMatcher::new(b"listening");
        assert!(matcher.feed(b"server listening on :80\n"));
    }

    #[test]
    fn matcher_ignores_near_misses() {
        let mut matcher = ReadinessMatcher::new(b"READY");
        assert!(!matcher.feed(b"READ"));
        assert!(!matcher.feed(b"X? no: REA"));
        assert!(!matcher.feed(b"D"));
    }
}
