#!/usr/bin/env python3
"""Tiny random encoder checkpoints and their reference outputs, for tests/mobilebert.rs.

Writes into tests/fixtures/reference-models/encoders/ (or the folder given as the first
argument) one folder per model, each a checkpoint as Hugging Face saves it (config.json,
model.safetensors, tokenizer.json) with `reference.json` beside it:

- mobilebert-nonorm: MobileBertForMaskedLM (tensors under `mobilebert.`), NoNorm, ReLU,
  trigram input, shared key/query bottleneck, 4 feed-forward networks: the layout of
  google/mobilebert-uncased at toy sizes; no pooling config (mean pooling).
- mobilebert-layernorm: MobileBertModel saved by sentence-transformers with CLS pooling
  (`1_Pooling/config.json`), LayerNorm with a large `layer_norm_eps` (so the norms that HF
  builds with PyTorch's default eps are told apart), GELU, bottlenecked attention inputs,
  2 feed-forward networks.
- mobilebert-plain: MobileBertModel without bottleneck nor trigram input, `embedding_size` !=
  `hidden_size` (the projection alone), LayerNorm, one feed-forward network.
- bert-cls: BertModel saved by sentence-transformers with CLS pooling.

`reference.json` holds, for each sentence encoded alone (no padding): the token ids,
`last_hidden_state`, the mean-pooled and CLS vectors, and `sentence_transformers` (what
SentenceTransformer.encode returns, for the sentence-transformers folders).

Needs torch (CPU), transformers, tokenizers and sentence-transformers:
    python3 tools/make-reference-encoders.py
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertModel,
    MobileBertConfig,
    MobileBertForMaskedLM,
    MobileBertModel,
    PreTrainedTokenizerFast,
)

SENTENCES = [
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
    "A man is playing a guitar while the quick brown fox jumps over the lazy dog, twice.",
    "Zebrafish xylophones?",
]

CORPUS = [
    "the weather is lovely today and it is so sunny outside",
    "he drove to the stadium to watch the game with his friends",
    "a man is playing a guitar in the park while children sing",
    "the quick brown fox jumps over the lazy dog",
    "models run on phones, watches and small boards at the edge",
    "mobile encoders compress the embedding table and use bottlenecks",
    "a sentence encoder maps text to a vector for retrieval",
    "doctors, lawyers and bankers read long documents every day",
] * 4

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tokenizer() -> Tokenizer:
    """A small uncased WordPiece tokenizer with BERT's normaliser and [CLS] ... [SEP]. The
    vocabulary is built deterministically from CORPUS (the trainer's tie-breaking changes
    from run to run): the specials, every character alone and as a `##` continuation, a
    few suffixes, and every word."""
    norm = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    words = sorted(
        {w for line in CORPUS for w, _ in pre.pre_tokenize_str(norm.normalize_str(line))}
    )
    chars = sorted({c for w in words for c in w})
    pieces = SPECIALS + chars + ["##" + c for c in chars] + ["##s", "##ing", "##ed", "##er"]
    pieces += [w for w in words if w not in pieces]
    tok = Tokenizer(models.WordPiece(vocab={p: i for i, p in enumerate(pieces)}, unk_token="[UNK]"))
    tok.normalizer = norm
    tok.pre_tokenizer = pre
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return tok


def fast_tokenizer(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def randomize(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Every parameter random at a scale that keeps activations of order one (the default
    initialisation leaves norms at exactly 1 and 0 and products near zero)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5)
            elif name.endswith("LayerNorm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def hidden_states(model, hf_tok, text):
    enc = hf_tok(text, return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    return enc["input_ids"][0].tolist(), out.last_hidden_state[0]


def reference(model, hf_tok, st=None) -> dict:
    rows = []
    for text in SENTENCES:
        ids, h = hidden_states(model, hf_tok, text)
        row = {
            "text": text,
            "input_ids": ids,
            "last_hidden_state": h.tolist(),
            "mean": h.mean(dim=0).tolist(),
            "cls": h[0].tolist(),
        }
        if st is not None:
            row["sentence_transformers"] = st.encode([text], convert_to_tensor=True)[0].tolist()
        rows.append(row)
    return {"sentences": rows}


def save_plain(model, tok: Tokenizer, out: Path) -> None:
    model.save_pretrained(out, safe_serialization=True)
    fast_tokenizer(tok).save_pretrained(out)


def save_sentence_transformers(model, tok: Tokenizer, out: Path, pooling: str):
    """Saves `model` as a sentence-transformers folder (Transformer + Pooling modules) and
    loads it back with sentence-transformers."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer

    staging = out.with_name(out.name + ".hf")
    save_plain(model, tok, staging)
    body = Transformer(str(staging), max_seq_length=model.config.max_position_embeddings)
    pool = Pooling(body.get_word_embedding_dimension(), pooling_mode=pooling)
    SentenceTransformer(modules=[body, pool], device="cpu").save(str(out))
    shutil.rmtree(staging)
    return SentenceTransformer(str(out), device="cpu")


