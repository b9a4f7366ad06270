//! The load generator's HTTP/1.1 client: one keep-alive connection driven inside the attempt that
//! uses it, with `httparse` for the response head and chunk sizes.
//!
//! Why not hyper's client here: hyper runs each connection as its own task behind a channel and a
//! oneshot per request, which costs a measured ~2.6 us of CPU per request on the bench machine
//! (wrk: ~0.7 us); on two cores shared with the server that is the difference between keeping up
//! with wrk and not. A load generator sends one fixed request (its head prepared once, the
//! body, if any, by `Content-Length`) and reads the response to its end, so the client is small:
//! write the request (one `write` syscall), read until the head parses, then skip the body by
//! `Content-Length`, chunked framing, or the connection's end.
//! HTTP/2 stays on hyper (`driver.rs`), and so do the backends of `meshbench serve`.
//!
//! Sources: RFC 9112 section 6.3 (message body length: 1xx/204/304 have none; chunked wins over
//! Content-Length; otherwise the body runs to the connection's close), section 9.3 (persistence:
//! `Connection: close`, and HTTP/1.0 without `keep-alive`).

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A byte stream to an endpoint: TCP, or TLS over TCP.
pub(crate) trait Stream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// Most response headers the client looks through (nginx sends 5-7; hyper's default is 100).
const MAX_HEADERS: usize = 64;
/// Longest response head accepted (hyper's default read buffer limit is ~400 KiB; a test backend
/// that sends more is broken).
const MAX_HEAD: usize = 64 * 1024;

/// One HTTP/1.1 connection with its read buffer.
pub(crate) struct Connection {
    io: Box<dyn Stream>,
    buf: BytesMut,
    request: Vec<u8>,
    /// The value of the last response's report header (ORCA `endpoint-load-metrics`, or a
    /// probe's answer), empty when it had none.
    report: Vec<u8>,
}

/// Response headers whose value the client keeps (see [`Connection::report`]).
const REPORT_HEADERS: [&str; 2] = [
    meshbench_scenario::workload::LOAD_HEADER,
    meshbench_scenario::workload::PROBE_HEADER,
];

/// Why an exchange failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The connection was closed or reset before any byte of a response arrived: on a pooled
    /// keep-alive connection this is the server's idle close, and a fresh connection may retry.
    Closed,
    /// The response was cut off, malformed, or the socket failed mid-response.
    Broken,
}

/// The head of a request, without the per-attempt headers: `GET {path} HTTP/1.1`, `Host`.
pub(crate) fn request_head(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n").into_bytes()
}

/// The head of a work request as a [`crate::driver::RequestSpec`] asks for it: its method, the
/// path, `Host`, its headers, and `content-length` when it has a body (written after the
/// per-attempt headers by [`Connection::get`]).
pub(crate) fn request_head_with(
    spec: &crate::driver::RequestSpec,
    path: &str,
    host: &str,
) -> Vec<u8> {
    let mut head = format!("{} {path} HTTP/1.1\r\nhost: {host}\r\n", spec.method).into_bytes();
    for (name, value) in &spec.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !spec.body.is_empty() {
        head.extend_from_slice(format!("content-length: {}\r\n", spec.body.len()).as_bytes());
    }
    head
}

impl Connection {
    /// Wraps an open stream.
    pub(crate) fn new(io: Box<dyn Stream>) -> Self {
        Connection {
            io,
            buf: BytesMut::with_capacity(4096),
            request: Vec::with_capacity(256),
            report: Vec::new(),
        }
    }

    /// The last response's report header value (empty without one).
    pub(crate) fn report(&self) -> &[u8] {
        &self.report
    }

    /// Sends the request with the prepared head `head` (request line, `Host`, the spec's
    /// headers), `extra` headers (name, value), the `traceparent` and `body`, and reads the whole
    /// response: its status, and whether the connection may carry another request.
    pub(crate) async fn get(
        &mut self,
        head: &[u8],
        extra: &[(&[u8], u64)],
        traceparent: Option<&[u8; 55]>,
        body: &[u8],
    ) -> Result<(u16, bool), Failure> {
        self.request.clear();
        self.request.extend_from_slice(head);
        let mut digits = itoa::Buffer::new();
        for (name, value) in extra {
            self.request.extend_from_slice(name);
            self.request.extend_from_slice(b": ");
            self.request
                .extend_from_slice(digits.format(*value).as_bytes());
            self.request.extend_from_slice(b"\r\n");
        }
        if let Some(t) = traceparent {
            self.request.extend_from_slice(b"traceparent: ");
            self.request.extend_from_slice(t);
            self.request.extend_from_slice(b"\r\n");
        }
        self.request.extend_from_slice(b"\r\n");
        self.request.extend_from_slice(body);
        if self.io.write_all(&self.request).await.is_err() || self.io.flush().await.is_err() {
            return Err(Failure::Closed);
        }
        self.read_response().await
    }

