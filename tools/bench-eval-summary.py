"""Summarises tools/bench-eval-turns.sh: per suite and per task kind, the
harness share of the examples' time ((wall - model) / wall) and of the whole
run ((run - model) / run) for each binary, median [min-max] over the rounds;
then checks that the old and new binaries wrote the same records.

usage: python3 tools/bench-eval-summary.py OUT ROUNDS
"""
import glob
import json
import os
import statistics
import sys

out, rounds = sys.argv[1], int(sys.argv[2])


def rows(which, r):
    with open(os.path.join(out, f"{which}-{r}.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def share(rs, key):
    wall = sum(x[key] for x in rs)
    return 100.0 * (wall - sum(x["model_s"] for x in rs)) / wall


def fmt(values):
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


runs = {w: [rows(w, r) for r in range(1, rounds + 1)] for w in ("old", "new")}
suites = [x["suite"] for x in runs["old"][0]]
def seconds(rs):
    return sum(x["wall_s"] - x["model_s"] for x in rs)


print("| suite | task | examples | old wall s | new wall s | old harness s | new harness s | old harness % | new harness % | old % of run | new % of run |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for s in suites:
    pick = {w: [[x for x in rr if x["suite"] == s] for rr in runs[w]] for w in runs}
    first = pick["old"][0][0]
    print(
        f"| {s} | {first['task']} | {first['examples']} "
        f"| {statistics.median([sum(x['wall_s'] for x in p) for p in pick['old']]):.2f} "
        f"| {statistics.median([sum(x['wall_s'] for x in p) for p in pick['new']]):.2f} "
        f"| {statistics.median([seconds(p) for p in pick['old']]):.3f} "
        f"| {statistics.median([seconds(p) for p in pick['new']]):.3f} "
        f"| {fmt([share(p, 'wall_s') for p in pick['old']])} | {fmt([share(p, 'wall_s') for p in pick['new']])} "
        f"| {fmt([share(p, 'run_s') for p in pick['old']])} | {fmt([share(p, 'run_s') for p in pick['new']])} |"
    )
kinds = sorted({x["task"] for x in runs["old"][0]})
print("\n| task kind | suites | old harness % | new harness % | old % of run | new % of run |")
print("|---|---:|---:|---:|---:|---:|")
for k in kinds:
    pick = {w: [[x for x in rr if x["task"] == k] for rr in runs[w]] for w in runs}
    print(
        f"| {k} | {len(pick['old'][0])} | {fmt([share(p, 'wall_s') for p in pick['old']])} "
        f"| {fmt([share(p, 'wall_s') for p in pick['new']])} | {fmt([share(p, 'run_s') for p in pick['old']])} "
        f"| {fmt([share(p, 'run_s') for p in pick['new']])} |"
    )


def records(root):
    found = {}
    for path in glob.glob(os.path.join(root, "bench/*/runs/*/records/*.jsonl")):
        run = path.split("/runs/")[1].split("/")[0]
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                found[(run, r["example_id"])] = r
    return found


fields = ("calls", "replies", "prompt_tokens", "output_tokens", "truncated_tokens", "prompt_hash")
differ = 0
for r in range(1, rounds + 1):
    a, b = records(os.path.join(out, f"old-{r}")), records(os.path.join(out, f"new-{r}"))
    if a.keys() != b.keys():
        print(f"round {r}: the binaries evaluated different examples")
        differ += 1
        continue
    for key in a:
        for f in fields:
            if a[key].get(f) != b[key].get(f):
                print(f"round {r}: {key}: field `{f}` differs")
                differ += 1
print(f"\nrecords: {len(a)} per round, {rounds} rounds, {differ} differences between old and new")
sys.exit(1 if differ else 0)
