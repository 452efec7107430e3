//! An HTTP proxy in front of the relay that loses answers: it forwards each request,
//! and for the first `drop` posts of a message it closes the connection without the
//! relay's answer (the relay has stored it; the client never hears so).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub struct LossyProxy {
    pub url: String,
    /// Posts of a message forwarded so far (answered or not).
    pub posts: Arc<AtomicUsize>,
}

impl LossyProxy {
    /// A proxy to `relay` (`http://127.0.0.1:port`) losing the answers of the first `drop` posts.
    pub fn start(relay: &str, drop: usize) -> LossyProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("a port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = relay.trim_start_matches("http://").to_owned();
        let posts = Arc::new(AtomicUsize::new(0));
        let counter = posts.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (target, counter) = (target.clone(), counter.clone());
                std::thread::spawn(move || forward(stream, &target, &counter, drop));
            }
        });
        LossyProxy { url, posts }
    }
}

/// One request in, one out (`Connection: close` both ways).
fn forward(mut client: TcpStream, target: &str, posts: &AtomicUsize, drop: usize) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head, body) = loop {
        let Ok(n) = client.read(&mut chunk) else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let len = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0usize);
        if buf.len() >= end + 4 + len {
            break (head, buf[end + 4..end + 4 + len].to_vec());
        }
    };
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut out = format!("{request_line}\r\n");
    for l in lines.filter(|l| !l.to_ascii_lowercase().starts_with("connection:")) {
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let Ok(mut relay) = TcpStream::connect(target) else { return };
    let _ = relay.set_read_timeout(Some(Duration::from_secs(30)));
    if relay.write_all(out.as_bytes()).and_then(|_| relay.write_all(&body)).is_err() {
        return;
    }
    let mut answer = Vec::new();
    let _ = relay.read_to_end(&mut answer);
    if request_line.starts_with("POST /v1/messages ") && posts.fetch_add(1, Ordering::SeqCst) < drop {
        return; // the relay has it; the client never hears
    }
    let _ = client.write_all(&answer);
}