    /// Reads more bytes into the buffer; `false` at the end of the stream.
    async fn fill(&mut self) -> Result<bool, Failure> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(4096);
        }
        self.io
            .read_buf(&mut self.buf)
            .await
            .map(|n| n > 0)
            .map_err(|_| Failure::Broken)
    }

    async fn read_response(&mut self) -> Result<(u16, bool), Failure> {
        let mut any = false;
        loop {
            // The head: parse what is buffered, read more while it is partial.
            let (status, len, framing, keep_alive) = loop {
                if !self.buf.is_empty() {
                    any = true;
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let mut resp = httparse::Response::new(&mut headers);
                    match resp.parse(&self.buf) {
                        Ok(httparse::Status::Complete(len)) => {
                            let status = resp.code.unwrap_or(0);
                            self.report.clear();
                            if let Some(h) = resp.headers.iter().find(|h| {
                                REPORT_HEADERS
                                    .iter()
                                    .any(|n| h.name.eq_ignore_ascii_case(n))
                            }) {
                                self.report.extend_from_slice(h.value);
                            }
                            let (framing, keep_alive) = framing(&resp, status);
                            break (status, len, framing, keep_alive);
                        }
                        Ok(httparse::Status::Partial) if self.buf.len() < MAX_HEAD => {}
                        _ => return Err(Failure::Broken),
                    }
                }
                // The end of the stream or a reset before any byte of a response: the server
                // closed the connection (on a pooled one, its idle close raced our request).
                if !matches!(self.fill().await, Ok(true)) {
                    return Err(if any {
                        Failure::Broken
                    } else {
                        Failure::Closed
                    });
                }
            };
            self.buf.advance(len);
            match framing {
                // An interim response (100 Continue, 103 Early Hints): the real one follows.
                Framing::Interim => continue,
                Framing::None => {}
                Framing::Length(n) => self.skip(n).await?,
                Framing::Chunked => self.skip_chunked().await?,
                Framing::UntilClose => {
                    while self.fill().await? {
                        self.buf.clear();
                    }
                    return Ok((status, false));
                }
            }
            return Ok((status, keep_alive));
        }
    }

    /// Skips `n` body bytes.
    async fn skip(&mut self, mut n: u64) -> Result<(), Failure> {
        loop {
            let have = (self.buf.len() as u64).min(n);
            self.buf.advance(have as usize);
            n -= have;
            if n == 0 {
                return Ok(());
            }
            if !self.fill().await? {
                return Err(Failure::Broken);
            }
        }
    }

    /// Skips a chunked body: chunks, the last (empty) chunk, trailers, the final empty line.
    async fn skip_chunked(&mut self) -> Result<(), Failure> {
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((at, size))) => {
                        self.buf.advance(at);
                        break size;
                    }
                    Ok(httparse::Status::Partial) if self.buf.len() < MAX_HEAD => {
                        if !self.fill().await? {
                            return Err(Failure::Broken);
                        }
                    }
                    _ => return Err(Failure::Broken),
                }
            };
            if size == 0 {
                return self.skip_trailers().await;
            }
            // The chunk's data and its CRLF.
            self.skip(size + 2).await?;
        }
    }

    /// Skips trailer lines up to and including the empty line that ends the message.
    async fn skip_trailers(&mut self) -> Result<(), Failure> {
        loop {
            match self.buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let empty = i == 0 || (i == 1 && self.buf[0] == b'\r');
                    self.buf.advance(i + 1);
                    if empty {
                        return Ok(());
                    }
                }
                None if self.buf.len() < MAX_HEAD => {
                    if !self.fill().await? {
                        return Err(Failure::Broken);
                    }
                }
                None => return Err(Failure::Broken),
            }
        }
    }
}

