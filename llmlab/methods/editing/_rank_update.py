"""What ROME and MEMIT share: the MLP down-projection they rewrite, keys at the subject's last
token, the optimized value vector, the keys' second moment, and the closed-form updates.

Both methods treat the MLP down-projection `W` (nn.Linear, weight [hidden, intermediate]) of a
decoder layer as a linear key-value memory: its input at the subject's last token is the key
`k`, its output the value `W k`. Facts learnt from the official code (kmeng01/rome, rome/;
kmeng01/memit, memit/; EasyEdit's llama hparams):

- keys are averaged over context templates: "{}" plus short prefixes sampled from the model
  (rome_main.get_context_templates, memit_main.get_context_templates); "{}" alone is allowed
  here for speed and tests (`context_template_length_params: []`);
- the value is found by gradient descent on a vector `delta` added to a module's output at the
  subject's last token of every prompt (compute_v.py / compute_z.py): mean NLL of the target
  tokens over the templated edit prompts + kl_factor * KL on "{subject} is a" + v_weight_decay *
  |delta| / |v_init|^2, Adam(v_lr), early stop at loss < 5e-2, |delta| clamped to
  clamp_norm_factor * |v_init|; the loss is taken on the model's own logits (the official
  v_loss_layer is the last layer in every config);
- the second moment C = E[k k^T] of keys (uncentered; layer_stats.py / runningstats.SecondMoment)
  comes from a text sample; here the standard library's docstrings (llmlab.corpus), the text
  present on every machine, one docstring per sample.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from llmlab.batching import pad_id, padded
from llmlab.errors import UserError
from llmlab.methods.editing.base import WeightEditor
from llmlab.models import activations, anatomy

log = logging.getLogger(__name__)

# Seed words of the sampled context prefixes (memit_main.get_context_templates; EasyEdit uses
# the same for ROME).
TEMPLATE_SEEDS = ("The", "Therefore", "Because", "I", "You")


# --------------------------------------------------------------------------- locating modules


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a llama-, qwen2-, mistral- or gemma3-style causal LM (llmlab.models.anatomy)."""
    try:
        found = anatomy.blocks(model)
        if isinstance(anatomy.mlp_out(found[0], strict=False), nn.Linear) and hasattr(found[0], "self_attn"):
            return found
    except UserError:
        pass
    raise UserError(
        f"ROME/MEMIT rewrite the MLP down-projection (`mlp.down_proj`, an nn.Linear) of a decoder "
        f"layer, but {type(model).__name__} has no list of decoder layers with one. Use a llama-, "
        f"qwen2-, mistral- or gemma3-style model (e.g. model=smollm2-135m or model=gemma3-270m)."
    )


def down_proj(model: nn.Module, layer: int) -> nn.Linear:
    return anatomy.mlp_out(decoder_layers(model)[layer])


def down_proj_weight_name(model: nn.Module, layer: int) -> str:
    """The parameter name of layer `layer`'s down-projection weight (for WeightSnapshot)."""
    return anatomy.parameter_name(model, down_proj(model, layer).weight)


def resolve_layers(lm, layers, method: str, default) -> list[int]:
    """`layers` validated against the model's depth (sorted ints); None: `default(depth)`."""
    n = len(decoder_layers(lm.model))
    if layers is None:
        return sorted(default(n))
    try:
        values = [int(x) for x in (layers if hasattr(layers, "__iter__") else [layers])]
    except (TypeError, ValueError):
        values = []
    bad = [x for x in values if not 0 <= x < n]
    if not values or bad or len(set(values)) != len(values):
        shown = list(layers) if hasattr(layers, "__iter__") else layers
        raise UserError(
            f"{method}: layers={shown} is not valid for {getattr(lm, 'name', 'this model')}, which has {n} "
            f"decoder layers: give distinct indices in 0..{n - 1}, e.g. method.layers={sorted(default(n))}, "
            f"or method.layers=null for that depth-scaled default."
        )
    return sorted(values)


# --------------------------------------------------------------------------- tokens and positions


@dataclass
class Prompt:
    """Token ids of a text and the index of the subject's last token in them."""

    ids: list[int]
    lookup: int


def encode_at_subject(tokenizer, text: str, subject_start: int, subject_end: int) -> Prompt:
    """Tokenize `text` (with the tokenizer's special tokens); find the subject's last token:
    the last token starting before the subject's end (rome/repr_tools.py `subject_last`)."""
    enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=getattr(tokenizer, "is_fast", False))
    ids = list(enc["input_ids"])
    if "offset_mapping" in enc:
        starts = [i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > s and s < subject_end]
        if starts:
            return Prompt(ids, starts[-1])
    # Slow tokenizers: the length of the tokenized text up to the subject's end (repr_tools).
    head = tokenizer(text[:subject_end], add_special_tokens=True)["input_ids"]
    return Prompt(ids, min(len(head), len(ids)) - 1)


