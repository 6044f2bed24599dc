//! The TCP sockets hbdeploy's SSH connections run on, tuned for SSH's small round trips.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A TCP connection to `address:port` for SSH, with `TCP_NODELAY` set. russh's `nodelay`
/// setting acts only in its own `connect`, not in `connect_stream`, which hbdeploy uses (a jump
/// host's channel is a stream too). Without it, Nagle's algorithm holds a small message sent
/// while an earlier one is not yet acknowledged until the host's delayed ACK, about 40 ms: the
/// handshake sends such pairs (`--timings` CONNECT on an idle systemd lab host: 0.05 → 0.01 s).
/// Failing to set it would only cost that latency, so it is not an error.
pub(crate) async fn dial(address: &str, port: u16) -> std::io::Result<Socket> {
    let socket = tokio::net::TcpStream::connect((address, port)).await?;
    let _ = socket.set_nodelay(true);
    Ok(Socket(socket))
}

/// A dialed SSH socket that acknowledges at once what it has read (`TCP_QUICKACK` after every
/// read that returned data). Until its session starts, OpenSSH's sshd writes without
/// `TCP_NODELAY`: after authentication it sends two messages (the success, then its host keys),
/// and its answer to the channel the client opens next waits, by Nagle's algorithm, for the
/// ACK of the second, which Linux delays by about 40 ms on a connection it takes for
/// interactive. Every login lost those 40 ms before its command ran (strace of a lab host's
/// sshd: 42 ms idle, waiting for the client, between the channel's confirmation and the
/// command). Failing to set it only costs that latency.
pub(crate) struct Socket(tokio::net::TcpStream);

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let _ = rustix::net::sockopt::set_tcp_quickack(&self.0, true);
        }
        polled
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every SSH connection (and every key scan) dials through `dial`: its socket must have
    /// TCP_NODELAY, or the handshake's back-to-back messages wait about 40 ms on the host's
    /// delayed ACK.
    #[tokio::test]
    async fn dialed_sockets_send_small_messages_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let socket = dial("127.0.0.1", port).await.unwrap();
        assert!(socket.0.nodelay().unwrap(), "TCP_NODELAY is not set");
    }

    /// What a dialed socket reads is acknowledged at once, also on a connection Linux takes for
    /// interactive (where it delays ACKs): sshd's answer, held back by Nagle's algorithm until
    /// that ACK, then comes without the delay.
    #[tokio::test]
    async fn dialed_sockets_acknowledge_what_they_read_at_once() {
        use rustix::net::sockopt::{set_tcp_quickack, tcp_quickack};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut socket = dial("127.0.0.1", port).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        set_tcp_quickack(&socket.0, false).unwrap();
        assert!(
            !tcp_quickack(&socket.0).unwrap(),
            "ACKs are not delayed to begin with"
        );
        server.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        socket.read_exact(&mut byte).await.unwrap();
        assert!(
            tcp_quickack(&socket.0).unwrap(),
            "a read left the ACK to Linux's delayed-ACK timer"
        );
    }
}
