//! A fault-injecting HTTP/1.1 proxy on 127.0.0.1 for the registry tests:
//! drops connections, answers with error statuses, loses answers, corrupts
//! bodies, and logs every request so tests can count what was sent; and a
//! bearer-token endpoint that checks credentials.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Read the request and never answer.
    Silent,
    /// Answer 200 with a `Content-Length` of a megabyte, then send nothing.
    Stall,
    /// Answer 200 with a `Content-Length` of a megabyte, then one byte per
    /// this many milliseconds.
    Trickle(u64),
    /// Answer with this status and an endless chunked body (up to 4 GiB).
    Endless(u16),
    /// Answer 401 with a bearer challenge whose realm is this proxy's
    /// `/token`.
    Challenge,
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
    /// Body bytes sent by `Endless` and `Trickle` answers.
    sent: Arc<AtomicU64>,
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
        let sent = Arc::new(AtomicU64::new(0));
        let (log2, stop2, upstream) = (log.clone(), stop.clone(), upstream.to_string());
        let (sent2, own) = (sent.clone(), addr.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut served = 0;
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline && served < 5000 {
                match listener.accept() {
                    Ok((conn, _)) => {
                        served += 1;
                        let (log, rule, upstream) = (log2.clone(), rule.clone(), upstream.clone());
                        let rewrite = rewrite.clone();
                        let hostile = Hostile {
                            own: own.clone(),
                            stop: stop2.clone(),
                            sent: sent2.clone(),
                        };
                        std::thread::spawn(move || {
                            serve(conn, &upstream, &*rule, &log, &rewrite, &hostile)
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy {
            addr,
            log,
            stop,
            sent,
        }
    }

    /// Body bytes sent so far by `Endless` and `Trickle` answers.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
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

/// What the hostile answers need: the proxy's own address (for a token
/// realm), when to stop, and a count of what they sent.
struct Hostile {
    own: String,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
}

impl Hostile {
    /// Keeps `conn` open, sending nothing, until the client closes it, the
    /// proxy stops or a minute passes.
    fn hold(&self, conn: &mut TcpStream) {
        let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
        let end = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 1024];
        while !self.stop.load(Ordering::SeqCst) && Instant::now() < end {
            match conn.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
        }
    }

    fn trickle(&self, conn: &mut TcpStream, every: Duration) {
        let end = Instant::now() + Duration::from_secs(60);
        while !self.stop.load(Ordering::SeqCst) && Instant::now() < end {
            if conn.write_all(b"x").is_err() {
                return;
            }
            self.sent.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(every);
        }
    }

    fn endless(&self, conn: &mut TcpStream) {
        let chunk = vec![b' '; 64 * 1024];
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        let mut total = 0u64;
        while !self.stop.load(Ordering::SeqCst) && total < 4 << 30 {
            if conn.write_all(&framed).is_err() {
                return;
            }
            total += chunk.len() as u64;
            self.sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
    }
}

fn serve(
    mut conn: TcpStream,
    upstream: &str,
    rule: &Rule,
    log: &Mutex<Vec<Logged>>,
    rewrite: &Option<(String, String)>,
    hostile: &Hostile,
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
        Action::Silent => hostile.hold(&mut conn),
        Action::Stall | Action::Trickle(_) => {
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1048576\r\nConnection: close\r\n\r\n"
            );
            match action {
                Action::Trickle(ms) => hostile.trickle(&mut conn, Duration::from_millis(ms)),
                _ => hostile.hold(&mut conn),
            }
        }
        Action::Endless(code) => {
            let _ = write!(
                conn,
                "HTTP/1.1 {code} Endless\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            );
            hostile.endless(&mut conn);
        }
        Action::Challenge => {
            let _ = write!(
                conn,
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{}/token\",service=\"hostile\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                hostile.own
            );
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
