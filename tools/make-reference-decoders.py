#!/usr/bin/env python3
"""Makes the tiny decoder reference checkpoints of tests/hf_import.rs.

Writes tests/fixtures/reference-models/decoders/: a byte-level BPE tokenizer trained on a short
text, four tiny random checkpoints saved by transformers with its real config classes (Hugging
Face folders: config.json, safetensors, tokenizer.json), the same weights as GGUF files written
with gguf-py the way llama.cpp's convert_hf_to_gguf.py names, orders and permutes them, and
reference.json: the token ids of a fixed prompt, its greedy continuation by transformers'
generate (KV cache), the logits of one full forward pass over both, and the llama3 RoPE
frequencies.

    pip install torch transformers tokenizers gguf safetensors numpy
    python3 tools/make-reference-decoders.py

Deterministic (fixed seeds), CPU only; the output is about 1 MB.
"""

import copy
import json
import math
import shutil
from pathlib import Path

import gguf
import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

OUT = Path(__file__).resolve().parent.parent / "tests/fixtures/reference-models/decoders"
VOCAB = 272
TEXT = (
    "the small model reads the edge bench text and the bench reads the model. "
    "edge devices run small models; the models answer the questions they are asked. "
    "a tokenizer cuts the text into tokens, the decoder predicts the next token. "
)
PROMPT = "the edge model reads"
# reference passes with weights rounded as `--quantize` rounds them
QUANTIZED = {"llama-gqa": ["q4_0"], "qwen2-tied": ["q8_0"]}
GREEDY_STEPS = 8

# hidden 32, 4 heads of 8, feed-forward 64, 2 layers: every dim a multiple of 32 for Q4_0 / Q8_0
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    rms_norm_eps=1e-5,
    initializer_range=0.25,
    bos_token_id=0,
    eos_token_id=0,
)

MODELS = {
    # GQA, untied head, f32
    "llama-gqa": dict(
        cls=(LlamaConfig, LlamaForCausalLM),
        cfg=dict(rope_theta=10000.0, tie_word_embeddings=False),
        dtype=torch.float32,
        shard=None,
    ),
    # Llama-3.2-1B-shaped: tied embeddings, llama3 rope_scaling, f16, sharded
    "llama3-tied": dict(
        cls=(LlamaConfig, LlamaForCausalLM),
        # head dim 8, base 10000: wavelengths 6.3, 63, 628, 6283 against 64 / 4 and 64 / 1 keep
        # the first frequency, smooth the second and divide the last two by the factor
        cfg=dict(
            rope_theta=10000.0,
            tie_word_embeddings=True,
            rope_scaling=dict(
                rope_type="llama3",
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=64,
            ),
        ),
        dtype=torch.float16,
        shard="20KB",
    ),
    # Qwen2: Q/K/V biases, tied head, bf16
    "qwen2-tied": dict(
        cls=(Qwen2Config, Qwen2ForCausalLM),
        cfg=dict(rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False),
        dtype=torch.bfloat16,
        shard=None,
    ),
    # Qwen2: untied head, f16
    "qwen2-untied": dict(
        cls=(Qwen2Config, Qwen2ForCausalLM),
        cfg=dict(rope_theta=1000000.0, tie_word_embeddings=False, use_sliding_window=False),
        dtype=torch.float16,
        shard=None,
    ),
}


def train_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    tok.train_from_iterator([TEXT] * 4, trainer)
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    return tok


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's Q/K row order for llama: each head's rotate-half pairs interleaved."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(cfg: dict) -> list:
    """convert_hf_to_gguf.py's `rope_freqs.weight` for rope_scaling of type llama3."""
    s = cfg["rope_scaling"]
    dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    freqs = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    old = s["original_max_position_embeddings"]
    low_wavelen = old / s["low_freq_factor"]
    high_wavelen = old / s["high_freq_factor"]
    out = []
    for f in freqs.tolist():
        wavelen = 2 * math.pi / f
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(s["factor"])
        else:
            smooth = (old / wavelen - s["low_freq_factor"]) / (s["high_freq_factor"] - s["low_freq_factor"])
            out.append(1 / ((1 - smooth) / s["factor"] + smooth))
    return out


