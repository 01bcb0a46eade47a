//! A WebDriver client (the W3C protocol over HTTP) for Debian's `chromedriver` driving
//! headless `chromium`: enough to load pages, find elements, type, click, run a script and
//! take screenshots. The driver is started on a free port and stopped on drop.

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session.
pub struct Browser {
    driver: Child,
    base: String,
    agent: ureq::Agent,
}

impl Browser {
    /// Starts chromedriver and a headless chromium session (window 1280×1000).
    pub fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (deploy/browser/install.sh installs Debian's chromium-driver)");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("http://127.0.0.1:{port}");
        flowcast_tests::wait::poll_for(Duration::from_secs(30), || {
            let mut r = agent.get(&format!("{url}/status")).call().ok()?;
            let v: Value = serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()?;
            v["value"]["ready"].as_bool().filter(|r| *r)
        })
        .expect("chromedriver answers /status");
        let mut b = Browser {
            driver,
            base: url,
            agent,
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"]
            }
        }}});
        let v = b.call("POST", "/session", Some(caps));
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a session: {v}"))
            .to_owned();
        b.base = format!("{}/session/{id}", b.base);
        b
    }

    fn call(&mut self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.request(method, path, body).unwrap_or(Value::Null)
    }

    /// The driver's answer; `None` when the element is gone (no longer in the page, or
    /// replaced by the page's refresh since it was found).
    fn request(&mut self, method: &str, path: &str, body: Option<Value>) -> Option<Value> {
        let url = format!("{}{path}", self.base);
        let r = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, b) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(b.unwrap_or_else(|| json!({})).to_string()),
        };
        let mut r = r.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let text = r.body_mut().read_to_string().expect("driver answer");
        let v: Value = serde_json::from_str(&text).expect("driver JSON");
        match v["value"]["error"].as_str() {
            None => Some(v["value"].clone()),
            Some("no such element" | "stale element reference") => None,
            Some(e) => panic!("{method} {path}: {e}: {}", v["value"]["message"]),
        }
    }

    /// Loads `url`.
    pub fn goto(&mut self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// The element `css` selects, if there is one now.
    pub fn find(&mut self, css: &str) -> Option<String> {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT].as_str().map(str::to_owned)
    }

    /// Every element `css` selects now.
    pub fn find_all(&mut self, css: &str) -> Vec<String> {
        let v = self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The rendered text of the element `css` selects, if there is one.
    pub fn text(&mut self, css: &str) -> Option<String> {
        let e = self.find(css)?;
        self.call("GET", &format!("/element/{e}/text"), None)
            .as_str()
            .map(str::to_owned)
    }

    /// Types `text` into the element `css` selects.
    pub fn type_into(&mut self, css: &str, text: &str) {
        let e = self.find(css).unwrap_or_else(|| panic!("no `{css}`"));
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Clicks the element `css` selects, finding it again if the page replaced it.
    pub fn click(&mut self, css: &str) {
        flowcast_tests::wait::poll_for(Duration::from_secs(10), || {
            let e = self.find(css)?;
            self.request("POST", &format!("/element/{e}/click"), None)
                .map(|_| ())
        })
        .unwrap_or_else(|| panic!("cannot click `{css}`"));
    }

    /// The page's HTML as it is now (for failure messages).
    pub fn source(&mut self) -> String {
        self.call("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's current URL.
    pub fn url(&mut self) -> String {
        self.call("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A PNG of the viewport.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let v = self.call("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("PNG")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.base).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
