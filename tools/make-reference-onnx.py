#!/usr/bin/env python3
"""Makes the optimum ONNX references in tests/fixtures/reference-models/onnx/.

A tiny random LlamaForCausalLM (GQA) and a tiny random BertModel, each with a tiny tokenizer.json
trained here with the `tokenizers` library, exported with optimum's ONNX exporter:

  llama-past/    --task text-generation-with-past (past_key_values.N.key/value -> present.N.*)
  llama-nopast/  --task text-generation (input_ids, attention_mask, position_ids -> logits)
  llama-merged/  optimum's merged decoder (`use_cache_branch` input, an If over the decoder
                 without past and the one with past), from optimum.onnx.merge_decoders
  bert/          --task feature-extraction (-> last_hidden_state), beside the checkpoint itself
                 (config.json, model.safetensors) for `edgebench import bert`

and records what transformers (torch) computes for fixed inputs in llama.json and bert.json.

Usage: python3 tools/make-reference-onnx.py [--out tests/fixtures/reference-models/onnx]
Needs torch, tokenizers, optimum-onnx 0.1 (with its optimum 2.1) and transformers 4.57 (optimum-onnx
0.1 refuses transformers 4.58 and later; a virtual environment with --system-site-packages and
`pip install transformers==4.57.6 "tokenizers<0.23"` keeps the rest); CI only reads the output.
"""

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a small model answers questions about law, health and money",
    "one two three four five six seven eight nine ten",
    "edge devices run language models on their own",
] * 8

LLAMA_PROMPT = "the quick brown fox jumps over"
BERT_TEXTS = ["the quick brown fox", "a small model answers questions about money", "ten"]
GREEDY_STEPS = 8
# files an optimum export folder keeps here: the rest (generation_config.json,
# special_tokens_map.json, tokenizer_config.json) EdgeBench does not read
KEEP = ["model.onnx", "config.json", "tokenizer.json"]


def r(x):
    """Floats rounded to 8 significant digits (f32 precision), as nested lists."""
    if isinstance(x, torch.Tensor):
        x = x.tolist()
    if isinstance(x, list):
        return [r(v) for v in x]
    return float(f"{x:.8g}")


def llama_tokenizer():
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=96, special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def bert_tokenizer():
    """WordPiece with BERT's normaliser and [CLS] ... [SEP]. The vocabulary is built from CORPUS
    in a fixed order (the WordPiece trainer's tie-breaking changes from run to run): the
    specials, every character alone and as a `##` continuation, then every word."""
    norm = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    words = sorted({w for line in CORPUS for w, _ in pre.pre_tokenize_str(norm.normalize_str(line))})
    chars = sorted({c for w in words for c in w})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = specials + chars + ["##" + c for c in chars]
    pieces += [w for w in words if w not in pieces]
    tok = Tokenizer(models.WordPiece(vocab={p: i for i, p in enumerate(pieces)}, unk_token="[UNK]"))
    tok.normalizer = norm
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok


def keep_only(folder: Path, names):
    for p in folder.iterdir():
        if p.name not in names:
            p.unlink()


def make_llama(work: Path, out: Path):
    from optimum.exporters.onnx import main_export
    from optimum.exporters.onnx.model_configs import LlamaOnnxConfig
    from optimum.onnx import merge_decoders

    tok = llama_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg).eval()
    # random weights of std 0.02 give near-uniform logits: spread them so greedy margins are clear
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.25)
    ckpt = work / "llama"
    model.save_pretrained(ckpt)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(ckpt)

    for name, task in [("llama-past", "text-generation-with-past"), ("llama-nopast", "text-generation")]:
        main_export(str(ckpt), output=str(out / name), task=task, do_validation=False)
        keep_only(out / name, KEEP)
    # the merged decoder: a decoder without past inputs that still returns present.*, and the
    # decoder with past, joined by optimum's merge_decoders under an If on `use_cache_branch`
    first = work / "first"
    first_cfg = LlamaOnnxConfig(model.config, task="text-generation", use_past=True, use_past_in_inputs=False)
    main_export(
        str(ckpt), output=str(first), task="text-generation-with-past", do_validation=False,
        custom_onnx_configs={"model": first_cfg},
    )
    merged = out / "llama-merged"
    merged.mkdir(parents=True, exist_ok=True)
    merge_decoders(first / "model.onnx", out / "llama-past" / "model.onnx", save_path=merged / "model.onnx")
    for f in ["config.json", "tokenizer.json"]:
        shutil.copy(out / "llama-past" / f, merged / f)

    ids = tok.encode(LLAMA_PROMPT).ids
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
        gen = model.generate(
            torch.tensor([ids]), max_new_tokens=GREEDY_STEPS, do_sample=False, eos_token_id=None,
            pad_token_id=0, output_scores=True, return_dict_in_generate=True,
        )
    new = gen.sequences[0, len(ids):].tolist()
    margins = []
    for s in gen.scores:
        top = torch.topk(s[0], 2).values
        margins.append(float(top[0] - top[1]))
    ref = {
        "prompt": LLAMA_PROMPT,
        "ids": ids,
        "vocab_size": cfg.vocab_size,
        "logits": r(logits),
        "greedy": new,
        "greedy_margins": r(margins),
    }
    (out / "llama.json").write_text(json.dumps(ref) + "\n")


def make_bert(work: Path, out: Path):
    from optimum.exporters.onnx import main_export

    tok = bert_tokenizer()
    torch.manual_seed(1)
    cfg = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=64,
        hidden_act="gelu",
    )
    model = BertModel(cfg, add_pooling_layer=False).eval()
    folder = out / "bert"
    ckpt = work / "bert"
    model.save_pretrained(ckpt)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(ckpt)
    main_export(str(ckpt), output=str(folder), task="feature-extraction", do_validation=False)
    keep_only(folder, KEEP)
    shutil.copy(ckpt / "model.safetensors", folder / "model.safetensors")

    rows = []
    for text in BERT_TEXTS:
        ids = tok.encode(text).ids
        with torch.no_grad():
            h = model(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long)).last_hidden_state[0]
        rows.append({"text": text, "ids": ids, "last_hidden_state": r(h)})
    (out / "bert.json").write_text(json.dumps({"hidden_size": cfg.hidden_size, "texts": rows}) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures/reference-models/onnx")
    out = Path(ap.parse_args().out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as work:
        make_llama(Path(work), out)
        make_bert(Path(work), out)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