def write_gguf(path: Path, arch: str, name: str, cfg: dict, sd: dict, tok: Tokenizer, dtype) -> None:
    """The checkpoint as llama.cpp's converter writes it (tensor names, order, Q/K permutation
    for llama only, 1-D tensors in F32, matrices in the checkpoint's float type)."""
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    if arch == "llama":
        w.add_vocab_size(cfg["vocab_size"])
        w.add_rope_dimension_count(cfg["hidden_size"] // cfg["num_attention_heads"])
    # tokenizer, as convert_hf_to_gguf.py's gpt2 path
    vocab = tok.get_vocab()
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    specials = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
    merges = json.loads(tok.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2" if arch == "qwen2" else "llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_add_bos_token(False)

    qtype = {
        torch.float32: gguf.GGMLQuantizationType.F32,
        torch.float16: gguf.GGMLQuantizationType.F16,
        torch.bfloat16: gguf.GGMLQuantizationType.BF16,
    }[dtype]

    def add(gname: str, t: torch.Tensor, permute_heads=None):
        a = t.to(torch.float32).numpy()
        if permute_heads is not None:
            a = permute(a, permute_heads)
        if a.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(gname, a.astype(np.float32))
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(gname, a.astype(np.float16))
        else:
            w.add_tensor(gname, gguf.quants.quantize(a, qtype), raw_dtype=qtype)

    if arch == "llama" and cfg.get("rope_scaling"):
        w.add_tensor("rope_freqs.weight", np.array(llama3_rope_factors(cfg), dtype=np.float32))
    add("token_embd.weight", sd["model.embed_tokens.weight"])
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        b = f"blk.{l}."
        q_heads = cfg["num_attention_heads"] if arch == "llama" else None
        k_heads = cfg["num_key_value_heads"] if arch == "llama" else None
        add(b + "attn_norm.weight", sd[p + "input_layernorm.weight"])
        add(b + "attn_q.weight", sd[p + "self_attn.q_proj.weight"], q_heads)
        add(b + "attn_k.weight", sd[p + "self_attn.k_proj.weight"], k_heads)
        add(b + "attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        if arch == "qwen2":
            add(b + "attn_q.bias", sd[p + "self_attn.q_proj.bias"])
            add(b + "attn_k.bias", sd[p + "self_attn.k_proj.bias"])
            add(b + "attn_v.bias", sd[p + "self_attn.v_proj.bias"])
        add(b + "attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        add(b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        add(b + "ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        add(b + "ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        add(b + "ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    add("output_norm.weight", sd["model.norm.weight"])
    if not cfg["tie_word_embeddings"]:
        add("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def rounded(x: torch.Tensor, decimals: int = 5) -> list:
    return [round(v, decimals) for v in x.tolist()]


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    tok = train_tokenizer()
    tok.save(str(OUT / "tokenizer.json"))
    ids = tok.encode(PROMPT).ids
    reference = {"prompt": PROMPT, "ids": ids, "models": {}}
    for i, (name, spec) in enumerate(MODELS.items()):
        torch.manual_seed(1000 + i)
        config_cls, model_cls = spec["cls"]
        cfg = dict(COMMON, **copy.deepcopy(spec["cfg"]))
        model = model_cls(config_cls(**copy.deepcopy(cfg))).eval()
        # norms away from 1 and biases away from 0 so that a misread one shows
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n.endswith("norm.weight"):
                    p.copy_(1.0 + 0.3 * torch.randn_like(p))
                elif n.endswith(".bias"):
                    p.copy_(0.5 * torch.randn_like(p))
        model = model.to(spec["dtype"])
        folder = OUT / name
        kw = {"max_shard_size": spec["shard"]} if spec["shard"] else {}
        model.save_pretrained(str(folder), safe_serialization=True, **kw)
        PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>").save_pretrained(
            str(folder)
        )
        for extra in ["generation_config.json", "special_tokens_map.json"]:
            (folder / extra).unlink(missing_ok=True)
        if spec["cfg"].get("rope_scaling"):
            # as Llama 3.x checkpoints spell it: `rope_theta` and `rope_scaling` at the top level
            c = json.loads((folder / "config.json").read_text())
            c.pop("rope_parameters", None)
            c["rope_theta"] = spec["cfg"]["rope_theta"]
            c["rope_scaling"] = spec["cfg"]["rope_scaling"]
            (folder / "config.json").write_text(json.dumps(c, indent=2, sort_keys=True) + "\n")
        # the reference runs on the saved (rounded) weights in f32
        model = model_cls.from_pretrained(str(folder), torch_dtype=torch.float32).eval()
        sd = model.state_dict()
        arch = "llama" if config_cls is LlamaConfig else "qwen2"
        write_gguf(OUT / f"{name}.gguf", arch, name, cfg, sd, tok, spec["dtype"])
        with torch.no_grad():
            gen = model.generate(
                torch.tensor([ids]),
                max_new_tokens=GREEDY_STEPS,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            )[0, len(ids) :].tolist()
            full = model(torch.tensor([ids + gen])).logits[0]
        for t, g in enumerate(gen):
            assert int(full[len(ids) - 1 + t].argmax()) == g
        entry = {
            "architecture": arch,
            "dtype": str(spec["dtype"]).removeprefix("torch."),
            # one full forward pass over the prompt and its greedy continuation
            "logits": [rounded(r) for r in full],
            "greedy": gen,
        }
        # the same passes with every matrix rounded through llama.cpp's Q8_0 / Q4_0 blocks
        for qname in QUANTIZED.get(name, []):
            qtype = getattr(gguf.GGMLQuantizationType, qname.upper())
            qmodel = model_cls.from_pretrained(str(folder), torch_dtype=torch.float32).eval()
            with torch.no_grad():
                for p in qmodel.parameters():
                    if p.ndim == 2:
                        a = p.numpy().astype(np.float32)
                        p.copy_(torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(a, qtype), qtype)))
                qfull = qmodel(torch.tensor([ids + gen])).logits[0]
            entry[f"logits_{qname}"] = [rounded(r) for r in qfull]
        if cfg.get("rope_scaling"):
            entry["inv_freq"] = [float(f"{v:.9g}") for v in model.model.rotary_emb.inv_freq.tolist()]
        reference["models"][name] = entry
    (OUT / "reference.json").write_text(json.dumps(reference, separators=(",", ":")) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
