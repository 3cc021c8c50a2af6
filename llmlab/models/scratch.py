"""`source: scratch`: a randomly initialised model of a transformers architecture, with a tokenizer trained on
the text files the spec names (a trimmed shared vocabulary of the languages it will see).

    source: scratch
    kind: seq2seq
    arch: mbart                 # the transformers config class: MBartConfig (pre-norm, layernorm_embedding)
    config: {d_model: 256, encoder_layers: 3, ...}        # the config's own keys
    tokenizer: {corpus: [files...], vocab_size: 4000}     # BPE over whitespace words, shared by both sides
    lang_codes: {en: en_XX, de: de_DE}                     # mBART's language tokens, added as special tokens

The tokenizer is trained once per (corpus content, settings) and cached; the model is seeded, so the same
`seed` gives the same weights. This is how the PTvsRI cpu scale builds its small mBART (the paper's RI model is
mBART-large's architecture from random weights; `source: hf` with the real checkpoint is the paper scale).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from llmlab.errors import UserError
from llmlab.models.cache import atomic_dir, cache_dir
from llmlab.models.lm import LM

ARCHS = {"mbart": ("MBartConfig", "MBartForConditionalGeneration")}
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # mBART's order: bos 0, pad 1, eos 2, unk 3


def check(spec: dict) -> None:
    """Before anything loads: the architecture is known and the tokenizer's corpus files exist."""
    if spec.get("arch", "mbart") not in ARCHS:
        raise UserError(f"model {spec.get('name')}: source=scratch builds one of {', '.join(ARCHS)}; got "
                        f"arch={spec.get('arch')!r}.")
    corpus = list((spec.get("tokenizer") or {}).get("corpus") or [])
    if not corpus:
        raise UserError(f"model {spec.get('name')}: source=scratch trains its tokenizer on text files: give "
                        f"model.tokenizer.corpus=[<file>, ...] (the training text of both languages).")
    missing = [str(p) for p in corpus if not Path(str(p)).is_file()]
    if missing:
        raise UserError(f"model {spec.get('name')}: the tokenizer corpus file(s) {', '.join(missing)} do not exist; "
                        f"give model.tokenizer.corpus the text files to train the vocabulary on.")


def tokenizer_for(spec: dict):
    """A BPE tokenizer (whitespace words, Metaspace) over the corpus files, with mBART's specials and the
    spec's language codes; cached by the files' content and the settings."""
    from transformers import PreTrainedTokenizerFast

    settings = dict(spec.get("tokenizer") or {})
    files = [Path(str(p)) for p in settings.get("corpus") or []]
    vocab_size = int(settings.get("vocab_size", 4000))
    codes = sorted(set((spec.get("lang_codes") or {}).values()))
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.read_bytes())
    digest.update(repr((vocab_size, codes, SPECIALS)).encode())
    path = cache_dir() / "tokenizers" / f"bpe-{vocab_size}-{digest.hexdigest()[:16]}"
    if not (path / "tokenizer.json").exists():
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS + codes, show_progress=False)
        tok.train([str(f) for f in files], trainer=trainer)
        with atomic_dir(path) as tmp:
            fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                           unk_token="<unk>", mask_token="<mask>",
                                           additional_special_tokens=codes)
            fast.save_pretrained(tmp)
    return PreTrainedTokenizerFast.from_pretrained(str(path))


def load(spec: dict, device: str = "cpu", dtype: str = "float32", seed: int = 0) -> LM:
    import transformers

    check(spec)
    config_cls, model_cls = ARCHS[spec.get("arch", "mbart")]
    tok = tokenizer_for(spec)
    config = getattr(transformers, config_cls)(
        vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, **dict(spec.get("config") or {}))
    torch.manual_seed(int(spec.get("seed", seed)))
    model = getattr(transformers, model_cls)(config)
    model.eval()
    return LM(model=model.to(device), tokenizer=tok, name=spec.get("name", "scratch"), spec=spec)
