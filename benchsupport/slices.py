"""Merging short load-generator runs ("slices") of one scenario into one measurement.

bench/http_bench.py alternates what a ratio compares in 1-second slices (A B C C B A A B C …)
instead of running each for 5 seconds in turn: this machine's speed drifts by up to 2x within
seconds, and two slices a second apart see nearly the same machine. Each slice reports its
request count, rate, status counts, CPU per call and latency quantiles on ``GRID`` (wrk's
``latency:percentile`` at those points; pgbench's from its per-transaction log). The merged
row has the rate of all slices together, CPU per call weighted by requests, and p50/p95/p99 of
the slices' latency distributions mixed in proportion to their requests.
"""

from bisect import bisect_right

# The quantiles (percent) each slice reports: 0 (the fastest call) to 100 (the slowest).
GRID = (0, *range(1, 100), 99.5, 99.9, 100)
COUNTS = ("requests", "s2xx", "s4xx", "s5xx", "errors")


def grid_of(sorted_latencies: list[int]) -> list[int]:
    """``GRID``'s quantiles of ascending latencies (nearest rank), as wrk's percentile gives them."""
    last = len(sorted_latencies) - 1
    return [sorted_latencies[min(last, int(q / 100 * len(sorted_latencies)))] for q in GRID] if sorted_latencies else []


def _cdf(grid: list[int], x: float) -> float:
    """The share (0-100) of one slice's calls at or below ``x``, linear between grid points."""
    if x < grid[0]:
        return 0.0
    if x >= grid[-1]:
        return 100.0
    k = bisect_right(grid, x) - 1  # grid[k] <= x < grid[k + 1]
    lo, hi = grid[k], grid[k + 1]
    return GRID[k] + (GRID[k + 1] - GRID[k]) * (x - lo) / (hi - lo)


def mixed_percentile(slices: list[dict], q: float) -> float:
    """The ``q`` percentile of the slices' latencies together, each weighted by its requests."""
    parts = [(s["requests"], s["grid"]) for s in slices if s["requests"] and s.get("grid")]
    total = sum(w for w, _ in parts)
    if not total:
        return 0.0

    def cdf(x):
        return sum(w * _cdf(g, x) for w, g in parts) / total

    # The mixture's CDF is linear between the slices' grid points together: interpolate there.
    previous, before = None, 0.0
    for x in sorted({x for _, g in parts for x in g}):
        at = cdf(x)
        if at >= q:
            return x if previous is None or at == before else previous + (x - previous) * (q - before) / (at - before)
        previous, before = x, at
    return previous


def merge(slices: list[dict]) -> dict:
    """One measurement from slices of the same scenario (see the module's docstring)."""
    merged = {name: sum(s.get(name, 0) for s in slices) for name in COUNTS}
    seconds = sum(s["requests"] / s["rps"] for s in slices if s["rps"])
    merged["rps"] = merged["requests"] / seconds if seconds else 0.0
    for name in ("app_cpu_ms", "db_cpu_ms"):
        values = [(s[name], max(s["requests"], 1)) for s in slices]
        merged[name] = (None if any(v is None for v, _ in values)
                        else sum(v * n for v, n in values) / sum(n for _, n in values))
    for q in (50, 95, 99):
        merged[f"p{q}"] = mixed_percentile(slices, q)
    merged["first_error"] = next((s["first_error"] for s in slices if s.get("first_error")), "")
    merged["slices"] = len(slices)
    merged["slice_rps"] = [round(s["rps"], 1) for s in slices]
    return merged
