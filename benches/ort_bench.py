#!/usr/bin/env python3
"""Run the same ONNX file through onnxruntime and tract (edgebench) and print the ratio.

Usage: python3 benches/ort_bench.py --model <model dir> [--threads 1] [--prompt-tokens 128] [--decode-tokens 32] [--rounds 3]

The model must use only standard ONNX ops (import GGUF with --dequantize; BERT imports
qualify): onnxruntime does not know EdgeBench's custom ops. Needs `pip install onnxruntime numpy`.
Timings are model-only (no tokenisation), measured in this run for both engines. The
engines take turns for --rounds rounds (onnxruntime, then tract), so drift in the host's
speed touches both alike; each round gives a ratio, and the median ratio is printed with
the range over rounds.
"""
import argparse, json, os, statistics, subprocess, sys, time

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--edgebench", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "edgebench"))
    ap.add_argument("--one-ort-round", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime or numpy is not installed: pip install onnxruntime numpy", file=sys.stderr)
        return 2
    if a.one_ort_round:  # child: load, time, print one JSON line
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = a.threads
        opts.inter_op_num_threads = 1
        t = time.perf_counter()
        sess = ort.InferenceSession(os.path.join(a.model, "model.onnx"), opts, providers=["CPUExecutionProvider"])
        load_ms = (time.perf_counter() - t) * 1e3

    def ort_round():
        names = [i.name for i in sess.get_inputs()]
        rows = {}
        if "attention_mask" in names:  # encoder
            for batch in (1, 32):
                ids = np.full((batch, 128), 1000, dtype=np.int64)
                ids[:, 0] = 101
                mask = np.ones_like(ids)
                sess.run(None, {"input_ids": ids, "attention_mask": mask})
                ts = []
                for _ in range(a.repeats):
                    t = time.perf_counter(); sess.run(None, {"input_ids": ids, "attention_mask": mask}); ts.append(time.perf_counter() - t)
                rows[f"batch_{batch}_x_128_tokens"] = batch / statistics.median(ts)
        else:  # decoder with past_key_<i>/past_value_<i>
            past = [i for i in sess.get_inputs() if i.name.startswith("past_")]
            vocab = sess.get_outputs()[0].shape[-1]
            n = a.prompt_tokens
            prompt = (np.arange(n, dtype=np.int64) * 7919 + 13) % vocab
            def empty(i):
                return np.zeros((1, i.shape[1], 0, i.shape[3]), dtype=np.float32)
            pre, steps = [], []
            for _ in range(a.repeats):
                feeds = {"input_ids": prompt[None, :]}
                feeds.update({i.name: empty(i) for i in past})
                t = time.perf_counter(); out = sess.run(None, feeds); pre.append(time.perf_counter() - t)
                for _ in range(a.decode_tokens):
                    nxt = int(out[0][0, -1].argmax())
                    feeds = {"input_ids": np.array([[nxt]], dtype=np.int64)}
                    feeds.update({i.name: out[2 + k] for k, i in enumerate(past)})
                    t = time.perf_counter(); out = sess.run(None, feeds); steps.append(time.perf_counter() - t)
            rows[f"prefill_{n}_tokens"] = n / statistics.median(pre)
            rows["decode_p50"] = statistics.median(steps) * 1e3
        return rows

    if a.one_ort_round:
        rows = ort_round()
        rows["load_and_optimise"] = load_ms
        print(json.dumps(rows))
        return 0

    def ort_process_round():
        args = [sys.executable, os.path.abspath(__file__), "--one-ort-round", "--model", a.model,
                "--threads", str(a.threads), "--prompt-tokens", str(a.prompt_tokens),
                "--decode-tokens", str(a.decode_tokens), "--repeats", str(a.repeats)]
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    def tract_round():
        try:
            out = subprocess.run([a.edgebench, "--threads", str(a.threads), "bench", "model", "--model", a.model, "--json",
                                  "--prompt-tokens", str(a.prompt_tokens), "--decode-tokens", str(a.decode_tokens),
                                  "--repeats", str(a.repeats)], capture_output=True, text=True, check=True).stdout
            return {r["metric"]: r["value"] for r in map(json.loads, out.splitlines()) if "metric" in r}
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"edgebench bench failed: {e}", file=sys.stderr)
            return {}

    rounds = []
    for _ in range(max(1, a.rounds)):
        rounds.append((ort_process_round(), tract_round()))
    print(f"model {a.model}, threads {a.threads} for both engines, {len(rounds)} round(s), medians over rounds")
    print(f"{'metric':<26} {'onnxruntime':>12} {'tract':>12} {'tract/ort':>10}  range")
    # ratio > 1 means tract is slower for times (ms) and faster for rates (tokens/s, sentences/s)
    for m in rounds[0][0]:
        pairs = [(o[m], t[m]) for o, t in rounds if t.get(m)]
        ov = statistics.median(o[m] for o, _ in rounds)
        if not pairs:
            print(f"{m:<26} {ov:>12.2f} {'n/a':>12} {'n/a':>10}")
            continue
        ratios = sorted(tv / v for v, tv in pairs)
        tv = statistics.median(tv for _, tv in pairs)
        print(f"{m:<26} {ov:>12.2f} {tv:>12.2f} {statistics.median(ratios):>10.2f}  {ratios[0]:.2f}-{ratios[-1]:.2f}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
