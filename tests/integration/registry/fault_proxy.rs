//! A fault-injecting HTTP/1.1 proxy on 127.0.0.1 for the registry tests:
//! drops connections, answers with error statuses, loses answers, corrupts
//! bodies, and logs every request so tests can count what was sent; and a
//! bearer-token endpoint that checks credentials.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Forward,
    /// Close the connection without answering.
    Drop,
    /// Forward, then close without passing the answer on (the registry did
    /// the work; the client does not know).
    ForwardThenDrop,
    /// Answer with this status (an error body, `Retry-After: 0` for 429).
    Status(u16),
    /// Forward and flip a byte of the answer's body.
    Corrupt,
    /// Answer 200 with this content type and body.
    Canned(&'static str, &'static str),
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub body_len: usize,
    pub action: Action,
}

pub type Rule = dyn Fn(&str, &str, usize) -> Action + Send + Sync;

/// A loopback HTTP/1.1 proxy in front of a registry, one request per
/// connection, applying `rule(method, path, n)` where `n` counts earlier
/// requests with the same method and path (query ignored). It stops when dropped and after
/// two minutes at most.
pub struct FaultProxy {
    pub addr: String,
    log: Arc<Mutex<Vec<Logged>>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub fn start(upstream: &str, rule: Box<Rule>) -> FaultProxy {
        FaultProxy::start_rewriting(upstream, rule, None)
    }

    /// Like [`FaultProxy::start`], and replaces `from` by `to` in the
    /// headers of every forwarded answer (to point a bearer challenge's
    /// realm elsewhere).
    pub fn start_rewriting(
        upstream: &str,
        rule: Box<Rule>,
        rewrite: Option<(String, String)>,
    ) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr").to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let rule: Arc<Rule> = Arc::from(rule);
        let (log2, stop2, upstream) = (log.clone(), stop.clone(), upstream.to_string());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut served = 0;
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline && served < 5000 {
                match listener.accept() {
                    Ok((conn, _)) => {
                        served += 1;
                        let (log, rule, upstream) = (log2.clone(), rule.clone(), upstream.clone());
                        let rewrite = rewrite.clone();
                        std::thread::spawn(move || serve(conn, &upstream, &*rule, &log, &rewrite));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy { addr, log, stop }
    }

    pub fn log(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn read_head(conn: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Some((buf, rest));
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        // TLS handshakes (imgb probes HTTPS first) are not HTTP.
        if buf.is_empty() && chunk[0] == 0x16 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn serve(
    mut conn: TcpStream,
    upstream: &str,
    rule: &Rule,
    log: &Mutex<Vec<Logged>>,
    rewrite: &Option<(String, String)>,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Some((head, mut body)) = read_head(&mut conn) else {
        return;
    };
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut length = 0usize;
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("connection:") {
            continue;
        }
        headers.push(line.to_string());
    }
    while body.len() < length {
        let mut chunk = vec![0u8; 64 * 1024];
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let action = {
        let mut log = log.lock().unwrap();
        // Upload URLs change their query (`_state`) on every answer; the
        // path alone names the upload session.
        let key = |p: &str| p.split('?').next().unwrap_or("").to_string();
        let n = log
            .iter()
            .filter(|l| l.method == method && key(&l.path) == key(&path))
            .count();
        let action = rule(&method, &path, n);
        log.push(Logged {
            method: method.clone(),
            path: path.clone(),
            body_len: length,
            action,
        });
        action
    };
    match action {
        Action::Drop => {
            let _ = conn.shutdown(Shutdown::Both);
        }
        Action::Status(code) => {
            let body = format!(
                r#"{{"errors":[{{"code":"INJECTED","message":"fault proxy says {code}"}}]}}"#
            );
            let _ = write!(
                conn,
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 0\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        Action::Canned(content_type, body) => {
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        Action::Forward | Action::ForwardThenDrop | Action::Corrupt => {
            let Ok(mut up) = TcpStream::connect(upstream) else {
                return;
            };
            let _ = up.set_read_timeout(Some(Duration::from_secs(30)));
            let mut request = format!("{request_line}\r\n");
            for h in &headers {
                request.push_str(h);
                request.push_str("\r\n");
            }
            request.push_str("Connection: close\r\n\r\n");
            if up.write_all(request.as_bytes()).is_err() || up.write_all(&body[..length]).is_err() {
                return;
            }
            let mut response = Vec::new();
            let _ = up.read_to_end(&mut response);
            if let Some((from, to)) = rewrite {
                if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&response[..end]).replace(from, to);
                    let mut rewritten = head.into_bytes();
                    rewritten.extend_from_slice(&response[end..]);
                    response = rewritten;
                }
            }
            match action {
                Action::ForwardThenDrop => {
                    let _ = conn.shutdown(Shutdown::Both);
                    return;
                }
                Action::Corrupt => {
                    if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
                        if let Some(b) = response.get_mut(end + 4 + 100) {
                            *b ^= 0xff;
                        }
                    }
                }
                _ => {}
            }
            let _ = conn.write_all(&response);
            let _ = conn.shutdown(Shutdown::Write);
        }
    }
}

/// A bearer-token endpoint on 127.0.0.1 that issues a token only for the
/// right basic credentials, logging each request's target (path and query).
pub struct TokenServer {
    pub addr: String,
    log: Arc<Mutex<Vec<(String, bool)>>>,
    stop: Arc<AtomicBool>,
}

impl TokenServer {
    pub fn start(user: &str, password: &str) -> TokenServer {
        use base64::Engine as _;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr").to_string();
        let expected = format!(
            "basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
        .to_ascii_lowercase();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let Some((head, _)) = read_head(&mut conn) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&head).into_owned();
                let target = text.split(' ').nth(1).unwrap_or("").to_string();
                let authorized = text
                    .lines()
                    .any(|l| l.to_ascii_lowercase().trim() == format!("authorization: {expected}"));
                log2.lock().unwrap().push((target, authorized));
                let (status, body) = if authorized {
                    ("200 OK", r#"{"token":"issued-for-imgb","expires_in":300}"#)
                } else {
                    ("401 Unauthorized", r#"{"details":"bad credentials"}"#)
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenServer { addr, log, stop }
    }

    /// (request target, whether it carried the right credentials)
    pub fn log(&self) -> Vec<(String, bool)> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
