"""Where a benchmark's numbers come from, read from the build files rather than typed:
the commit (and whether the work tree had uncommitted changes), Flowcast's version from the
workspace Cargo.toml, Flink's and its Kafka connector's from tests/bench/flink/pom.xml,
Spark's and its connector's from tests/bench/spark/pom.xml (tests/bench/setup.sh installs
exactly these), Kafka's from deploy/kafka/pom.xml (what deploy/kafka/start.sh runs), the
binaries measured (path, build time, hash) and the harness's own Kafka client.

    python versions.py --repo REPO --out provenance.json --binary flowcast=PATH ... [--built-here]

run.sh writes it when the run starts; report.py prints it above the tables.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import subprocess


def sh(cmd: list[str], cwd: str | None = None) -> str:
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=30)
        return (r.stdout or r.stderr).strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def pom_property(path: str, name: str) -> str:
    try:
        with open(path) as f:
            m = re.search(rf"<{re.escape(name)}>([^<]+)</{re.escape(name)}>", f.read())
        return m.group(1).strip() if m else "?"
    except OSError:
        return "?"


def pom_artifacts(path: str) -> list[str]:
    """The artifactIds of a pom's dependencies."""
    try:
        with open(path) as f:
            deps = re.search(r"<dependencies>(.*?)</dependencies>", f.read(), re.S)
    except OSError:
        return []
    return re.findall(r"<artifactId>([^<]+)</artifactId>", deps.group(1)) if deps else []


def workspace_version(cargo_toml: str) -> str:
    try:
        import tomllib

        with open(cargo_toml, "rb") as f:
            return tomllib.load(f)["workspace"]["package"]["version"]
    except (ImportError, OSError, KeyError, ValueError):
        return "?"


def binary(path: str) -> dict:
    try:
        st = os.stat(path)
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return {"path": path, "missing": True}
    built = datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc)
    return {"path": path, "built_utc": f"{built:%Y-%m-%d %H:%M}", "sha256": h.hexdigest()[:12]}


def kafka_client() -> str:
    try:
        import confluent_kafka

        return f"confluent-kafka {confluent_kafka.version()[0]} (librdkafka {confluent_kafka.libversion()[0]})"
    except ImportError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--binary", action="append", default=[], help="NAME=PATH")
    ap.add_argument("--built-here", action="store_true", help="run.sh built the binaries")
    a = ap.parse_args()
    r = a.repo
    flink_pom = f"{r}/tests/bench/flink/pom.xml"
    spark_pom = f"{r}/tests/bench/spark/pom.xml"
    dirty = sh(["git", "status", "--porcelain"], cwd=r)
    spark_connectors = [x for x in pom_artifacts(spark_pom) if x.startswith("spark-sql-kafka")]
    java = sh(["java", "-version"])
    out = {
        "started_utc": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}",
        "commit": sh(["git", "rev-parse", "--short", "HEAD"], cwd=r),
        "branch": sh(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=r),
        "uncommitted": bool(dirty) and dirty != "?",
        "flowcast": workspace_version(f"{r}/Cargo.toml"),
        "rustc": sh(["rustc", "--version"]),
        "binaries": {k: binary(p) for k, p in (b.split("=", 1) for b in a.binary)},
        "built_here": a.built_here,
        "flink": pom_property(flink_pom, "flink.version"),
        "flink_kafka": pom_property(flink_pom, "flink.kafka.version"),
        "spark": pom_property(spark_pom, "spark.version"),
        "spark_kafka": spark_connectors[0] if spark_connectors else "?",
        "kafka": pom_property(f"{r}/deploy/kafka/pom.xml", "kafka.version"),
        "java": java.splitlines()[0] if java else "?",
        "python": platform.python_version(),
        "harness_client": kafka_client(),
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