/// How a response's body is delimited (RFC 9112 section 6.3).
enum Framing {
    Interim,
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The response's framing and whether the connection stays open after it.
fn framing(resp: &httparse::Response<'_, '_>, status: u16) -> (Framing, bool) {
    let mut length = None;
    let mut chunked = false;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    close = false;
                }
            }
        }
    }
    let framing = match status {
        100..=199 => Framing::Interim,
        204 | 304 => Framing::None,
        _ if chunked => Framing::Chunked,
        _ => match length {
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        },
    };
    (framing, !close)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A server that reads one request head per entry of `replies` and answers it with the raw
    /// bytes given (split into two writes at `split` to exercise partial reads), closing at the
    /// end.
    async fn serve(replies: Vec<&'static [u8]>, split: usize) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            for reply in replies {
                loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..i + 4);
                        break;
                    }
                    let mut b = [0u8; 1024];
                    let n = s.read(&mut b).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&b[..n]);
                }
                let at = split.min(reply.len());
                s.write_all(&reply[..at]).await.unwrap();
                s.flush().await.unwrap();
                tokio::task::yield_now().await;
                s.write_all(&reply[at..]).await.unwrap();
            }
        });
        addr
    }

    async fn connect(addr: std::net::SocketAddr) -> Connection {
        Connection::new(Box::new(TcpStream::connect(addr).await.unwrap()))
    }

    #[tokio::test]
    async fn frames_every_kind_of_body_on_one_connection() {
        for split in [1, 7, 1000] {
            let addr = serve(
                vec![
                    b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n",
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nRust\r\n10;x=y\r\n0123456789abcdef\r\n0\r\ntrailer: 1\r\n\r\n",
                    b"HTTP/1.1 204 No Content\r\n\r\n",
                    b"HTTP/1.1 500 Oops\r\nconnection: close\r\ncontent-length: 2\r\n\r\nno",
                ],
                split,
            )
            .await;
            let mut c = connect(addr).await;
            let head = request_head("/work", "x");
            let ids: &[(&[u8], u64)] = &[(b"x-meshbench-request", 42)];
            assert_eq!(
                c.get(&head, ids, None, &[]).await,
                Ok((200, true)),
                "split {split}"
            );
            assert_eq!(
                c.get(&head, ids, None, &[]).await,
                Ok((503, true)),
                "split {split}"
            );
            assert_eq!(
                c.get(&head, ids, None, &[]).await,
                Ok((200, true)),
                "split {split}"
            );
            assert_eq!(
                c.get(&head, ids, None, &[]).await,
                Ok((204, true)),
                "split {split}"
            );
            assert_eq!(
                c.get(&head, ids, None, &[]).await,
                Ok((500, false)),
                "split {split}"
            );
            assert!(c.buf.is_empty(), "every byte consumed");
        }
    }

    #[tokio::test]
    async fn body_until_close_and_http10() {
        let addr = serve(vec![b"HTTP/1.0 200 OK\r\n\r\nall of it"], 3).await;
        let mut c = connect(addr).await;
        assert_eq!(
            c.get(&request_head("/", "x"), &[], None, &[]).await,
            Ok((200, false))
        );
    }

    #[tokio::test]
    async fn closed_before_answering_is_retryable_but_cut_off_or_garbage_is_not() {
        // Closes after the request without a byte: the idle keep-alive close.
        let addr = serve(vec![], 0).await;
        let mut c = connect(addr).await;
        assert_eq!(
            c.get(&request_head("/", "x"), &[], None, &[]).await,
            Err(Failure::Closed)
        );
        let addr = serve(
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"],
            4,
        )
        .await;
        let mut c = connect(addr).await;
        assert_eq!(
            c.get(&request_head("/", "x"), &[], None, &[]).await,
            Err(Failure::Broken)
        );
        let addr = serve(vec![b"SSH-2.0-OpenSSH_9.2\r\n\r\n"], 4).await;
        let mut c = connect(addr).await;
        assert_eq!(
            c.get(&request_head("/", "x"), &[], None, &[]).await,
            Err(Failure::Broken)
        );
    }

    #[test]
    fn request_bytes() {
        let head = request_head("/work", "127.0.0.1:8080");
        assert_eq!(head, b"GET /work HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n");
    }
}
