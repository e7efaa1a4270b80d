"""Protocol ingest figures: Prometheus remote_write samples/s and Influx line protocol points/s,
airisd (metrics role, embedded SQLite store, auth on) next to VictoriaMetrics ingesting the same
payloads in the same run, alternating, with medians and ratios.

Each request carries 1000 samples (100 series x 10 timestamps, recent, distinct per body); wrk
rotates 200 pre-built bodies over 4 connections. A request counts only when answered 2xx; any
other answer fails the run. VictoriaMetrics acknowledges before its data is durable (it buffers
about a second in memory); airisd answers only after the SQLite commit, so the figures compare a
stronger promise against a weaker one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from airisd_plugins.inputs.prometheus_remote_write.proto import WriteRequest  # noqa: E402
from airisd_plugins.inputs.prometheus_remote_write.shared import snappy_compress  # noqa: E402

SAMPLES_PER_BODY = 1000
SERIES = 100
BODIES = 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def series_labels(s: int) -> dict[str, str]:
    return {"host": f"host-{s:03d}", "region": f"region-{s % 4}"}


def build_payloads(out: Path) -> dict[str, Path]:
    """Write the remote_write and line-protocol bodies (the same samples) and their manifests."""
    out.mkdir(parents=True, exist_ok=True)
    per_series = SAMPLES_PER_BODY // SERIES
    base_ms = (int(time.time()) - 3600) * 1000
    manifests = {"remote_write": out / "rw.txt", "influx": out / "influx.txt"}
    rw_names, lp_names = [], []
    for k in range(BODIES):
        req = WriteRequest()
        lines = []
        for s in range(SERIES):
            labels = series_labels(s)
            ts = req.timeseries.add()
            for name, value in sorted({"__name__": "bench_value", **labels}.items()):
                lb = ts.labels.add()
                lb.name, lb.value = name, value
            for j in range(per_series):
                ms = base_ms + (k * per_series + j) * 1000
                sample_value = float((k * 7 + s * 3 + j) % 1000) / 10
                sample = ts.samples.add()
                sample.value, sample.timestamp = sample_value, ms
                key = f"bench,host={labels['host']},region={labels['region']}"
                lines.append(f"{key} value={sample_value} {ms * 1_000_000}")
        rw = out / f"rw-{k:03d}.bin"
        rw.write_bytes(snappy_compress(req.SerializeToString()))
        lp = out / f"lp-{k:03d}.txt"
        lp.write_text("\n".join(lines) + "\n")
        rw_names.append(str(rw))
        lp_names.append(str(lp))
    manifests["remote_write"].write_text("\n".join(rw_names) + "\n")
    manifests["influx"].write_text("\n".join(lp_names) + "\n")
    return manifests


@dataclass
class Target:
    name: str
    base_url: str
    proc: subprocess.Popen[bytes]
    authorization: str = "-"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not up in {timeout}s")


def start_airisd(work: Path) -> Target:
    port = free_port()
    data = work / f"airisd-{secrets.token_hex(3)}"
    password = "bench-" + secrets.token_hex(8)
    log = (work / f"{data.name}.log").open("wb")
    cmd = [
        str(Path(sys.executable).parent / "airisd"),
        "run",
        "--config",
        str(ROOT / "etc" / "airisd.toml"),
        "--role",
        "metrics",
        "--data-dir",
        str(data),
        "--set",
        f'listeners.metrics.address="127.0.0.1:{port}"',
        "--set",
        "auth.rate_limit_per_minute=0",
    ]
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "AIRISD_ADMIN_PASSWORD": password}
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/health", proc)
    r = httpx.post(base + "/auth/login", json={"username": "admin", "password": password}, timeout=10)
    r.raise_for_status()
    return Target("airisd", base, proc, "Bearer " + r.json()["data"]["token"])


def start_vm(work: Path) -> Target:
    port = free_port()
    data = work / f"vm-{secrets.token_hex(3)}"
    log = (work / f"{data.name}.log").open("wb")
    proc = subprocess.Popen(
        [
            "victoria-metrics",
            f"-httpListenAddr=127.0.0.1:{port}",
            f"-storageDataPath={data}",
            "-loggerLevel=ERROR",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/health", proc)
    return Target("victoria-metrics", base, proc)


PROTOCOLS = {
    # name: (path, content type, content encoding)
    "remote_write": ("/api/v1/write", "application/x-protobuf", "snappy"),
    "influx": ("/write?db=bench&precision=ns", "text/plain; charset=utf-8", "-"),
}


def run_wrk(target: Target, protocol: str, manifest: Path, secs: int, conns: int) -> float:
    """Samples per second acknowledged with a 2xx."""
    path, ctype, encoding = PROTOCOLS[protocol]
    host = target.base_url.removeprefix("http://")
    cmd = [
        "wrk",
        "-t2",
        f"-c{conns}",
        f"-d{secs}s",
        "--latency",
        "-s",
        str(HERE / "rotate.lua"),
        target.base_url,
        "--",
        str(manifest),
        path,
        ctype,
        encoding,
        target.authorization,
        host,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=secs + 60).stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise RuntimeError(f"{target.name} {protocol}: {bad.group(1)} non-2xx answers\n{out}")
    errors = re.search(r"Socket errors: (.*)", out)
    if errors and re.search(r"(connect|read|write|timeout) [1-9]", errors.group(1)):
        raise RuntimeError(f"{target.name} {protocol}: socket errors: {errors.group(1)}\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rps * SAMPLES_PER_BODY


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    for tool in ("wrk", "victoria-metrics"):
        if shutil.which(tool) is None:
            print(
                f"bench/protocols: {tool} is not installed (bench/protocols/run.sh installs it)",
                file=sys.stderr,
            )
            return 1
    work = Path(tempfile.mkdtemp(prefix="airisd-bench-protocols-"))
    try:
        manifests = build_payloads(work / "payloads")
        results: dict[str, dict[str, list[float]]] = {
            p: {"airisd": [], "victoria-metrics": []} for p in PROTOCOLS
        }
        for rnd in range(1, args.rounds + 1):
            # Alternate which server goes first, and give each round fresh stores of both.
            order = [start_airisd, start_vm] if rnd % 2 else [start_vm, start_airisd]
            for start in order:
                target = start(work)
                try:
                    for protocol in PROTOCOLS:
                        value = run_wrk(target, protocol, manifests[protocol], args.secs, args.connections)
                        results[protocol][target.name].append(value)
                        print(
                            f"round {rnd} {target.name:17s} {protocol:13s} {value:12,.0f} samples/s",
                            flush=True,
                        )
                finally:
                    target.stop()
        print()
        print(
            "| protocol | airisd samples/s (median) | VictoriaMetrics samples/s (median) "
            "| ratio airisd/VM | runs |"
        )
        print("|---|---|---|---|---|")
        summary = {}
        for protocol, per in results.items():
            a, v = statistics.median(per["airisd"]), statistics.median(per["victoria-metrics"])
            summary[protocol] = {
                "airisd": per["airisd"],
                "victoria-metrics": per["victoria-metrics"],
                "airisd_median": a,
                "vm_median": v,
                "ratio": a / v if v else None,
            }
            print(f"| {protocol} | {a:,.0f} | {v:,.0f} | {a / v:.3f} | {len(per['airisd'])} |")
        meta = {
            "samples_per_request": SAMPLES_PER_BODY,
            "series": SERIES,
            "connections": args.connections,
            "secs": args.secs,
            "cpus": os.cpu_count(),
        }
        if args.json:
            args.json.write_text(json.dumps({"meta": meta, "results": summary}, indent=2))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
