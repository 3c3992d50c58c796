//! A forward-only `Seek` over a stream, so the format crate's tar scanner can walk a
//! decompressor's output without a temporary file.

use std::io::{self, Read, Seek, SeekFrom};

use estargz::tar::scan::UNKNOWN_LENGTH;

/// Wraps a reader; seeking forward reads and drops bytes, seeking back fails, and the length
/// (`SeekFrom::End(0)`) is reported as [`UNKNOWN_LENGTH`].
pub struct ForwardSeek<R> {
    inner: R,
    position: u64,
}

impl<R: Read> ForwardSeek<R> {
    /// Wraps `inner`, positioned at 0.
    pub fn new(inner: R) -> Self {
        ForwardSeek { inner, position: 0 }
    }

    /// Bytes read or skipped so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Reads the rest of the stream, counting it, and returns the inner reader.
    pub fn drain(mut self) -> io::Result<(R, u64)> {
        let rest = io::copy(&mut self.inner, &mut io::sink())?;
        Ok((self.inner, self.position + rest))
    }

    fn skip(&mut self, len: u64) -> io::Result<()> {
        let skipped = io::copy(&mut (&mut self.inner).take(len), &mut io::sink())?;
        self.position += skipped;
        if skipped < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("stream ends {} bytes before a skip target", len - skipped),
            ));
        }
        Ok(())
    }
}

impl<R: Read> Read for ForwardSeek<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.position += n as u64;
        Ok(n)
    }
}

impl<R: Read> Seek for ForwardSeek<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::End(0) => return Ok(UNKNOWN_LENGTH),
            SeekFrom::Start(at) => Some(at),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
            SeekFrom::End(_) => None,
        };
        match target {
            Some(at) if at >= self.position => {
                self.skip(at - self.position)?;
                Ok(self.position)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "a layer stream cannot seek back (at {}, asked {to:?})",
                    self.position
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_seeks_skip_and_backward_seeks_fail() {
        let mut s = ForwardSeek::new(&b"0123456789"[..]);
        assert_eq!(s.seek(SeekFrom::End(0)).unwrap(), UNKNOWN_LENGTH);
        assert_eq!(s.seek(SeekFrom::Start(0)).unwrap(), 0);
        assert_eq!(s.seek(SeekFrom::Current(3)).unwrap(), 3);
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"3");
        assert!(s.seek(SeekFrom::Start(1)).is_err());
        assert_eq!(
            s.seek(SeekFrom::Start(20)).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
