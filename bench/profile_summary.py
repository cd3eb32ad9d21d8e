"""Summarise a py-spy profile in collapsed-stack form (``py-spy record --format raw``).

    .venv/bin/python bench/profile_summary.py var/bench/issue-profile.txt [--top 25]

Prints where a worker's samples went: the share of a few layers (inclusive: a sample counts for
every layer on its stack, innermost layer first for "self"), the project functions with the
largest inclusive share, and the frames with the largest self share. ``bench/run.sh --profile``
records the profile of one gunicorn worker while wrk drives single issues.
"""

import argparse
import re
from collections import Counter

# Layers, innermost first: a sample's "self" layer is the first that matches its leaf-most frame.
LAYERS = [
    # psycopg's C extension waits for PostgreSQL's answer inside _execute_send / wait.
    ("psycopg: round trip to PostgreSQL", re.compile(r"(_execute_send|Connection\.wait) \(psycopg/")),
    ("psycopg: adapting, loading", re.compile(r"psycopg/")),
    ("Django ORM: compiling SQL", re.compile(r"django/db/models/sql/")),
    ("Django ORM: querysets, models, fields", re.compile(r"django/db/")),
    ("DRF (request, parsers, serializers, auth)", re.compile(r"rest_framework/")),
    ("Django (handlers, middleware, urls, http)", re.compile(r"django/")),
    ("JSON (simplejson / json)", re.compile(r"simplejson/|/json/")),
    ("project code", re.compile(r"[(/ ](issuance|catalogue|apiclients|benchsupport|rewards_site)/")),
]


def frames_of(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rpartition(" ")
    return stack.split(";"), int(count)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    total, inclusive, self_layer, project, leaf = 0, Counter(), Counter(), Counter(), Counter()
    with open(args.profile) as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            frames, count = frames_of(line)  # py-spy leaves idle threads out by default
            total += count
            seen = set()
            for name, pattern in LAYERS:
                if any(pattern.search(fr) for fr in frames):
                    seen.add(name)
            for name in seen:
                inclusive[name] += count
            for fr in reversed(frames):
                layer = next((name for name, pattern in LAYERS if pattern.search(fr)), None)
                if layer:
                    self_layer[layer] += count
                    break
            else:
                self_layer["other (stdlib, gunicorn)"] += count
            for fr in {re.sub(r":\d+\)$", ")", fr) for fr in frames}:  # per function, not per line
                if LAYERS[-1][1].search(fr):
                    project[fr] += count
            leaf[frames[-1]] += count
    print(f"{total} samples in requests\n\nlayer | self % | inclusive %\n---|---|---")
    for name, _ in [*LAYERS, ("other (stdlib, gunicorn)", None)]:
        print(f"{name} | {100 * self_layer[name] / total:.1f} | {100 * inclusive[name] / total:.1f}")
    print(f"\nproject functions, inclusive % (top {args.top})")
    for frame, count in project.most_common(args.top):
        print(f"{100 * count / total:5.1f}  {frame}")
    print(f"\nleaf frames, self % (top {args.top})")
    for frame, count in leaf.most_common(args.top):
        print(f"{100 * count / total:5.1f}  {frame}")


if __name__ == "__main__":
    main()
