"""Model anatomy: where the blocks, attention, MLP projections and heads of a model are.

One place that knows the module names of the architectures llmlab runs, so that methods ask
"the MLP output projection of block 5" instead of walking attributes themselves:

    arch        blocks                          attention   MLP in                   MLP out
    llama, mistral, qwen2, gemma3 (decoders)
                model.layers[i]                 self_attn   mlp.gate_proj, up_proj   mlp.down_proj
    bert, roberta, electra (encoders)
                [bert.]encoder.layer[i]         attention   intermediate.dense       output.dense

Gemma 3 normalizes the MLP output before the residual add (`post_feedforward_layernorm`):
`normalizes_mlp_output(block)` says so, for methods that assume a plain residual add.
"""

from __future__ import annotations

from torch import nn

from llmlab.errors import UserError

# Paths of the block list, tried in order (a causal LM, a multimodal wrapper, a bare or headed encoder).
BLOCK_PATHS = (
    "model.layers", "model.language_model.layers", "language_model.model.layers", "layers",
    "encoder.layer", "bert.encoder.layer", "roberta.encoder.layer", "electra.encoder.layer",
    "model.encoder.layer", "base_model.encoder.layer",
)
ATTENTION_NAMES = ("self_attn", "attention", "attn")
MLP_OUT_PATHS = ("mlp.down_proj", "output.dense", "mlp.fc2", "fc2")
MLP_IN_PATHS = (("mlp.gate_proj", "mlp.up_proj"), ("intermediate.dense",), ("mlp.fc1",), ("fc1",))


def _get(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def blocks(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks (decoder layers, or encoder layers), in depth order."""
    for path in BLOCK_PATHS:
        found = _get(model, path)
        if isinstance(found, nn.ModuleList) and len(found) and mlp_out(found[0], strict=False) is not None:
            return found
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) and mlp_out(module[0], strict=False) is not None:
            return module
    raise UserError(f"{type(model).__name__} has no list of transformer blocks that llmlab knows (llama, mistral, "
                    f"qwen2, gemma3 decoders; bert, roberta, electra encoders). Use one of those architectures.")


def parameter_count(model: nn.Module) -> int:
    """The number of parameters (every tensor once)."""
    return sum(p.numel() for p in model.parameters())


def num_blocks(model: nn.Module) -> int:
    return len(blocks(model))


def block(model: nn.Module, index: int) -> nn.Module:
    return blocks(model)[index]


def attention(block_module: nn.Module) -> nn.Module:
    """A block's self-attention module (`self_attn` for decoders, `attention` for BERT-style)."""
    for name in ATTENTION_NAMES:
        found = getattr(block_module, name, None)
        if isinstance(found, nn.Module):
            return found
    raise UserError(f"{type(block_module).__name__} has no self-attention module at "
                    f"{' / '.join(ATTENTION_NAMES)}.")


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention module of every block, in depth order."""
    return [attention(b) for b in blocks(model)]


def mlp_out(block_module: nn.Module, strict: bool = True) -> nn.Linear | None:
    """A block's MLP output projection (llama `mlp.down_proj`, BERT `output.dense`)."""
    for path in MLP_OUT_PATHS:
        found = _get(block_module, path)
        if isinstance(found, nn.Linear):
            return found
    if strict:
        raise UserError(f"{type(block_module).__name__} has no MLP output projection at {' / '.join(MLP_OUT_PATHS)}.")
    return None


def mlp_in(block_module: nn.Module) -> list[nn.Linear]:
    """A block's MLP input projections (llama: gate and up; BERT: intermediate.dense)."""
    for paths in MLP_IN_PATHS:
        found = [_get(block_module, p) for p in paths]
        if all(isinstance(f, nn.Linear) for f in found):
            return found
    raise UserError(f"{type(block_module).__name__} has no MLP input projection llmlab knows.")


def linears(block_module: nn.Module) -> dict[str, nn.Linear]:
    """Every nn.Linear inside a block, by its name in the block (Wanda/SparseGPT's `find_layers`)."""
    return {name: m for name, m in block_module.named_modules() if isinstance(m, nn.Linear)}


def normalizes_mlp_output(block_module: nn.Module) -> bool:
    """Gemma 2/3 normalize the MLP output before adding it to the residual stream."""
    return hasattr(block_module, "post_feedforward_layernorm")


def parameter_name(model: nn.Module, param: nn.Parameter) -> str:
    """The name of `param` in `model.named_parameters()`."""
    for name, p in model.named_parameters():
        if p is param:
            return name
    raise KeyError("parameter is not part of the model")  # pragma: no cover


def decoder(model: nn.Module) -> nn.Module:
    """The decoder stack of a causal LM (without the head)."""
    return model.get_decoder() if hasattr(model, "get_decoder") else getattr(model, "model", model)
