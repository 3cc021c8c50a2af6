"""COMET (Rei et al., 2020) estimator models read from their released checkpoints, without the unbabel-comet package.

The package (unbabel-comet 2.2.7, the newest) pins transformers < 5 and numpy < 2, which this project's
environment cannot satisfy, so its regression estimator (`class_identifier: regression_metric`: wmt20-comet-da, the
ChatGPT4MT paper's metric, and wmt22-comet-da) is ported here from its code (comet/models/base.py,
models/regression/regression_metric.py, modules/layerwise_attention.py, modules/feedforward.py,
models/pooling_utils.py, encoders/xlmr.py):

- each of source, hypothesis and reference is encoded alone by the XLM-R encoder (`pretrained_model` in the
  checkpoint's hyperparameters: its tokenizer and config; a hub id, or a directory, which may lie beside
  hparams.yaml for offline use), truncated to max_position_embeddings - 4 tokens;
- `layer: mix`: the embeddings and every layer's hidden states, each layer-normalised over its unmasked tokens and
  dimensions together (no affine), mixed with softmax(scalar_parameters) (`sparsemax` when the checkpoint says so;
  "sparsemax_patch" reads as softmax, as the package does since 2.2.4) and scaled by gamma; an integer `layer`
  takes that hidden state alone;
- `pool: avg`: the mean over the tokens that are not padding (`cls`, `max` also as the package);
- the estimator, a feed-forward net (Linear-activation-dropout per hidden size, then Linear to 1), reads
  [mt, ref, mt*ref, |mt-ref|, mt*src, |mt-src|];
- the system score is the mean of the segment scores.
`tests/test_comet.py` checks this port against unbabel-comet's own scores on a small checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from llmlab.errors import UserError

PACKAGE_VERSION = "2.2.7"   # the unbabel-comet release this port follows


def checkpoint_files(model: str) -> tuple[Path, Path]:
    """(checkpoints/model.ckpt, hparams.yaml) of a checkpoint file, a model directory, or a hub model name
    (Unbabel/wmt20-comet-da; downloaded with huggingface_hub when the hub is on)."""
    path = Path(str(model)).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "model.ckpt"
    if not path.is_file():
        from huggingface_hub import snapshot_download

        repo = str(model) if "/" in str(model) else f"Unbabel/{model}"
        path = Path(snapshot_download(repo)) / "checkpoints" / "model.ckpt"
    hparams = path.parent.parent / "hparams.yaml"
    if not hparams.is_file():
        raise UserError(f"COMET: {hparams} is missing; a COMET checkpoint is <dir>/checkpoints/model.ckpt with "
                        f"<dir>/hparams.yaml beside checkpoints/ (as Unbabel/wmt20-comet-da ships it).")
    return path, hparams


def sparsemax(z: torch.Tensor) -> torch.Tensor:
    """Sparsemax over a vector (Martins & Astudillo, 2016): the Euclidean projection onto the simplex."""
    sorted_z, _ = torch.sort(z, descending=True)
    k = torch.arange(1, len(z) + 1, dtype=z.dtype, device=z.device)
    cumulative = sorted_z.cumsum(0)
    support = 1 + k * sorted_z > cumulative
    k_max = int(support.nonzero().max()) + 1
    tau = (cumulative[k_max - 1] - 1) / k_max
    return torch.clamp(z - tau, min=0)


class LayerMix(nn.Module):
    """The scalar mix of all hidden states (the package's LayerwiseAttention at inference)."""

    def __init__(self, num_layers: int, layer_norm: bool, transformation: str):
        super().__init__()
        self.scalar_parameters = nn.ParameterList([nn.Parameter(torch.zeros(1)) for _ in range(num_layers)])
        self.gamma = nn.Parameter(torch.ones(1))
        self.layer_norm, self.transformation = layer_norm, transformation

    def forward(self, states: tuple[torch.Tensor, ...], mask: torch.Tensor) -> torch.Tensor:
        weights = torch.cat(list(self.scalar_parameters))
        weights = sparsemax(weights) if self.transformation == "sparsemax" else torch.softmax(weights, dim=0)
        m = mask.float().unsqueeze(-1)
        count = mask.float().sum(1) * states[0].shape[-1]
        mixed = 0
        for w, h in zip(weights, states):
            if self.layer_norm:   # over the unmasked tokens and all dimensions of each example together
                mean = (h * m).flatten(1).sum(1) / count
                var = (((h * m - mean[:, None, None]) * m) ** 2).flatten(1).sum(1) / count
                h = (h - mean[:, None, None]) / torch.sqrt(var + 1e-12)[:, None, None]
            mixed = mixed + w * h
        return self.gamma * mixed


class Estimator(nn.Module):
    """The package's FeedForward: Linear, activation, dropout per hidden size, then Linear to one score."""

    def __init__(self, in_dim: int, hidden_sizes: list[int], activation: str, final_activation: str | None):
        super().__init__()
        layers: list[nn.Module] = []
        for size in hidden_sizes:
            layers += [nn.Linear(in_dim, size), _activation(activation), nn.Dropout(0.0)]
            in_dim = size
        layers.append(nn.Linear(in_dim, 1))
        if final_activation:
            layers.append(_activation(final_activation))
        self.ff = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(x)


def _activation(name: str) -> nn.Module:
    if not hasattr(nn, name.title()):
        raise UserError(f"COMET: activation {name!r} is not a torch.nn module name (e.g. Tanh, Sigmoid).")
    return getattr(nn, name.title())()


@dataclass
class Comet:
    """A loaded regression estimator: `score(sources, hypotheses, references)`."""

    encoder: nn.Module
    tokenizer: object
    mix: LayerMix | None
    estimator: Estimator
    hparams: dict
    name: str

    @torch.no_grad()
    def embed(self, texts: list[str]) -> torch.Tensor:
        limit = self.encoder.config.max_position_embeddings - 4   # encoders/bert.py: max_positions - 2, twice
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=limit)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        states = self.encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        layer = self.hparams.get("layer", "mix")
        h = self.mix(states, mask) if self.mix is not None else states[int(layer)]
        pool = self.hparams.get("pool", "avg")
        pad = ids.eq(self.tokenizer.pad_token_id).unsqueeze(-1)
        if pool == "avg":
            return h.masked_fill(pad, 0.0).sum(1) / mask.unsqueeze(-1).float().sum(1)
        if pool == "max":
            return h.masked_fill(pad, float("-inf")).max(1).values
        if pool in ("cls", "default"):
            return h[:, 0]
        raise UserError(f"COMET: pool={pool!r} in {self.name}'s hyperparameters is not one of avg, max, cls.")

    @torch.no_grad()
    def segment_scores(self, sources: list[str], hypotheses: list[str], references: list[str],
                       batch_size: int = 16) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(hypotheses), batch_size):
            end = start + batch_size
            src, mt, ref = (self.embed(list(x[start:end])) for x in (sources, hypotheses, references))
            features = torch.cat([mt, ref, mt * ref, (mt - ref).abs(), mt * src, (mt - src).abs()], dim=1)
            scores += self.estimator(features).view(-1).tolist()
        return scores


