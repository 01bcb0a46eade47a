//! The connections between a job's processes, made before timely starts. timely's own
//! setup retries a refused connection and polls its listener once a second, so processes
//! started a few milliseconds apart lose a second or two at every start, restart and
//! rescale. Here each process binds its data port first thing (before loading the model
//! and reading the topic), connects to the lower-indexed processes with retries every
//! 10 ms in the background while it prepares, and accepts the higher-indexed ones; the
//! sockets go to timely as they are (`initialize_networking_from_sockets`), with timely's
//! handshake: each connecting process sends its index as a big-endian u64.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connections on their way.
#[derive(Debug)]
pub struct Peers {
    handle: JoinHandle<std::io::Result<Vec<Option<TcpStream>>>>,
}

/// Binds `hosts[me]` now and connects to every other process of the job in the background.
///
/// # Errors
/// If the address cannot be bound.
pub fn start(hosts: &[String], me: usize, timeout: Duration) -> std::io::Result<Peers> {
    let listener = TcpListener::bind(&hosts[me])?;
    listener.set_nonblocking(true)?;
    let hosts = hosts.to_vec();
    let handle = std::thread::Builder::new()
        .name("flowcast-peers".into())
        .spawn(move || connect(&hosts, me, &listener, timeout))?;
    Ok(Peers { handle })
}

impl Peers {
    /// Every peer's socket by process index (`None` at this process's own).
    ///
    /// # Errors
    /// A peer that did not connect in time, or a failed handshake.
    pub fn join(self) -> std::io::Result<Vec<Option<TcpStream>>> {
        self.handle
            .join()
            .map_err(|_| std::io::Error::other("the peer connection thread panicked"))?
    }
}

fn connect(
    hosts: &[String],
    me: usize,
    listener: &TcpListener,
    timeout: Duration,
) -> std::io::Result<Vec<Option<TcpStream>>> {
    let n = hosts.len();
    let mut sockets: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    let mut to_connect: Vec<usize> = (0..me).collect();
    let mut awaited = n - me - 1;
    let deadline = Instant::now() + timeout;
    while !to_connect.is_empty() || awaited > 0 {
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "process {me} could not reach processes {to_connect:?} and {awaited} higher-indexed ones did not connect within {timeout:?}"
                ),
            ));
        }
        let mut still = Vec::new();
        for i in to_connect {
            match TcpStream::connect(&hosts[i]) {
                Ok(mut s) => {
                    s.set_nodelay(true)?;
                    s.write_all(&(me as u64).to_be_bytes())?;
                    sockets[i] = Some(s);
                }
                Err(_) => still.push(i),
            }
        }
        to_connect = still;
        loop {
            match listener.accept() {
                Ok((mut s, from)) => {
                    s.set_nonblocking(false)?;
                    s.set_nodelay(true)?;
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    let mut b = [0u8; 8];
                    let id = s
                        .read_exact(&mut b)
                        .map(|()| u64::from_be_bytes(b) as usize);
                    s.set_read_timeout(None)?;
                    match id {
                        Ok(id) if id > me && id < n && sockets[id].is_none() => {
                            sockets[id] = Some(s);
                            awaited -= 1;
                        }
                        _ => {
                            tracing::warn!(%from, "a connection to the data port that is not a peer of this job: dropped")
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if !to_connect.is_empty() || awaited > 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(sockets)
}
