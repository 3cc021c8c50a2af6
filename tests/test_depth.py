"""`keep_layers` (models/depth.py): the kept blocks compute what they computed inside the full model, the KV
cache indexes them densely (cached generation equals uncached argmax decoding), and a bad selection fails
before any model loads."""

from __future__ import annotations

import pytest
import torch

from llmlab.errors import UserError
from llmlab.fixtures import fixture_path
from llmlab.models import depth
from llmlab.models.anatomy import blocks
from llmlab.models.tiny import tiny_causal_lm


def test_the_selection_grammar():
    assert depth.parse_layers(3) == 3
    assert depth.parse_layers("0-1,3") == [0, 1, 3]
    assert depth.parse_layers([0, 2]) == [0, 2]
    for bad in (0, "1-0", "a", "1,1", [-1], True):
        with pytest.raises(UserError, match="keep_layers"):
            depth.parse_layers(bad)


def _hidden(model, ids):
    """Each block's input hidden state in one forward."""
    seen = []
    hooks = [b.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs.get("hidden_states", args[0] if args
                                                                                        else None).clone()),
                                         with_kwargs=True) for b in blocks(model)]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    for h in hooks:
        h.remove()
    return seen, logits


def test_kept_blocks_run_as_inside_the_full_model_and_the_cache_indexes_them_densely():
    model, _ = tiny_causal_lm(seed=0)
    model.eval()
    ids = torch.tensor([[5, 9, 13, 2, 7, 30]])
    full_inputs, full_logits = _hidden(model, ids)
    same, _ = tiny_causal_lm(seed=0)
    depth.keep_blocks(same, 4)   # every block kept: the same function
    assert torch.equal(_hidden(same, ids)[1], full_logits)
    assert depth.keep_blocks(model, "0-1,3") == [0, 1, 3]
    assert len(blocks(model)) == 3 and model.config.num_hidden_layers == 3
    assert [b.self_attn.layer_idx for b in blocks(model)] == [0, 1, 2]
    inputs, logits = _hidden(model, ids)
    assert torch.equal(inputs[1], full_inputs[1])      # blocks 0 and 1 as before
    assert torch.equal(inputs[2], full_inputs[2])      # old block 3 now reads block 1's output, as block 2 did
    assert not torch.equal(logits, full_logits)        # block 2 is really gone
    with torch.no_grad():
        greedy = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False)
        seq = ids
        for _ in range(6):   # no cache: argmax of a full forward each step
            seq = torch.cat([seq, model(input_ids=seq).logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(greedy, seq)


def test_a_block_out_of_range_is_named():
    model, _ = tiny_causal_lm(seed=0)
    with pytest.raises(UserError, match="names block 9, but this model has 4 blocks"):
        depth.keep_blocks(model, "0,9")


def test_a_bad_selection_fails_before_the_model_loads(llmlab_inproc):
    code, out, err = llmlab_inproc("model=tiny-llama", "+model.keep_layers=2-1", "method=none", "task=instruct",
                                   f"task.data_dir={fixture_path('instruct')}",
                                   "scale=smoke", "logger=none")
    assert code == 2 and "keep_layers='2-1' is not a block selection" in err
