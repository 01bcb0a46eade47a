#!/usr/bin/env python3
"""Times the web UI in Debian's headless chromium over WebDriver (chromedriver), for
tests/bench/ui.sh: log in, then the job page, a device search and a device chart, each from
the navigation until the page shows its data. Prints one Markdown table row per view.

    ui_page.py URL TOKEN_FILE JOB DEVICE SEARCH [RUNS]
"""
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class Browser:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000"]}}}}
        self.base += "/session/" + self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.load(r)["value"]
        except urllib.error.HTTPError as e:
            v = json.load(e)["value"]
            # Gone, or replaced by the page's refresh since it was found: look again.
            if v.get("error") in ("no such element", "stale element reference"):
                return None
            raise RuntimeError(f"{method} {path}: {v}") from None

    def find(self, css):
        v = self.call("POST", "/element", {"using": "css selector", "value": css})
        return v and v[ELEMENT]

    def text(self, css):
        e = self.find(css)
        return e and self.call("GET", f"/element/{e}/text")

    def until(self, what, cond, timeout=60):
        return until(what, cond, timeout)


def until(what, cond, timeout=60, every=0.01):
    """cond()'s first truthy answer, asked every `every` s until `timeout` s have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(every)
    raise RuntimeError(f"timed out waiting for {what}")


def answers(url):
    try:
        urllib.request.urlopen(url, timeout=2)
        return True
    except OSError:
        return False


def main():
    url, token_file, job, device, search = sys.argv[1:6]
    runs = int(sys.argv[6]) if len(sys.argv) > 6 else 3
    token = open(token_file).read().strip()
    with socket_port() as port:
        driver = subprocess.Popen(["chromedriver", f"--port={port}"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
    try:
        until("chromedriver", lambda: answers(f"http://127.0.0.1:{port}/status"), 30, 0.05)
        b = Browser(port)
        try:
            run(b, url, token, job, device, search, runs)
        finally:
            b.call("DELETE", "")  # closes chromium: killing the driver alone leaves it running
    finally:
        driver.kill()


def run(b, url, token, job, device, search, runs):
    b.call("POST", "/url", {"url": f"{url}/ui/"})
    e = b.find("#token")
    b.call("POST", f"/element/{e}/value", {"text": token})
    b.call("POST", f"/element/{b.find('#login')}/click")
    b.until("the jobs table", lambda: b.find(f'tr.job-row[data-job="{job}"]'))
    rows = {"job page (graph with numbers)": [], f"device search `{search}`": [],
            "device chart (61 windows)": []}
    for _ in range(runs):
        b.call("POST", "/url", {"url": "about:blank"})
        t0 = time.monotonic()
        b.call("POST", "/url", {"url": f"{url}/ui/#/jobs/{job}"})
        b.until("the graph", lambda: any(c.isdigit() for c in (b.text(
            'div.op[data-op="window"] span.out-rate') or "")))
        rows["job page (graph with numbers)"].append(time.monotonic() - t0)
        box = b.find("#device-search")
        t0 = time.monotonic()
        b.call("POST", f"/element/{box}/value", {"text": search})
        # The list shows the first devices before the search: wait for the matches.
        b.until("search results", lambda: (b.text("a.device-link") or "").startswith(search))
        rows[f"device search `{search}`"].append(time.monotonic() - t0)
        b.call("POST", "/url", {"url": "about:blank"})
        t0 = time.monotonic()
        b.call("POST", "/url", {"url": f"{url}/ui/#/jobs/{job}/devices/{device}"})
        b.until("the chart", lambda: (b.text("#point-count") or "").startswith("61 windows")
                and b.find("#chart-humidity canvas"))
        rows["device chart (61 windows)"].append(time.monotonic() - t0)
    for name, ts in rows.items():
        ts = sorted(ts)
        print(f"| {name} | {ts[len(ts) // 2] * 1e3:.0f} ms | {ts[-1] * 1e3:.0f} ms |")


class socket_port:
    def __enter__(self):
        import socket
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        return self.s.getsockname()[1]

    def __exit__(self, *a):
        self.s.close()


if __name__ == "__main__":
    main()
