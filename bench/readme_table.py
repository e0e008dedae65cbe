"""Regenerate the README's performance table from `make bench`'s output (bench/results/bench.json):
the text between the two markers below is replaced, nothing else. `make bench-readme`.
Usage: readme_table.py [BENCH_JSON [README]]"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- bench:begin (make bench-readme) -->", "<!-- bench:end -->"


def _s(seconds: float) -> str:
    return f"{seconds:.3f} s"


def rows(r: dict) -> list[tuple[str, str, str]]:
    """(figure, target, value per variant) lines: each a ratio or difference measured side by side."""
    f = r["file_store"]
    out = [("file store: cold run / key-generation floor (the keys alone, in a process pool)", "<= 1.0",
            {k: f"{v['cold_to_floor']:.2f}" for k, v in f["variants"].items()}),
           ("file store: cold run / the keys alone, in the run's own threads", "",
            {k: f"{v['cold_to_threads_floor']:.2f}" for k, v in f["variants"].items()
             if "cold_to_threads_floor" in v}),
           ("file store: cold run / openssl baseline", "<= 0.2",
            {k: f"{v['cold_to_baseline']:.2f}" for k, v in f["variants"].items()}),
           ("file store: warm rerun", "<= 0.1 s",
            {k: _s(v["warm"]["median"]) for k, v in f["variants"].items()}),
           ("file store: cold run (peak RSS)", "",
            {k: f"{_s(v['cold']['median'])} ({v['cold_peak_rss_mib']:.0f} MiB)" for k, v in f["variants"].items()})]
    for name, n in r.get("nacos", {}).items():
        label = name.replace("nacos-", "Nacos ") + (" (auth on)" if n["auth"] else "")
        out += [(f"{label}: warm rerun", "<= 0.4 s" if name.startswith("nacos-") else "",
                 {k: _s(v["warm"]["median"]) for k, v in n["variants"].items()}),
                (f"{label}: warm rerun - file-store warm rerun", "<= 0.3 s" if name.startswith("nacos-") else "",
                 {k: f"{v['warm_minus_file_warm']:+.3f} s" for k, v in n["variants"].items()}),
                (f"{label}: cold run (shared-ca phase: median, max; runs shorter than the 2 s settle wait)",
                 "no settle wait" if name.startswith("nacos-") else "",
                 {k: f"{_s(v['cold']['median'])} ({_s(v['cold_shared_ca_phase']['median'])}, max "
                     f"{_s(v['cold_shared_ca_phase']['max'])}; {v['cold_runs_shorter_than_a_settle_wait']} of "
                     f"{v['cold']['runs']})" for k, v in n["variants"].items()})]
    return out


def table(r: dict) -> str:
    labels = ["before", "now"] if r.get("before") else ["now"]
    m = r["machine"]
    rounds = (f"{r['file_runs']} rounds (file store) and {r['runs']} (Nacos)" if r.get("file_runs")
              else f"{r['runs']} rounds")
    head = (f"Medians of {rounds}, measured side by side by one `make bench` "
            + (f"(before: {r['before']}; now: this tree) " if r.get("before") else "")
            + f"on {m['cpus']} CPUs, Python {m['python']}, {m['openssl']}, load average "
            f"{m['load_average_at_start'][0]:g} at start and {m['load_average_at_end'][0]:g} at end; "
            "default key sizes, the image's install path.\n\n")
    lines = ["| figure | target | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for figure, target, values in rows(r):
        lines.append(f"| {figure} | {target} | " + " | ".join(values.get(k, "") for k in labels) + " |")
    return head + "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    results = Path(argv[1]) if len(argv) > 1 else REPO / "bench/results/bench.json"
    readme = Path(argv[2]) if len(argv) > 2 else REPO / "README.md"
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme}: no {BEGIN} ... {END} section to replace")
    before, rest = text.split(BEGIN, 1)
    _, after = rest.split(END, 1)
    readme.write_text(before + BEGIN + "\n" + table(json.loads(results.read_text())) + END + after)
    print(f"{readme}: performance table regenerated from {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
