//! MQTT helpers for tests, against the Mosquitto broker `deploy/services.sh` starts
//! (`FLOWCAST_TEST_MQTT`, default `127.0.0.1:1883`): a subscriber that records what is
//! published, a TCP proxy that can break the link to the broker, and a private broker
//! with a password file, started and stopped by `deploy/mosquitto/{start,stop}.sh`.
//!
//! A test that needs the broker fails (panics) when it is not there; it never skips.

use rumqttc::{Client, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `host:port` of the test broker.
pub fn broker() -> String {
    std::env::var("FLOWCAST_TEST_MQTT").unwrap_or_else(|_| "127.0.0.1:1883".to_owned())
}

/// A subscriber that records every payload published on `topic`.
#[allow(missing_debug_implementations)]
pub struct Subscriber {
    payloads: Arc<Mutex<Vec<Vec<u8>>>>,
    client: Client,
}

impl Subscriber {
    /// Connects and returns once the broker acknowledged the subscription.
    ///
    /// # Panics
    /// If the broker is not there.
    pub fn start(topic: &str) -> Subscriber {
        Subscriber::connect(&broker(), topic, None)
    }

    /// Connects to `addr` over TLS, trusting the PEM CA file `ca`, as `user` with
    /// `password`, and returns once the broker acknowledged the subscription.
    ///
    /// # Panics
    /// If the broker is not there or refuses the connection.
    pub fn start_tls(addr: &str, topic: &str, ca: &Path, user: &str, password: &str) -> Subscriber {
        let ca = std::fs::read(ca).expect("CA file");
        Subscriber::connect(addr, topic, Some((ca, user, password)))
    }

    fn connect(addr: &str, topic: &str, tls: Option<(Vec<u8>, &str, &str)>) -> Subscriber {
        let (host, port) = addr
            .rsplit_once(':')
            .map(|(h, p)| (h.to_owned(), p.parse::<u16>().expect("port")))
            .expect("host:port");
        let id = crate::unique_topic("sub").replace('-', "");
        let mut opts = MqttOptions::new(id, host, port);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        if let Some((ca, user, password)) = tls {
            // Two rustls providers are linked (ring, and aws-lc-rs through the S3 client):
            // rustls then picks none by itself; use ring, as the engine does.
            let _ = rustls::crypto::ring::default_provider().install_default();
            opts.set_transport(Transport::Tls(TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth: None,
            }));
            opts.set_credentials(user, password);
        }
        let (client, mut conn) = Client::new(opts, 16);
        client
            .subscribe(topic, QoS::AtLeastOnce)
            .expect("subscribe");
        let payloads = Arc::new(Mutex::new(Vec::new()));
        let out = Arc::clone(&payloads);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = tx.send(Ok(()));
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        out.lock().expect("payloads").push(p.payload.to_vec());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("the MQTT broker at {addr} is not usable: {e}"),
            Err(_) => panic!("no SUBACK from the MQTT broker at {addr}"),
        }
        Subscriber { payloads, client }
    }

    /// Every payload received so far.
    pub fn payloads(&self) -> Vec<Vec<u8>> {
        self.payloads.lock().expect("payloads").clone()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

/// A TCP proxy in front of the broker that can drop every connection and refuse new ones.
#[derive(Debug)]
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    /// Forwards connections to `target`.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let down = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (d, c) = (Arc::clone(&down), Arc::clone(&conns));
        std::thread::spawn(move || {
            let mut listener = Some(listener);
            loop {
                if d.load(Ordering::SeqCst) {
                    listener = None;
                } else if listener.is_none() {
                    listener = TcpListener::bind(addr).ok();
                }
                let Some(l) = &listener else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                l.set_nonblocking(true).expect("nonblocking");
                let Ok((client, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).expect("blocking");
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut all = c.lock().expect("conns");
                for s in [&client, &server] {
                    all.push(s.try_clone().expect("clone"));
                }
                for (mut from, mut to) in [
                    (
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { addr, down, conns }
    }

    /// Resets every connection and refuses new ones.
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for c in self.conns.lock().expect("conns").drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Accepts connections again.
    pub fn heal(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

/// A private Mosquitto with a password file, started and stopped by the project's scripts.
#[derive(Debug)]
pub struct PrivateBroker {
    run_dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl PrivateBroker {
    /// Starts it with one user, `someone-else`, so any other username is refused.
    ///
    /// # Panics
    /// If mosquitto is not installed or does not start.
    pub fn start() -> PrivateBroker {
        let deploy = deploy_dir();
        let run_dir = std::env::temp_dir().join(crate::unique_topic("mqtt-run"));
        std::fs::create_dir_all(&run_dir).expect("run dir");
        let passwd = run_dir.join("passwd");
        let status = std::process::Command::new("mosquitto_passwd")
            .args(["-c", "-b"])
            .arg(&passwd)
            .args(["someone-else", "their-password"])
            .status()
            .expect("mosquitto_passwd (deploy/setup.sh installs mosquitto)");
        assert!(status.success(), "mosquitto_passwd failed");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let status = std::process::Command::new(deploy.join("start.sh"))
            .args(["--port", &port.to_string()])
            .env("FLOWCAST_RUN_DIR", &run_dir)
            .env("FLOWCAST_MQTT_PASSWD", &passwd)
            .status()
            .expect("deploy/mosquitto/start.sh");
        assert!(status.success(), "the private broker did not start");
        PrivateBroker { run_dir, port }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let deploy = deploy_dir();
        let _ = std::process::Command::new(deploy.join("stop.sh"))
            .env("FLOWCAST_RUN_DIR", &self.run_dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/mosquitto")
}
