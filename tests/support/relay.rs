//! A fault-injecting TCP relay in front of the broker. tansu advertises the relay's port, so every
//! client connection (bootstrap and broker) goes through it, and the relay can:
//!
//! - [`Mode::Pass`]: copy bytes both ways;
//! - [`Mode::Refuse`]: close its listening socket (new connections are refused) and drop every
//!   open connection (the broker is down);
//! - [`Mode::BlackHole`]: keep connections open and accept new ones but pass nothing (a network
//!   black hole: bytes wait in the kernel's buffers, as unacknowledged TCP segments would, and
//!   flow again when the path comes back, unless a side gave up on the connection meanwhile).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the relay does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Copy both ways.
    Pass,
    /// Refuse new connections, drop open ones.
    Refuse,
    /// Accept, hold, pass nothing.
    BlackHole,
}

struct Shared {
    mode: Mutex<Mode>,
    /// Every open connection (both ends), to drop them at once.
    open: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

impl Shared {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }
}

/// The relay; stopped on drop.
pub struct Relay {
    /// The loopback port clients connect to.
    pub port: u16,
    shared: Arc<Shared>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    /// Binds a free loopback port (so the broker can advertise it before it starts).
    pub fn bind() -> (Relay, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared =
            Arc::new(Shared { mode: Mutex::new(Mode::Pass), open: Mutex::new(Vec::new()), stop: false.into() });
        (Relay { port, shared, accept: None }, listener)
    }

    /// Starts relaying `listener`'s connections to `127.0.0.1:target`.
    pub fn start(&mut self, listener: TcpListener, target: u16) {
        let (shared, port) = (self.shared.clone(), self.port);
        self.accept = Some(std::thread::spawn(move || accept_loop(listener, port, target, shared)));
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Changes what the relay does, at once.
    pub fn set(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
        if mode == Mode::Refuse {
            for s in self.shared.open.lock().unwrap().drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.set(Mode::Refuse);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, port: u16, target: u16, shared: Arc<Shared>) {
    let mut listener = Some(listener);
    while !shared.stop.load(Ordering::SeqCst) {
        match (shared.mode(), &listener) {
            (Mode::Refuse, Some(_)) => listener = None, // closed: connections are refused
            (Mode::Refuse, None) => std::thread::sleep(Duration::from_millis(10)),
            (_, None) => match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => listener = Some(l),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            },
            (_, Some(l)) => {
                l.set_nonblocking(true).unwrap();
                match l.accept() {
                    Ok((client, _)) => connect(client, target, &shared),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                    Err(_) => {}
                }
            }
        }
    }
}

fn connect(client: TcpStream, target: u16, shared: &Arc<Shared>) {
    client.set_nonblocking(false).unwrap();
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    for s in [&client, &upstream] {
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        shared.open.lock().unwrap().push(s.try_clone().unwrap());
    }
    let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let (s1, s2) = (shared.clone(), shared.clone());
    std::thread::spawn(move || pump(client, upstream, s1));
    std::thread::spawn(move || pump(u2, c2, s2));
}

/// Copies `from` to `to` while the mode allows; reads nothing during a black hole.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match shared.mode() {
            Mode::Refuse => break,
            Mode::BlackHole => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Mode::Pass => {}
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
