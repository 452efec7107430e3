//! The load generator's HTTP/1.1 client: one keep-alive connection, requests
//! written as prepared bytes, responses read just far enough to know the status
//! and where the body ends. It does what `wrk` does per request and no more, so
//! the floor the bench measures is the relay's, not the generator's
//! (`client_cpu_share` in every load scenario says how much CPU it took).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Conn {
    addr: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

/// A prepared request: the bytes to write.
pub fn request(method: &str, host: &str, path: &str, body: Option<&[u8]>) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n").into_bytes();
    if let Some(body) = body {
        out.extend(format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
    } else {
        out.extend(b"\r\n");
    }
    out
}

impl Conn {
    pub fn new(addr: &str) -> Conn {
        Conn { addr: addr.to_owned(), stream: None, buf: Vec::with_capacity(16 * 1024) }
    }

    /// Sends one prepared request and returns the response's status and body.
    pub async fn send(&mut self, request: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        for attempt in 0..2 {
            if self.stream.is_none() {
                let s = TcpStream::connect(&self.addr).await?;
                s.set_nodelay(true)?;
                self.stream = Some(s);
                self.buf.clear();
            }
            match self.exchange(request).await {
                Ok(r) => return Ok(r),
                // A kept-alive connection the server closed: once more on a new one.
                Err(e) if attempt == 0 => {
                    self.stream = None;
                    let _ = e;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!()
    }

    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let stream = self.stream.as_mut().expect("connected");
        stream.write_all(request).await?;
        let closed = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed");
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if read_more(stream, &mut self.buf).await? == 0 {
                return Err(closed());
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let header = |name: &str| {
            head.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim_start_matches(':').trim().to_owned()))
        };
        let body = if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while self.buf.len() < head_end + len {
                if read_more(stream, &mut self.buf).await? == 0 {
                    return Err(closed());
                }
            }
            let body = self.buf[head_end..head_end + len].to_vec();
            self.buf.drain(..head_end + len);
            body
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = Vec::new();
            let mut at = head_end;
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf[at..], b"\r\n") {
                        break at + i;
                    }
                    if read_more(stream, &mut self.buf).await? == 0 {
                        return Err(closed());
                    }
                };
                let size = usize::from_str_radix(String::from_utf8_lossy(&self.buf[at..line_end]).trim(), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
                let chunk_end = line_end + 2 + size + 2;
                while self.buf.len() < chunk_end {
                    if read_more(stream, &mut self.buf).await? == 0 {
                        return Err(closed());
                    }
                }
                body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                at = chunk_end;
                if size == 0 {
                    break;
                }
            }
            self.buf.drain(..at);
            body
        } else {
            return Err(std::io::Error::other("a response without a length"));
        };
        if header("connection").is_some_and(|v| v == "close") {
            self.stream = None;
        }
        Ok((status, body))
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
