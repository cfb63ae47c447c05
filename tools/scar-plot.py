#!/usr/bin/env python3
"""Draws docs/scar-tradeoff.svg: perplexity of the assembled GEM against
attention time, one point per SCAR setting, from the CSV of
tools/scar-tradeoff.sh and the JSON lines of `edgebench bench ops --json`.

usage: tools/scar-plot.py <scar-tradeoff.csv> <bench-ops.jsonl> <out.svg> [n]
(n, default 2048: the context length of both axes). Standard library only.
"""
import csv
import json
import math
import sys

csv_path, ops_path, out_path = sys.argv[1:4]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 2048

ops = {}
for line in open(ops_path):
    line = line.strip()
    if line.startswith("{"):
        r = json.loads(line)
        ops[r["metric"]] = r["value"]


def attention_ms(row):
    if row["config"] == "dense":
        return ops.get(f"ebattention_n{n}_ms")
    k, s, w = row["k"], row["sinks"], row["window"]
    key = f"scar_n{n}_k{k}_ms" if s == "0" and w == "0" else f"scar_n{n}_k{k}_s{s}_w{w}_ms"
    return ops.get(key)


points = []
for row in csv.DictReader(open(csv_path)):
    if int(row["ctx"]) != n or row["cluster_on"] == "keys":
        continue
    t = attention_ms(row)
    if t is None or not row["perplexity"]:
        continue
    points.append((row["config"], t, float(row["perplexity"])))

W, H = 860, 520
L, R, T, B = 80, 290, 40, 60
xs = [p[1] for p in points]
ys = [p[2] for p in points]
x0, x1 = math.log10(min(xs) * 0.8), math.log10(max(xs) * 1.25)
y0, y1 = math.log10(min(ys) * 0.5), math.log10(max(ys) * 1.25)


def px(x):
    return L + (math.log10(x) - x0) / (x1 - x0) * (W - L - R)


def py(y):
    return H - B - (math.log10(y) - y0) / (y1 - y0) * (H - T - B)


svg = [
    f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
    f'font-family="DejaVu Sans, sans-serif" font-size="12">',
    f'<rect width="{W}" height="{H}" fill="white"/>',
    f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">'
    f"GEM (SmolLM2-135M pathways, MiniLM router): perplexity vs attention time, n = {n}</text>",
    f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
    f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>',
]
for e in range(math.floor(x0), math.ceil(x1) + 1):
    for m in (1, 2, 3, 4, 5, 7):
        v = m * 10**e
        if x0 <= math.log10(v) <= x1:
            x = px(v)
            svg.append(f'<line x1="{x}" y1="{T}" x2="{x}" y2="{H - B}" stroke="#ddd"/>')
            svg.append(f'<text x="{x}" y="{H - B + 16}" text-anchor="middle">{v:g}</text>')
for e in range(math.floor(y0), math.ceil(y1) + 1):
    for m in (1, 2, 5):
        v = m * 10**e
        if y0 <= math.log10(v) <= y1:
            y = py(v)
            svg.append(f'<line x1="{L}" y1="{y}" x2="{W - R}" y2="{y}" stroke="#ddd"/>')
            svg.append(f'<text x="{L - 6}" y="{y + 4}" text-anchor="end">{v:g}</text>')
svg.append(
    f'<text x="{(L + W - R) / 2}" y="{H - 18}" text-anchor="middle">'
    f"attention time per layer, ms (bench ops: 8 heads of 64, one thread; log scale)</text>"
)
svg.append(
    f'<text x="20" y="{(T + H - B) / 2}" text-anchor="middle" '
    f'transform="rotate(-90 20 {(T + H - B) / 2})">perplexity (log scale)</text>'
)
# numbered markers, listed on the right (labels beside close points overlap)
svg.append(f'<text x="{W - R + 10}" y="{T + 80}">setting: perplexity, attention ms</text>')
for i, (name, t, p) in enumerate(sorted(points, key=lambda q: -q[2]), 1):
    colour = "#c0392b" if name.startswith("paper") else ("#2c3e50" if name == "dense" else "#2471a3")
    x, y = px(t), py(p)
    svg.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="8" fill="{colour}"/>')
    svg.append(f'<text x="{x:.1f}" y="{y + 4:.1f}" fill="white" text-anchor="middle" font-size="10">{i}</text>')
    svg.append(
        f'<text x="{W - R + 10}" y="{T + 80 + 16 * i}" fill="{colour}">{i} {name}: {p:.1f}, {t:.1f} ms</text>'
    )
svg.append(
    f'<text x="{W - R + 10}" y="{T + 10}" fill="#2c3e50">dense: EbAttention</text>'
    f'<text x="{W - R + 10}" y="{T + 28}" fill="#c0392b">paper SCAR</text>'
    f'<text x="{W - R + 10}" y="{T + 46}" fill="#2471a3">SCAR + sinks/window</text>'
)
svg.append("</svg>")
open(out_path, "w").write("\n".join(svg))