def subject_span(prompt: str, subject: str) -> tuple[int, int] | None:
    """Character span of `subject` in `prompt` (case-insensitive as a fallback); None if absent."""
    start = prompt.find(subject) if subject else -1
    if start < 0 and subject:
        start = prompt.lower().find(subject.lower())
    if start < 0:
        return None
    return start, start + len(subject)


def target_text(prompt: str, target: str) -> str:
    """The target as it continues the prompt: with a leading space unless one is there
    (rome_main.execute_rome: 'Space required for correct tokenization')."""
    if target[:1].isspace() or prompt[-1:].isspace():
        return target
    return " " + target


def target_ids(tokenizer, prompt: str, target: str) -> list[int]:
    """Token ids of `target` as the continuation of `prompt` (no special tokens)."""
    target = target_text(prompt, target)
    head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full = tokenizer(prompt + target, add_special_tokens=False)["input_ids"]
    if len(full) > len(head) and full[: len(head)] == head:
        return list(full[len(head):])
    ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    if not ids:
        raise UserError(f"the edit target {target!r} tokenizes to nothing; give a non-empty target_new.")
    return list(ids)


def template_prompts(tokenizer, templates: list[str], prompt: str, subject: str) -> list[Prompt]:
    """`prompt` placed in each template (a prefix ending in "{}"), with the subject's last token;
    a prompt without the subject looks up its own last token (ROME's fact_token "last")."""
    span = subject_span(prompt, subject)
    if span is None:
        log.warning("subject %r not in prompt %r: using the prompt's last token", subject, prompt)
    out = []
    for tmpl in templates:
        prefix = tmpl[: tmpl.index("{}")]
        start, end = span if span is not None else (len(prompt), len(prompt))
        out.append(encode_at_subject(tokenizer, prefix + prompt, len(prefix) + start, len(prefix) + end))
    return out


# --------------------------------------------------------------------------- context templates

_TEMPLATE_CACHE: dict[tuple, list[list[str]]] = {}


