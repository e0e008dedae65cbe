"""make bench: cold and warm initializer runs against the openssl command-line baseline.

Runs (a) a cold `run` into a fresh volumes dir, (b) a warm rerun on an initialized dir and
(c) bench/openssl-baseline.sh, alternating, RUNS times each; prints min/median/max wall time,
the median ratios cold/baseline and warm/cold, and the peak RSS of a cold run, and writes them
to bench/results/bench.json. A second table does the same with seeding into a local r-nacos.
File store unless said otherwise, default key sizes (RSA-4096 CAs, RSA-2048 leaves).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RUNS = int(os.environ.get("BENCH_RUNS", "7"))
CLI: list[str] = []
sys.path.insert(0, str(REPO / "tests"))


def timed(command, env=None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB, the largest process of the tree) of one command."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {proc.stderr.read().decode()}")
    return seconds, usage.ru_maxrss


def summary(values):
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "runs": len(values)}


def measure(work: Path, env: dict, label: str) -> dict:
    env = {**os.environ, **env}
    cold, warm, base, rss = [], [], [], []
    for i in range(RUNS):
        target = work / f"{label}-cold-{i}"
        seconds, peak = timed(CLI + ["run", "--volumes", str(target)], env)
        cold.append(seconds)
        rss.append(peak)
        warm.append(timed(CLI + ["run", "--volumes", str(target)], env)[0])
        base.append(timed(["bash", str(HERE / "openssl-baseline.sh"), str(work / f"{label}-base-{i}")])[0])
        shutil.rmtree(target)
        shutil.rmtree(work / f"{label}-base-{i}")
    result = {"cold": summary(cold), "warm": summary(warm), "baseline": summary(base),
              "cold_peak_rss_mib": max(rss) / 1024}
    result["ratio_cold_to_baseline"] = result["cold"]["median"] / result["baseline"]["median"]
    result["ratio_warm_to_cold"] = result["warm"]["median"] / result["cold"]["median"]
    return result


def table(title: str, r: dict) -> str:
    lines = [title, f"  {'':10} {'min':>8} {'median':>8} {'max':>8}   (seconds, {r['cold']['runs']} runs each)"]
    for key in ("cold", "warm", "baseline"):
        s = r[key]
        lines.append(f"  {key:10} {s['min']:8.3f} {s['median']:8.3f} {s['max']:8.3f}")
    lines.append(f"  cold/baseline median ratio: {r['ratio_cold_to_baseline']:.3f} (target <= 0.2)")
    lines.append(f"  warm/cold median ratio:     {r['ratio_warm_to_cold']:.3f} (target <= 0.1; warm target <= 0.25 s)")
    lines.append(f"  cold run peak RSS:          {r['cold_peak_rss_mib']:.1f} MiB (target < 80)")
    return "\n".join(lines)


def main() -> int:
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
               "openssl": subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()}
    results = {"machine": machine}
    with tempfile.TemporaryDirectory(prefix="higress-bench-") as tmp:
        work = Path(tmp)
        # measure what the image runs: a regular (not editable) install made by its install script
        subprocess.run(["sh", str(REPO / "initContainer/install.sh"), str(work / "venv")], check=True)
        CLI[:] = [str(work / "venv/bin/higress-init")]
        results["file_store"] = measure(work, {}, "file")
        print(table("file store (no Nacos)", results["file_store"]))
        try:
            from rnacos import RNacosNode
            node = RNacosNode(work / "rnacos").start().wait_ready()
        except Exception as err:  # noqa: BLE001 - the second table is optional
            print(f"\nr-nacos table skipped: {err}")
        else:
            try:
                results["nacos"] = measure(work, {"NACOS_SERVER_URL": node.url}, "nacos")
                print("\n" + table(f"seeding into a local r-nacos ({node.url})", results["nacos"]))
            finally:
                node.stop()
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out / 'bench.json'} (machine: {machine['cpus']} CPUs, Python {machine['python']}, "
          f"{machine['openssl']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
