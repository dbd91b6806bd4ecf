//! TCP sockets by state through netlink `sock_diag` (`NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY`):
//! the kernel answers with fixed-size binary records, where `/proc/net/tcp` and `tcp6` format a
//! text line per socket and walk the whole established hash table once per 4 KiB page read.
//! Measured on the 2-core VM (273 IPv4 sockets, 2 IPv6): reading `/proc/net/tcp` + `tcp6` cost
//! 4.7 + 3.9 ms of CPU, the two dumps here 0.46 + 0.33 ms.

use std::io::{self, Read as _, Write as _};

/// `AF_NETLINK`, `NETLINK_SOCK_DIAG`, `IPPROTO_TCP` (Linux ABI constants).
const AF_NETLINK: i32 = 16;
const NETLINK_SOCK_DIAG: i32 = 4;
const IPPROTO_TCP: u8 = 6;
/// `AF_INET`, `AF_INET6`.
pub(crate) const AF_INET: u8 = 2;
pub(crate) const AF_INET6: u8 = 10;

/// `NLMSG_ERROR`, `NLMSG_DONE`.
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `SOCK_DIAG_BY_FAMILY`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLM_F_REQUEST | NLM_F_DUMP`.
const DUMP_REQUEST: u16 = 0x1 | 0x300;
/// `sizeof(struct nlmsghdr)`.
const NLMSG_HDR: usize = 16;
/// `sizeof(struct inet_diag_req_v2)`.
const REQ_LEN: usize = 56;
/// `sizeof(struct inet_diag_msg)`: family, state, timer, retrans, sockid (48), 5 × u32.
const MSG_LEN: usize = 72;

/// TCP state numbers of the kernel (`include/net/tcp_states.h`), 1..=12.
pub(crate) const TCP_LISTEN: u8 = 10;

/// One TCP socket as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpSocket {
    /// Kernel TCP state (1 established … 10 listen … 12 new_syn_recv).
    pub state: u8,
    /// Local port.
    pub local_port: u16,
}

/// A netlink `sock_diag` socket, kept open between samples with its receive buffer.
#[derive(Debug)]
pub(crate) struct SockDiag {
    socket: socket2::Socket,
    buf: Vec<u8>,
    seq: u32,
}

impl SockDiag {
    /// Opens the netlink socket (fails where `sock_diag` is not available).
    pub(crate) fn open() -> io::Result<SockDiag> {
        // Close-on-exec is set by socket2.
        let socket = socket2::Socket::new(
            socket2::Domain::from(AF_NETLINK),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::from(NETLINK_SOCK_DIAG)),
        )?;
        // The kernel answers at once; a read that waits this long means something is wrong, and
        // the sample fails (and falls back to /proc) instead of stalling the sensor's runtime.
        socket.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        Ok(SockDiag {
            socket,
            buf: vec![0; 32 * 1024],
            seq: 0,
        })
    }

    /// Calls `each` for every TCP socket of `family` (`AF_INET` or `AF_INET6`) whose state is in
    /// the `states` bit mask (bit N = state N). On an error the socket must not be reused.
    pub(crate) fn tcp_sockets(
        &mut self,
        family: u8,
        states: u32,
        mut each: impl FnMut(TcpSocket),
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut req = [0u8; NLMSG_HDR + REQ_LEN];
        req[0..4].copy_from_slice(&((NLMSG_HDR + REQ_LEN) as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        req[6..8].copy_from_slice(&DUMP_REQUEST.to_ne_bytes());
        req[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        req[NLMSG_HDR] = family;
        req[NLMSG_HDR + 1] = IPPROTO_TCP;
        req[NLMSG_HDR + 4..NLMSG_HDR + 8].copy_from_slice(&states.to_ne_bytes());
        // To the kernel (port id 0): write(2) on an unconnected netlink socket sends there.
        self.socket.write_all(&req)?;
        loop {
            let n = self.socket.read(&mut self.buf)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "sock_diag closed",
                ));
            }
            let mut off = 0;
            while off + NLMSG_HDR <= n {
                let b = &self.buf[off..n];
                let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let kind = u16::from_ne_bytes([b[4], b[5]]);
                let seq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
                if len < NLMSG_HDR || len > b.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "malformed netlink message",
                    ));
                }
                if seq == self.seq {
                    match kind {
                        NLMSG_DONE => return Ok(()),
                        NLMSG_ERROR => {
                            let code = b
                                .get(NLMSG_HDR..NLMSG_HDR + 4)
                                .map_or(0, |e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]));
                            return Err(if code < 0 {
                                io::Error::from_raw_os_error(-code)
                            } else {
                                io::Error::other("sock_diag error")
                            });
                        }
                        SOCK_DIAG_BY_FAMILY if len >= NLMSG_HDR + MSG_LEN => {
                            let m = &b[NLMSG_HDR..];
                            each(TcpSocket {
                                state: m[1],
                                // The socket id's ports are big-endian.
                                local_port: u16::from_be_bytes([m[4], m[5]]),
                            });
                        }
                        _ => {}
                    }
                }
                // NLMSG_ALIGN: messages start on 4-byte boundaries.
                off += (len + 3) & !3;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_listening_socket_and_a_connection_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _server = listener.accept().unwrap();
        let mut diag = SockDiag::open().unwrap();
        let (mut listening, mut established) = (false, 0);
        diag.tcp_sockets(AF_INET, u32::MAX, |s| {
            if s.local_port == port {
                listening |= s.state == TCP_LISTEN;
                established += usize::from(s.state == 1);
            }
        })
        .unwrap();
        assert!(listening, "listening port {port} not reported");
        // The accepted side has the listener's port as its local port.
        assert!(established >= 1);
        // Listening sockets only: no established socket comes back.
        let mut others = 0;
        diag.tcp_sockets(AF_INET, 1 << TCP_LISTEN, |s| {
            others += usize::from(s.state != TCP_LISTEN);
        })
        .unwrap();
        assert_eq!(others, 0);
    }
}
