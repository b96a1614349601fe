//! systemd's service notification protocol (`sd_notify(3)`), spoken directly: a datagram of
//! `KEY=value` lines to the socket `$NOTIFY_SOCKET` names (a path, or `@name` in the abstract
//! namespace). The unit is `Type=notify`: systemd counts the appliance as started when it sends
//! `READY=1` (listeners bound, stores open, requests about to be accepted) and as stopping when
//! it sends `STOPPING=1`. Outside systemd there is no socket and nothing is sent.

use std::os::unix::net::UnixDatagram;

/// The environment variable systemd sets for a `Type=notify` service.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` (`KEY=value` lines) to the service manager, if there is one. Whether it was
/// sent; a failure is logged, never fatal: the appliance serves the same either way.
pub fn notify(state: &str) -> bool {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return false;
    };
    match send(&socket, state.as_bytes()) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, socket = ?socket, "cannot notify systemd");
            false
        }
    }
}

fn send(socket: &std::ffi::OsStr, message: &[u8]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let datagram = UnixDatagram::unbound()?;
    let name = socket.as_bytes();
    let sent = match name.strip_prefix(b"@") {
        Some(abstract_name) => {
            use std::os::linux::net::SocketAddrExt as _;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)?;
            datagram.send_to_addr(message, &address)?
        }
        None if name.starts_with(b"/") => datagram.send_to(message, socket)?,
        None => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither an absolute path nor @abstract",
            ));
        }
    };
    if sent != message.len() {
        return Err(std::io::Error::other("the notification was cut short"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_reaches_a_path_socket_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), b"READY=1\nSTATUS=serving").unwrap();
        let mut buffer = [0u8; 64];
        let read = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..read], b"READY=1\nSTATUS=serving");
        assert!(send(std::ffi::OsStr::new("relative"), b"READY=1").is_err());
    }
}
