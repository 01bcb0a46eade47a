"""An experiment, not the shipped model: does training on more than the indoor rooms — the
outdoor sensor T6/RH_6, the weather station's T_out/RH_out (interpolated airport reports: a
training series only, never a test) and DHT11-quantised copies of the rooms — make the LSTM
hold beyond the rooms it was trained on?

Recipes (same architecture and loss as train.py, hidden 32, fewer epochs):
  A  indoor rooms (train.py's recipe)
  B  A + T6/RH_6 (its train period) + T_out/RH_out
  C  B + the rooms with every reading rounded to whole units (a DHT11)
Each is scored on the test windows of: the indoor rooms; the same rounded (DHT11); T6/RH_6.
Then leave-one-series-out with recipe C: each indoor room in turn is left out of training
entirely and scored on its test windows (a sensor never seen). Linear L1 (train.py's strongest
linear baseline) is fitted on the same training samples for comparison.

Writes models/groups.json; prints a table. Usage (about 15 minutes on one core):
    models/.venv/bin/python models/groups.py [--epochs 8]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import lzma
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train as T  # noqa: E402

INDOOR = [f"{r}" for r in T.ROOMS]


def load(path: Path, columns: list[tuple[str, str]], whole: bool):
    """(times [n], values [series, n, 2]) of 30-minute means; `whole` rounds readings first."""
    with lzma.open(path, "rt", newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader)]
        cols = [(header.index(t), header.index(h)) for t, h in columns]
        sums, counts = {}, {}
        for row in reader:
            stamp = dt.datetime.strptime(row[0].strip(), "%Y-%m-%d %H:%M:%S")
            ts = int(stamp.replace(tzinfo=dt.timezone.utc).timestamp())
            w = ts - ts % T.WINDOW_S
            v = np.array([[float(row[t]), float(row[h])] for t, h in cols])
            if whole:
                v = np.round(v)
            if w in sums:
                sums[w] += v
                counts[w] += 1
            else:
                sums[w], counts[w] = v, 1
    full = sorted(w for w, c in counts.items() if c == T.WINDOW_S // T.SAMPLE_S)
    return np.array(full, dtype=np.int64), np.stack([sums[w] / counts[w] for w in full], axis=1)


def samples(times, values, lo, hi):
    xs, ys = [], []
    for t in range(T.SEQ_LEN, len(times)):
        if not (lo <= times[t] < hi) or times[t] - times[t - T.SEQ_LEN] != T.SEQ_LEN * T.WINDOW_S:
            continue
        for s in range(values.shape[0]):
            xs.append(values[s, t - T.SEQ_LEN : t])
            ys.append(values[s, t])
    return np.array(xs), np.array(ys)


def ratios(pred, x, y):
    m, p = T.metrics(pred, y), T.metrics(x[:, -1, :], y)
    return [m[f]["mae"] / p[f]["mae"] for f in T.FEATURES]


def fit(train_series, val_series, bounds, epochs, log):
    """Trains the LSTM and linear L1 on `train_series` ([S, n, 2]) before val_start, selects the
    epoch on `val_series`' validation windows; returns (predict(x) for the LSTM, for linear L1)."""
    times, val_start, test_start = bounds
    x, y = samples(times, train_series, int(times[0]), val_start)
    vx, vy = samples(times, val_series, val_start, test_start)
    flat = train_series[:, times < val_start, :].reshape(-1, 2)
    norm = T.Norm(flat.mean(0), flat.std(0))
    data = {
        "norm": norm,
        "train_xn": norm.fwd(x),
        "train_yn": norm.fwd(y),
        "val_xn": norm.fwd(vx),
        "val_y": vy,
        "val_persistence": T.metrics(vx[:, -1, :], vy),
    }
    scale = np.std(data["train_yn"] - data["train_xn"][:, -1, :], axis=0).astype(np.float32)
    model = T.train_lstm(32, data, scale, epochs, log)
    coef, icpt = T.lad_fit(data["train_xn"], data["train_yn"], 60, scale)

    def lstm(xs):
        return norm.inv(T.predict(model, norm.fwd(xs)))

    def linear(xs):
        return norm.inv(T.ridge_predict(norm.fwd(xs), coef, icpt, 60))

    return lstm, linear


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=T.default_data_path())
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    np.random.seed(T.SEED)
    started = time.time()
    log = lambda msg: print(f"[{time.time() - started:6.1f}s] {msg}", flush=True)  # noqa: E731

    indoor_cols = [(f"T{r}", f"RH_{r}") for r in T.ROOMS]
    times, indoor = load(args.data, indoor_cols, False)
    _, indoor_q = load(args.data, indoor_cols, True)
    _, outdoor = load(args.data, [("T6", "RH_6")], False)
    _, station = load(args.data, [("T_out", "RH_out")], False)
    val_start, test_start = T.split_bounds(times)
    end = int(times[-1]) + T.WINDOW_S
    bounds = (times, val_start, test_start)
    log(f"{len(times)} windows; val from {val_start}, test from {test_start}")

    groups = {
        "indoor": samples(times, indoor, test_start, end),
        "indoor as DHT11": samples(times, indoor_q, test_start, end),
        "outdoor T6/RH_6": samples(times, outdoor, test_start, end),
    }
    recipes = {
        "A indoor": indoor,
        "B + outdoor, station": np.concatenate([indoor, outdoor, station]),
        "C + DHT11 copies": np.concatenate([indoor, outdoor, station, indoor_q]),
    }
    results = {"epochs": args.epochs, "recipes": {}, "leave_one_out": {}}
    for name, series in recipes.items():
        log(f"recipe {name}: {series.shape[0]} series")
        lstm, linear = fit(series, indoor, bounds, args.epochs, log)
        results["recipes"][name] = {
            g: {"lstm": ratios(lstm(x), x, y), "linear_l1": ratios(linear(x), x, y)}
            for g, (x, y) in groups.items()
        }
        log(json.dumps(results["recipes"][name]))
    for i, room in enumerate(T.ROOMS):
        keep = [j for j in range(len(T.ROOMS)) if j != i]
        series = np.concatenate([indoor[keep], outdoor, station, indoor_q[keep]])
        log(f"leave out room {room}")
        lstm, linear = fit(series, indoor[keep], bounds, args.epochs, log)
        x, y = samples(times, indoor[i : i + 1], test_start, end)
        results["leave_one_out"][f"room {room}"] = {
            "lstm": ratios(lstm(x), x, y),
            "linear_l1": ratios(linear(x), x, y),
            "persistence_mae": [T.metrics(x[:, -1, :], y)[f]["mae"] for f in T.FEATURES],
        }
        log(json.dumps(results["leave_one_out"][f"room {room}"]))
    out = Path(__file__).resolve().parent / "groups.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
