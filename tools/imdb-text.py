#!/usr/bin/env python3
"""Writes the text docs/scar.md measures perplexity on: the first IMDB test
reviews of ../shared/data/dapt-imdb (about 24,000 characters, about 6,000
SmolLM2 tokens), separated by blank lines.

usage: tools/imdb-text.py <test.jsonl> <out.txt>
"""
import json
import sys

out, n = [], 0
for line in open(sys.argv[1]):
    t = json.loads(line)["text"]
    out.append(t)
    n += len(t)
    if n > 24000:
        break
open(sys.argv[2], "w").write("\n\n".join(out))
