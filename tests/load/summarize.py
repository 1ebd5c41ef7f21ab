#!/usr/bin/env python3
"""Prints the load test's summary table from the reports in one folder.

Input (written by tests/load/run.sh):
  rows.tsv            one line per row: name, kind (ghz|ghz-stream|pgbench), file, note
  <row>.json          ghz JSON report
  <row>.pgbench.txt   pgbench output; <row>.log.* its per-transaction logs
Rows named <name>.<n> are round n of <name> (run.sh repeats the rows a ratio
compares); a ratio is then the median of its rounds' ratios.
Output: the table on stdout, summary.json beside the reports; exit status 1
when any row had errors. Rows whose calls end by client cancellation
(server streams) count `Canceled` as their normal end, not as an error.
"""

from __future__ import annotations

import glob
import json
import os
import re
import statistics
import sys

# (label, numerator row, denominator row, target)
RATIOS = [
    ("RegisterWake / pgbench upsert", "register_wake", "pgbench_upsert", 0.8),
    ("Eval 0 matches LOCAL / Health.Check", "eval_0_local", "health_check", 0.7),
    ("Eval 1 match default / pgbench wake insert", "eval_1_default", "pgbench_wake_insert", 0.5),
]


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def ghz_row(path: str, streaming: bool) -> dict:
    with open(path) as f:
        report = json.load(f)
    latencies = {int(d["percentage"]): d["latency"] / 1e6 for d in report.get("latencyDistribution") or []}
    codes = dict(report.get("statusCodeDistribution") or {})
    expected_end = {"OK"} | ({"Canceled"} if streaming else set())
    errors = sum(n for code, n in codes.items() if code not in expected_end)
    # Keep the report but drop the per-call details (megabytes on a full run).
    if "details" in report:
        report.pop("details")
        with open(path, "w") as f:
            json.dump(report, f, indent=1)
    return {
        "calls": report.get("count", 0),
        "rps": report.get("rps", 0.0),
        "p50": latencies.get(50, float("nan")),
        "p95": latencies.get(95, float("nan")),
        "p99": latencies.get(99, float("nan")),
        "errors": errors,
        "status": codes,
    }


def pgbench_row(path: str, log_prefix: str) -> dict:
    with open(path) as f:
        text = f.read()
    tps = re.search(r"^tps = ([0-9.]+)", text, re.M)
    processed = re.search(r"number of transactions actually processed: (\d+)", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    latencies = []
    for log in glob.glob(log_prefix + ".*"):
        with open(log) as f:
            for line in f:
                fields = line.split()
                # client_id transaction_no time script_no time_epoch time_us
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(int(fields[2]) / 1000.0)
                elif len(fields) >= 3:  # "failed" or "skipped" transactions
                    latencies.append(float("nan"))
    good = sorted(v for v in latencies if v == v)
    errors = int(failed.group(1)) if failed else 0
    if tps is None:
        errors = max(errors, 1)
    return {
        "calls": int(processed.group(1)) if processed else len(good),
        "rps": float(tps.group(1)) if tps else 0.0,
        "p50": percentile(good, 50),
        "p95": percentile(good, 95),
        "p99": percentile(good, 99),
        "errors": errors + (len(latencies) - len(good)),
    }


def rounds_of(by_name: dict, base: str) -> dict:
    """Round number -> row, for `base` itself (round 1) or `base.<n>`."""
    found = {}
    for name, row in by_name.items():
        if name == base:
            found[1] = row
        elif name.startswith(base + ".") and name[len(base) + 1:].isdigit():
            found[int(name[len(base) + 1:])] = row
    return found


def fmt_ms(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"


def main() -> int:
    folder = sys.argv[1]
    concurrency = sys.argv[2] if len(sys.argv) > 2 else "?"
    rows = []
    with open(os.path.join(folder, "rows.tsv")) as f:
        for line in f:
            name, kind, file_name, note = line.rstrip("\n").split("\t")
            path = os.path.join(folder, file_name)
            if kind in ("ghz", "ghz-stream"):
                row = ghz_row(path, streaming=kind == "ghz-stream")
            else:
                row = pgbench_row(path, os.path.join(folder, name + ".log"))
            rows.append({"name": name, "kind": kind, "note": note, **row})

    header = f"{'row':<22} {'what':<44} {'calls':>8} {'rps':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}"
    print(f"load test: {concurrency} concurrent callers per row; reports in {folder}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['name']:<22} {r['note']:<44} {r['calls']:>8} {r['rps']:>9.0f} "
            f"{fmt_ms(r['p50']):>8} {fmt_ms(r['p95']):>8} {fmt_ms(r['p99']):>8} {r['errors']:>6}"
        )
    print("-" * len(header))
    by_name = {r["name"]: r for r in rows}
    ratios = []
    for label, num, den, target in RATIOS:
        nums, dens = rounds_of(by_name, num), rounds_of(by_name, den)
        rounds = sorted(r for r in nums if r in dens and dens[r]["rps"])
        if not rounds:
            continue
        values = [nums[r]["rps"] / dens[r]["rps"] for r in rounds]
        value = statistics.median(values)
        verdict = "met" if value >= target else "MISSED"
        if any(nums[r]["errors"] or dens[r]["errors"] for r in rounds):
            verdict = "n/a (errors in a row)"
        ratios.append({"ratio": label, "value": value, "rounds": values, "target": target,
                       "met": value >= target})
        detail = ""
        if len(values) > 1:
            detail = "  median of " + " ".join(f"{v:.3f}" for v in values)
        # Three decimals: 0.795 must not print as a missed "0.80".
        print(f"ratio  {label:<46} {value:>6.3f}x   target >= {target:.1f}x  {verdict}{detail}")

    total_errors = sum(r["errors"] for r in rows)
    with open(os.path.join(folder, "summary.json"), "w") as f:
        json.dump({"concurrency": concurrency, "rows": rows, "ratios": ratios}, f, indent=1)
    if total_errors:
        for r in rows:
            if r["errors"]:
                print(f"errors in {r['name']}: {r.get('status', r['errors'])}", file=sys.stderr)
    return 1 if total_errors else 0


if __name__ == "__main__":
    sys.exit(main())