def prune(out: Path) -> None:
    """Drops what the tests do not read (README, duplicated vocab files)."""
    for name in ["README.md", "vocab.txt", "special_tokens_map.json"]:
        p = out / name
        if p.exists():
            p.unlink()


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/reference-models/encoders")
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    torch.manual_seed(0)
    tok = make_tokenizer()
    vocab = tok.get_vocab_size()
    hf_tok = fast_tokenizer(tok)
    common = dict(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=24,
        max_position_embeddings=64,
        embedding_size=16,
        intra_bottleneck_size=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    variants = [
        (
            "mobilebert-nonorm",
            MobileBertForMaskedLM,
            dict(
                normalization_type="no_norm",
                hidden_act="relu",
                trigram_input=True,
                use_bottleneck=True,
                key_query_shared_bottleneck=True,
                use_bottleneck_attention=False,
                num_feedforward_networks=4,
            ),
            None,
        ),
        (
            "mobilebert-layernorm",
            MobileBertModel,
            dict(
                normalization_type="layer_norm",
                layer_norm_eps=0.05,
                hidden_act="gelu",
                trigram_input=True,
                use_bottleneck=True,
                key_query_shared_bottleneck=False,
                use_bottleneck_attention=True,
                num_feedforward_networks=2,
            ),
            "cls",
        ),
        (
            "mobilebert-plain",
            MobileBertModel,
            dict(
                normalization_type="layer_norm",
                hidden_act="relu",
                trigram_input=False,
                use_bottleneck=False,
                num_feedforward_networks=1,
            ),
            None,
        ),
    ]
    for seed, (name, cls, extra, pooling) in enumerate(variants):
        gen = torch.Generator().manual_seed(1000 + seed)
        model = cls(MobileBertConfig(**{**common, **extra})).eval()
        randomize(model, gen)
        out = root / name
        if pooling is None:
            save_plain(model, tok, out)
            st = None
        else:
            st = save_sentence_transformers(model, tok, out, pooling)
        base = model.mobilebert if hasattr(model, "mobilebert") else model
        ref = reference(base, hf_tok, st)
        ref["pooling"] = pooling or "mean"
        prune(out)
        (out / "reference.json").write_text(json.dumps(ref))

    gen = torch.Generator().manual_seed(2000)
    bert = BertModel(
        BertConfig(
            vocab_size=vocab,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=48,
            max_position_embeddings=64,
            hidden_act="gelu",
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        ),
        add_pooling_layer=False,
    ).eval()
    randomize(bert, gen)
    out = root / "bert-cls"
    st = save_sentence_transformers(bert, tok, out, "cls")
    ref = reference(bert, hf_tok, st)
    ref["pooling"] = "cls"
    prune(out)
    (out / "reference.json").write_text(json.dumps(ref))


if __name__ == "__main__":
    main()