def load(model: str) -> Comet:
    """A COMET regression checkpoint (a model.ckpt, its directory, or a hub name) with its encoder."""
    import yaml
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    ckpt_path, hparams_path = checkpoint_files(model)
    kind = (yaml.safe_load(hparams_path.read_text()) or {}).get("class_identifier")
    if kind != "regression_metric":
        raise UserError(f"COMET: {hparams_path} says class_identifier={kind!r}; llmlab ports the regression "
                        f"estimator (regression_metric: wmt20-comet-da, wmt22-comet-da), not referenceless or "
                        f"ranking models. Use a regression checkpoint.")
    # a Lightning checkpoint (a pickle with its hyperparameters): only open checkpoint files you trust
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    hparams = dict(ckpt.get("hyper_parameters") or yaml.safe_load(hparams_path.read_text()))
    state = ckpt["state_dict"]
    if hparams.get("encoder_model", "XLM-RoBERTa") != "XLM-RoBERTa":
        raise UserError(f"COMET: encoder_model={hparams.get('encoder_model')!r}; the port reads XLM-RoBERTa encoders "
                        f"(wmt20/22-comet-da).")
    pretrained = str(hparams.get("pretrained_model", "xlm-roberta-large"))
    if (hparams_path.parent / pretrained).is_dir():   # llmlab: an encoder directory beside hparams.yaml (offline use)
        pretrained = str(hparams_path.parent / pretrained)
    tokenizer = AutoTokenizer.from_pretrained(pretrained)
    config = AutoConfig.from_pretrained(pretrained)
    encoder = AutoModel.from_config(config, add_pooling_layer=False)
    result = encoder.load_state_dict({k[len("encoder.model."):]: v for k, v in state.items()
                                      if k.startswith("encoder.model.")}, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or result.unexpected_keys:
        raise UserError(f"COMET: {ckpt_path}'s encoder weights do not fit {pretrained}'s architecture (missing "
                        f"{missing[:3]}, unexpected {result.unexpected_keys[:3]}); the checkpoint's pretrained_model "
                        f"must be the encoder it was trained on.")
    mix = None
    if hparams.get("layer", "mix") == "mix":
        mix = LayerMix(config.num_hidden_layers + 1, bool(hparams.get("layer_norm", True)),
                       str(hparams.get("layer_transformation", "softmax")))
        mix.load_state_dict({k[len("layerwise_attention."):]: v for k, v in state.items()
                             if k.startswith("layerwise_attention.") and "dropout" not in k})
    estimator = Estimator(config.hidden_size * 6, list(hparams.get("hidden_sizes", [3072, 1024])),
                          str(hparams.get("activations", "Tanh")), hparams.get("final_activation"))
    estimator.load_state_dict({k[len("estimator."):]: v for k, v in state.items() if k.startswith("estimator.")})
    for module in (encoder, mix, estimator):
        if module is not None:
            module.eval()
    return Comet(encoder, tokenizer, mix, estimator, hparams, str(model))
