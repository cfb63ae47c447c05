#!/usr/bin/env python3
"""Time one model on two builds of EdgeBench, in turns, and print the ratios.

Usage: python3 benches/compare_builds.py --a <edgebench binary> --b <edgebench binary> \
           --model <model dir> [--threads 1] [--rounds 5] [--prompt-tokens 128] [--decode-tokens 32]

Each round runs `bench model --json` once with each binary (a, then b; each in a fresh
process), so drift in the machine's speed touches both alike. Prints, per figure, the median
over rounds of each build, and the median of the per-round ratio b/a with its range.
Rates (tokens/s, sentences/s): above 1 means b is faster. Times (ms): below 1 means b is
faster. Use it to check that a change which should not touch speed does not: the ratios of
a no-op change straddle 1 within the run-to-run range.
"""
import argparse, json, statistics, subprocess, sys

# figures a model bench prints that are speeds (the rest are sizes and settings)
SPEEDS = ("load_and_optimise", "prefill_", "decode_p50", "decode_p90", "batch_")


def bench(binary, a):
    cmd = [binary, "--threads", str(a.threads), "bench", "model", "--model", a.model,
           "--json", "--repeats", str(a.repeats),
           "--prompt-tokens", str(a.prompt_tokens), "--decode-tokens", str(a.decode_tokens)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    figures = {}
    for line in out.stdout.splitlines():
        row = json.loads(line)
        if "metric" in row and row["value"] is not None and row["metric"].startswith(SPEEDS):
            figures[row["metric"]] = (row["value"], row["unit"])
    return figures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="the reference build's edgebench binary")
    ap.add_argument("--b", required=True, help="the build under test")
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--decode-tokens", type=int, default=32)
    a = ap.parse_args()
    rounds = []
    for r in range(a.rounds):
        rounds.append((bench(a.a, a), bench(a.b, a)))
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
    names = [m for m in rounds[0][0] if all(m in x and m in y for x, y in rounds)]
    print(f"| figure | unit | a (median) | b (median) | b/a (median) | b/a range |")
    print(f"|---|---|---:|---:|---:|---|")
    for m in names:
        va = [x[m][0] for x, _ in rounds]
        vb = [y[m][0] for _, y in rounds]
        ratios = [y / x for x, y in zip(va, vb) if x]
        print(f"| {m} | {rounds[0][0][m][1]} | {statistics.median(va):.3f} | {statistics.median(vb):.3f} "
              f"| {statistics.median(ratios):.3f} | {min(ratios):.3f}-{max(ratios):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
