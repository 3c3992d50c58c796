//! A minimal HTTP/1.0 GET used to see whether a daemon on loopback is ready.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Sends `GET path` to 127.0.0.1:`port` and returns the status code, or `None` when the
/// connection or the status line fails.
pub(crate) fn get_status(port: u16, path: &str) -> Option<u16> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 64];
    let mut filled = 0;
    while filled < head.len() {
        match stream.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(_) => return None,
        }
    }
    // "HTTP/1.1 200 OK": the code is the second space-separated field.
    let text = std::str::from_utf8(&head[..filled]).ok()?;
    text.split(' ').nth(1)?.parse().ok()
}