def context_templates(lm, length_params, seed: int = 0) -> list[list[str]]:
    """Groups of templates: [["{}"], [sampled prefixes + ". {}"] per (length, n_gen)].

    Prefixes are sampled from the model (top-k 5, as util/generate.generate_fast) starting from
    each seed word, n_gen // 5 per seed word, `length` tokens long; cached per model and params.
    `length_params` empty: only "{}" (deterministic, fast)."""
    length_params = [(int(a), int(b)) for a, b in (length_params or [])]
    groups = [["{}"]]
    if not length_params:
        return groups
    key = (_fingerprint(lm.model), tuple(length_params), seed)
    if key not in _TEMPLATE_CACHE:
        tok, model = lm.tokenizer, lm.model
        sampled = []
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            for length, n_gen in length_params:
                group = []
                for word in TEMPLATE_SEEDS:
                    n = max(1, n_gen // len(TEMPLATE_SEEDS))
                    ids = torch.tensor([tok(word, add_special_tokens=True)["input_ids"]], device=lm.device)
                    # util/generate.generate_fast: max_out_len counts the prompt's tokens (BOS included)
                    # (a seed word already that long is taken as it is)
                    new = length - ids.shape[1]
                    out = ids.expand(n, -1) if new <= 0 else model.generate(
                        ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=5, top_p=1.0,
                        temperature=1.0, max_new_tokens=new, min_new_tokens=new, num_return_sequences=n,
                        pad_token_id=pad_id(tok))
                    for row in out:
                        text = tok.decode(row, skip_special_tokens=True)
                        text = re.sub(r"\s+", " ", text.replace("{", " ").replace("}", " ")).strip()
                        group.append(text + ". {}")
                sampled.append(group)
        _TEMPLATE_CACHE[key] = groups + sampled
        log.info("context templates: %s", _TEMPLATE_CACHE[key])
    return _TEMPLATE_CACHE[key]


# --------------------------------------------------------------------------- activations


@contextmanager
def grad_enabled():
    """Gradients on (even under no_grad/inference_mode callers); model parameters frozen."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


@contextmanager
def frozen(model: nn.Module):
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _tensor_out(output):
    return output[0] if isinstance(output, tuple) else output


def io_at(lm, module: nn.Module, prompts: list[Prompt], batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Input and output of `module` at each prompt's lookup token: ([n, d_in], [n, d_out]), float32."""
    return activations.io_at(lm, module, [(p.ids, p.lookup) for p in prompts], batch_size)


def mean_key(lm, layer: int, groups: list[list[str]], prompt: str, subject: str) -> torch.Tensor:
    """Down-projection input at the subject's last token, averaged within each template group
    and then across groups (memit/compute_ks.py; ROME passes one flat group: compute_u.py)."""
    module = down_proj(lm.model, layer)
    flat = [t for g in groups for t in g]
    keys, _ = io_at(lm, module, template_prompts(lm.tokenizer, flat, prompt, subject))
    means, at = [], 0
    for g in groups:
        means.append(keys[at: at + len(g)].mean(0))
        at += len(g)
    return torch.stack(means).mean(0)


# --------------------------------------------------------------------------- value optimization


@dataclass
class ValueSettings:
    v_num_grad_steps: int
    v_lr: float
    v_weight_decay: float
    kl_factor: float
    clamp_norm_factor: float


def optimize_value(lm, module: nn.Module, request, templates: list[str], hp: ValueSettings,
                   stats: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(v_init, delta): `module`'s output at the subject's last token of the plain prompt, and the
    vector that, added there (and at the same token of every templated and KL prompt), makes the
    model emit `request.target_new` (rome/compute_v.py, memit/compute_z.py). `templates[0]`
    must be "{}". Runs with gradients on even when the caller is under no_grad/inference_mode."""
    with grad_enabled(), frozen(lm.model):
        return _optimize_value(lm, module, request, templates, hp, stats)


def _optimize_value(lm, module, request, templates, hp, stats):
    tok, model = lm.tokenizer, lm.model
    tgt = target_ids(tok, request.prompt, request.target_new)
    rewrites = template_prompts(tok, templates, request.prompt, request.subject)
    kl = template_prompts(tok, ["{}"], f"{request.subject} is a", request.subject)
    seqs = [p.ids + tgt[:-1] for p in rewrites] + [p.ids for p in kl]
    ids, mask, _ = padded(seqs, pad_id(tok), lm.device)
    n_rw, width = len(rewrites), ids.shape[1]
    # Positions read by the loss: a rewrite row's len(tgt) positions that predict the target tokens,
    # a KL row's subject lookup (repeated to the same width). Only these go through the LM head.
    lookups = [p.lookup for p in rewrites + kl]
    read = torch.tensor([[len(p.ids) - 1 + k for k in range(len(tgt))] for p in rewrites]
                        + [[j] * len(tgt) for j in lookups[n_rw:]], device=ids.device)
    label = torch.tensor(tgt, device=ids.device).expand(n_rw, -1)
    at = torch.zeros((len(seqs), width, 1), device=ids.device)
    for i, j in enumerate(lookups):
        at[i, j] = 1.0

    hidden = _tensor_out_dim(module)
    delta = torch.zeros(hidden, device=ids.device, dtype=torch.float32, requires_grad=True)
    state = {"init": None}

    def hook(mod, args, output):
        out = _tensor_out(output)
        if state["init"] is None:
            state["init"] = out[0, lookups[0]].detach().float().clone()
        new = out + (at * delta).to(out.dtype)
        return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new

    opt = torch.optim.Adam([delta], lr=hp.v_lr)
    kl_init = None
    losses = []
    handle = module.register_forward_hook(hook)
    try:
        for it in range(hp.v_num_grad_steps):
            opt.zero_grad()
            logits = logits_at(model, ids, mask, read).float()
            kl_logp = torch.log_softmax(logits[n_rw:, 0], dim=-1)
            if kl_init is None:
                kl_init = kl_logp.detach().clone()
            logp = torch.log_softmax(logits[:n_rw], dim=-1)
            picked = torch.gather(logp, 2, label.unsqueeze(2)).squeeze(2)
            nll_each = -picked.sum(1) / len(tgt)
            nll = nll_each.mean()
            kl_loss = hp.kl_factor * torch.nn.functional.kl_div(kl_init, kl_logp, log_target=True,
                                                                reduction="batchmean")
            decay = hp.v_weight_decay * (delta.norm() / state["init"].norm() ** 2)
            loss = nll + kl_loss + decay
            losses.append((loss.item(), nll.item(), torch.exp(-nll_each).mean().item()))
            if loss.item() < 5e-2 or it == hp.v_num_grad_steps - 1:
                break
            loss.backward()
            opt.step()
            max_norm = hp.clamp_norm_factor * state["init"].norm()
            if delta.norm() > max_norm:
                with torch.no_grad():
                    delta.mul_(max_norm / delta.norm())
    finally:
        handle.remove()
    if stats is not None:
        stats["v_steps"] = len(losses)
        stats["v_loss_first"], stats["v_loss_last"] = (losses[0][0], losses[-1][0]) if losses else (None, None)
        stats["target_prob_last"] = losses[-1][2] if losses else None
    return state["init"], delta.detach().clone()


def logits_at(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The causal LM's logits at `positions` [batch, k] only: [batch, k, vocab]. The decoder runs
    once; the LM head (and the final soft-capping, Gemma) runs on the gathered rows, which is what
    the model's own forward computes there. With a 262k vocabulary the head over every position of
    ROME's 21 templated prompts costs more than the layers."""
    hidden = model.get_decoder()(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
    picked = hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    logits = model.get_output_embeddings()(picked)
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def _tensor_out_dim(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    proj = anatomy.mlp_out(module, strict=False)  # a decoder block: its output is the residual stream
    if proj is not None:
        return proj.out_features
    raise TypeError(f"cannot tell the output width of {type(module).__name__}")  # pragma: no cover


# --------------------------------------------------------------------------- key second moment

_MOM2_CACHE: dict[tuple, torch.Tensor] = {}
_WARNED: set[tuple] = set()


def _fingerprint(model: nn.Module) -> str:
    """A cheap digest of all weights (a strided sample of each parameter) and their shapes."""
    h = hashlib.sha1()
    for name, p in model.named_parameters():
        flat = p.detach().reshape(-1)
        step = max(1, flat.numel() // 256)
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(flat[::step].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def mom2_samples_used(n_samples: int) -> int:
    """How many local text samples `second_moments` really uses for `n_samples` asked."""
    from llmlab.corpus import stdlib_docstrings

    return min(int(n_samples), len(stdlib_docstrings()))


def second_moments(lm, layers: list[int], n_samples: int, max_length: int, on_disk: bool = True) -> dict[int, torch.Tensor]:
    """C[layer] = E[k k^T] over every token of the first `n_samples` standard-library docstrings
    (each truncated to `max_length` tokens), k the down-projection input (rome/layer_stats.py).

    Cached in memory per (weights, layer, samples, length) and, when `on_disk`, under
    llmlab.models.cache.cache_dir()/mom2/. Returns float32 matrices on the model's device."""
    from llmlab.corpus import stdlib_docstrings

    docs = stdlib_docstrings()
    n = min(int(n_samples), len(docs))
    if n < int(n_samples) and (n_samples, n) not in _WARNED:
        _WARNED.add((n_samples, n))  # once per process, not once per edit
        log.warning("mom2: %d samples asked, the local text has %d docstrings; using %d (recorded as "
                    "method_info.mom2_samples_used)", n_samples, len(docs), n)
    fp = _fingerprint(lm.model)
    keys = {layer: (fp, layer, n, int(max_length)) for layer in layers}
    out: dict[int, torch.Tensor] = {}
    todo = []
    for layer in layers:
        if keys[layer] in _MOM2_CACHE:
            out[layer] = _MOM2_CACHE[keys[layer]]
            continue
        path = _mom2_path(lm, keys[layer])
        if on_disk and path.exists():
            try:
                _MOM2_CACHE[keys[layer]] = torch.load(path, map_location="cpu")
                out[layer] = _MOM2_CACHE[keys[layer]]
                continue
            except Exception as err:  # pragma: no cover - a damaged cache file: recompute
                log.warning("ignoring unreadable mom2 cache %s: %s", path, err)
        todo.append(layer)
    if todo:
        computed = _collect(lm, todo, docs[:n], int(max_length))
        for layer, mat in computed.items():
            _MOM2_CACHE[keys[layer]] = mat
            out[layer] = mat
            if on_disk:
                path = _mom2_path(lm, keys[layer])
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".tmp{os.getpid()}")
                torch.save(mat, tmp)
                os.replace(tmp, path)
    return {layer: out[layer].to(lm.device) for layer in layers}


def _mom2_path(lm, key):
    from llmlab.models.cache import cache_dir

    fp, layer, n, length = key
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(getattr(lm, "name", "model")))
    return cache_dir() / "mom2" / f"{name}-{fp}-layer{layer}-n{n}-len{length}.pt"


def _collect(lm, layers: list[int], texts, max_length: int) -> dict[int, torch.Tensor]:
    """E[k kᵀ] of each layer's down-projection input over every non-pad token of `texts`."""
    tok = lm.tokenizer
    rows = [tok(t, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    modules = {layer: down_proj(lm.model, layer) for layer in sorted(layers)}
    moments = activations.collect_second_moments(lm, modules, rows, progress_desc=f"mom2 layers {layers}")
    return {layer: m.mean_outer().float().cpu() for layer, m in moments.items()}


# --------------------------------------------------------------------------- closed-form updates


def rome_update(residual: torch.Tensor, key: torch.Tensor, key_mean: torch.Tensor,
                cov_inv: torch.Tensor | None = None) -> torch.Tensor:
    """ROME's rank-one ΔW = r (C⁻¹k̄)ᵀ / ((C⁻¹k̄)ᵀ k) with r = v* − W k (rome_main.execute_rome:
    left vector u = C⁻¹k̄/|C⁻¹k̄| from compute_u.py, right vector r / (k·u) from compute_v.py).

    `key` is the key of the plain edit prompt, `key_mean` the key averaged over templates
    (equal to `key` without templates); C = I when `cov_inv` is None. Then (W+ΔW) k = v*, and
    for C = K Kᵀ this is the least-squares W' on the old keys K subject to W' k = v*."""
    dt = torch.promote_types(residual.dtype, torch.float32)  # at least float32
    u = key_mean.to(dt) if cov_inv is None else cov_inv.to(dt) @ key_mean.to(dt)
    u = u / u.norm()
    right = residual.to(dt) / torch.dot(key.to(dt), u)
    return torch.outer(right, u)


def memit_update(keys: torch.Tensor, residuals: torch.Tensor, cov: torch.Tensor, weight: float) -> torch.Tensor:
    """MEMIT's ΔW = R Kᵀ (λC + K Kᵀ)⁻¹ (memit_main.execute_memit, computed in float64):
    `keys` K [d_in, n], `residuals` R [d_out, n] (already divided among the layers), C [d_in, d_in]."""
    k, r = keys.double(), residuals.double()
    adj = torch.linalg.solve(weight * cov.double() + k @ k.T, k)
    return r @ adj.T


# --------------------------------------------------------------------------- the shared editor


@dataclass
class KeyValueEditor(WeightEditor):
    """What ROME and MEMIT share: the value optimisation settings (compute_v.py / compute_z.py),
    the key second moment (layer_stats.py), the context templates, the layers and their facts."""

    layers: list[int] | None = None  # null: the subclass's depth-scaled default
    v_num_grad_steps: int = 25
    v_lr: float = 0.5
    v_weight_decay: float = 1e-3
    clamp_norm_factor: float = 4.0
    kl_factor: float = 0.0625
    mom2_adjustment: bool = False
    mom2_n_samples: int = 100000  # texts in the key sample (capped at the local text's docstrings)
    mom2_max_length: int = 512  # tokens per text sample
    mom2_cache_on_disk: bool = True
    context_template_length_params: list = field(default_factory=list)
    template_seed: int = 0

    def __post_init__(self):
        if self.layers is not None:
            self.layers = [int(x) for x in self.layers] if hasattr(self.layers, "__iter__") else [int(self.layers)]
        self.context_template_length_params = [[int(a), int(b)] for a, b in (self.context_template_length_params or [])]
        self._stats: dict = {"mom2_seconds": 0.0, "template_seconds": 0.0}

    @staticmethod
    def default_layers(depth: int) -> list[int]:  # pragma: no cover - subclasses
        raise NotImplementedError

    def resolved_layers(self, lm) -> list[int]:
        return resolve_layers(lm, self.layers, self.name, self.default_layers)

    def edited_weights(self, lm) -> list[str]:
        return [down_proj_weight_name(lm.model, layer) for layer in self.resolved_layers(lm)]

    def value_settings(self) -> ValueSettings:
        return ValueSettings(self.v_num_grad_steps, self.v_lr, self.v_weight_decay, self.kl_factor,
                             self.clamp_norm_factor)

    def templates(self, lm) -> list[list[str]]:
        """The context template groups (timed, cached per model)."""
        start = time.perf_counter()
        groups = context_templates(lm, self.context_template_length_params, self.template_seed)
        self._stats["template_seconds"] += time.perf_counter() - start
        return groups

    def key_moments(self, lm, layers: list[int]) -> dict[int, torch.Tensor]:
        """C = E[k kᵀ] per layer over the local text sample (timed; records the samples used)."""
        start = time.perf_counter()
        moments = second_moments(lm, layers, self.mom2_n_samples, self.mom2_max_length, self.mom2_cache_on_disk)
        self._stats["mom2_samples_used"] = mom2_samples_used(self.mom2_n_samples)
        self._stats["mom2_seconds"] += time.perf_counter() - start
        return moments

    def facts(self) -> dict:
        return dict(self._stats)
