//! systemd's readiness protocol: a datagram such as `READY=1` to `$NOTIFY_SOCKET`, for units
//! with `Type=notify`. Without the variable (not started by systemd) nothing is sent.

use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;

/// Sends `state` (`READY=1`, `STOPPING=1`, ...) to systemd when it asked for notifications.
/// Failures are logged: the daemon works the same without systemd.
pub fn notify(state: &str) {
    if let Some(socket) = std::env::var_os("NOTIFY_SOCKET")
        && let Err(error) = send(&socket, state)
    {
        tracing::warn!(state, %error, "failed to notify systemd");
    }
}

fn send(socket: &OsStr, state: &str) -> std::io::Result<usize> {
    let datagram = UnixDatagram::unbound()?;
    // A leading '@' names a socket in the abstract namespace.
    match socket.as_encoded_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            datagram.send_to_addr(state.as_bytes(), &address)
        }
        None => datagram.send_to(state.as_bytes(), socket),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reaches_the_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buffer = [0u8; 64];
        let read = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..read], b"READY=1");
    }
}
