"""GLUE task (files, metrics, fine-tuning end to end on a tiny encoder) and the SAM-family optimizers."""

from __future__ import annotations

import json
import math

import pytest
import torch

from llmlab.data import glue as data
from llmlab.errors import UserError
from llmlab.metrics import glue as gm
from llmlab.methods.optim.esam import ESAM
from llmlab.methods.optim.fisher import FisherMask
from llmlab.methods.optim.gsam import GSAM
from llmlab.methods.optim.sam import SAM


def write_glue(root):
    from llmlab.fixtures import glue as fixture

    fixture.write(root)
    return root


# -- files and metrics ---------------------------------------------------------------------------
def test_glue_tsv_layouts(tmp_path):
    root = write_glue(tmp_path)
    cola = data.load(root, "cola", "dev")
    assert len(cola) == 24 and cola[0] == {"idx": 0, "text_a": "cat the mat on sat the .", "text_b": None, "label": 0}
    stsb = data.load(root, "stsb", "train")
    assert stsb[1]["label"] == 4.0 and stsb[1]["text_b"] == "she reads books every day ."
    mrpc = data.load(root, "mrpc", "dev")  # the BOM of the header does not hide the "Quality" column
    assert [e["label"] for e in mrpc[:4]] == [0, 1, 0, 1]


def test_glue_missing_file_names_path_and_fix(tmp_path):
    with pytest.raises(UserError) as err:
        data.check_local(tmp_path, data.subset("rte"))
    text = str(err.value)
    assert str(tmp_path / "RTE" / "train.tsv") in text and "download_glue_data.py" in text and "nyu-mll/glue" in text
    with pytest.raises(UserError, match="not a GLUE task"):
        data.subset("squad")


def test_glue_metrics_match_reference_implementations():
    scipy_stats = pytest.importorskip("scipy.stats")
    sk = pytest.importorskip("sklearn.metrics")
    gen = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 2, (200,), generator=gen).tolist()
    gold = [p if torch.rand(1, generator=gen).item() < 0.7 else 1 - p for p in pred]
    assert gm.matthews_corr(pred, gold) == pytest.approx(100 * sk.matthews_corrcoef(gold, pred))
    assert gm.f1(pred, gold) == pytest.approx(100 * sk.f1_score(gold, pred))
    x = [round(v, 1) for v in torch.rand(100, generator=gen).tolist()]  # rounded: ties for Spearman's ranks
    y = [v + 0.3 * w for v, w in zip(x, torch.rand(100, generator=gen).tolist())]
    assert gm.pearson(x, y) == pytest.approx(100 * scipy_stats.pearsonr(x, y)[0])
    assert gm.spearman(x, y) == pytest.approx(100 * scipy_stats.spearmanr(x, y)[0])
    both = gm.glue_metrics(("accuracy", "f1"), pred, gold)
    assert both["glue_task_score"] == pytest.approx((both["accuracy"] + both["f1"]) / 2)


# -- the optimizers ------------------------------------------------------------------------------
def quadratic_model(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    return model, x, y


def test_sam_step_is_the_gradient_at_the_perturbed_point():
    """One SAM step = base step with the gradient at w + rho g/||g||, and the weights come back exactly."""
    model, x, y = quadratic_model()
    base = torch.optim.SGD(model.parameters(), lr=0.1)
    w0 = [p.detach().clone() for p in model.parameters()]
    loss = lambda: ((model(x) - y) ** 2).mean()
    loss().backward()
    g = [p.grad.clone() for p in model.parameters()]
    norm = torch.sqrt(sum((t ** 2).sum() for t in g))
    # the reference: gradient at w + e by hand
    ref = quadratic_model()[0]
    for p, w, gi in zip(ref.parameters(), w0, g):
        p.data = w + 0.05 * gi / (norm + 1e-12)
    ((ref(x) - y) ** 2).mean().backward()
    expected = [w - 0.1 * p.grad for w, p in zip(w0, ref.parameters())]

    opt = SAM(rho=0.05).optimizer(model, base)
    opt.perturb(0, 0.1)
    assert not torch.equal(next(model.parameters()), w0[0])
    opt.zero_grad()
    loss().backward()
    opt.restore()
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), w0))  # restored exactly
    opt.step()
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p, e)


def test_fisher_mask_keeps_the_largest_squared_gradients_and_spares_unmasked_names():
    model = torch.nn.Linear(10, 10)
    model.weight.grad = torch.arange(100.0).view(10, 10) - 50  # squared: largest at both ends
    model.bias.grad = torch.ones(10)
    mask = FisherMask(list(model.named_parameters()), keep_ratio=0.1, unmasked=("bias",))
    mask.refresh(list(model.named_parameters()))
    kept = mask.mask["weight"]
    assert int(kept.sum()) == 10 and "bias" not in mask.mask
    fisher = model.weight.grad.pow(2)
    assert fisher[kept].min() >= fisher[~kept].max()
    assert torch.equal(mask.apply("bias", torch.ones(10)), torch.ones(10))  # outside the mask: full perturbation
    assert mask.facts()["mask_sparsity"] == pytest.approx(0.9)


def test_fsam_perturbs_only_masked_weights_and_refreshes_on_schedule():
    model, x, y = quadratic_model()
    opt = SAM(rho=0.05, fisher_mask=True, keep_ratio=0.25, mask_interval=3, unmasked=("bias",)).optimizer(
        model, torch.optim.SGD(model.parameters(), lr=0.1))
    for step in range(7):
        ((model(x) - y) ** 2).mean().backward()
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt.perturb(step, 0.1)
        for n, p in model.named_parameters():
            moved = p.detach() != before[n]
            if n.endswith("weight"):
                assert not (moved & ~opt.mask.mask[n]).any()  # nothing outside the mask moves
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.restore()
        opt.step()
        opt.zero_grad()
    assert opt.mask.refreshes == 3  # steps 0, 3, 6


def test_esam_selects_the_sharpest_examples_ties_included():
    esam = ESAM(gamma=0.5)
    before = torch.zeros(6)
    after = torch.tensor([0.1, 0.5, 0.3, 0.3, 0.0, 0.2])
    assert sorted(esam.select(before, after).tolist()) == [1, 2, 3]
    assert sorted(ESAM(gamma=0.34).select(before, after).tolist()) == [1, 2, 3]  # int(6 x .34)=2: cutoff .3, ties kept
    assert ESAM(gamma=0.1).select(before, after) is None  # int(0.6) = 0: all examples, as the release's except branch
    assert ESAM(gamma=1.0).select(before, after) is None


def test_gsam_decomposition_and_rho_schedule():
    gsam = GSAM(alpha=0.4)
    assert gsam.rho_at(1e-5, 1e-5) == pytest.approx(0.01) and gsam.rho_at(0.0, 1e-5) == pytest.approx(0.001)
    assert GSAM(rho_follows_lr=False).rho_at(1e-5, 1e-5) == pytest.approx(0.001)  # the release's stuck rho
    model = torch.nn.Linear(2, 1, bias=False)
    opt = gsam.optimizer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    g0, g1 = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    opt.old_grad = {model.weight: g0}
    model.weight.grad = g1.clone()
    gsam.combine(opt)
    # v = g0 - cos * |g0| * g1/|g1| = [1,0] - (1/sqrt2)(1)[1,1]/sqrt2 = [.5,-.5]; g1 - .4 v = [.8, 1.2]
    torch.testing.assert_close(model.weight.grad, torch.tensor([[0.8, 1.2]]))


def test_bad_optimizer_settings_are_refused():
    with pytest.raises(UserError, match="rho"):
        SAM(rho=-1)
    with pytest.raises(UserError, match="keep_ratio"):
        SAM(fisher_mask=True, keep_ratio=0)
    with pytest.raises(UserError, match="gamma"):
        ESAM(gamma=1.5)


# -- end to end ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method,subset", [("fsam", "cola"), ("esam", "stsb"), ("fgsam", "mrpc")])
def test_glue_runs_end_to_end_with_optimizers(tmp_path, llmlab_inproc, outputs, method, subset):
    root = write_glue(tmp_path / "glue")
    code, out, err = llmlab_inproc(f"method={method}", "task=glue", "model=tiny-encoder", f"task.subset={subset}",
                                   f"task.data_dir={root}", "task.epochs=2", "task.batch_size=8", "task.max_length=32",
                                   "method.mask_interval=2" if method != "esam" else "method.beta=0.5", "logger=none")
    assert code == 0, err
    res = json.loads(next(outputs.rglob("results.json")).read_text())
    metrics = res["metrics"]
    assert "glue_task_score" in metrics and "glue_task_score@best_epoch" in metrics
    info = res["info"]
    assert info["train_examples"] == 24 and info["updates"] == 6 and info["two_pass"] is True
    assert len(info["per_epoch"]) == 2
    if method in ("fsam", "fgsam"):
        assert res["method_info"]["mask_refreshes"] == 3 and res["method_info"]["steps"] == 6
    if subset == "stsb":
        assert {"pearson", "spearman"} <= set(metrics)
    assert all(math.isfinite(v) for v in metrics.values())


def test_finetune_loop_accumulation_with_sam():
    """Micro-batches (grad_accum) give the same SAM updates as the whole batch."""
    from llmlab.training.finetune import FineTuneSettings, fine_tune

    def run(grad_accum):
        model, x, y = quadratic_model(seed=1)
        batches = lambda epoch: iter([{"x": x, "y": y}, {"x": x.flip(0), "y": y.flip(0)}])
        loss_fn = lambda m, b: ((m(b["x"]) - b["y"]) ** 2).squeeze(-1)
        s = FineTuneSettings(epochs=1, learning_rate=0.05, batch_size=16, grad_accum=grad_accum, warmup_ratio=0.0,
                             weight_decay=0.0, logging_steps=1)
        out = fine_tune(model, loss_fn, batches, 2, s, method=SAM(rho=0.05))
        return [p.detach().clone() for p in model.parameters()], out

    whole, out = run(1)
    assert out["updates"] == 2 and out["two_pass"] and len(out["history"]) == 2
    for a, b in zip(whole, run(4)[0]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    start = [p.detach() for p in quadratic_model(seed=1)[0].parameters()]
    assert any(not torch.allclose(a, b) for a, b in zip(whole, start))  # it did train


def test_glue_refuses_missing_data_and_a_causal_lm_before_training(tmp_path, llmlab_inproc):
    code, out, err = llmlab_inproc("method=sam", "task=glue", "model=tiny-encoder", f"task.data_dir={tmp_path}/nope",
                                   "logger=none")
    assert code != 0 and f"{tmp_path}/nope/CoLA/train.tsv does not exist" in err
    root = write_glue(tmp_path / "glue")
    code, out, err = llmlab_inproc("method=none", "task=glue", "model=tiny-llama", f"task.data_dir={root}", "logger=none")
    assert code != 0 and "fine-tunes an encoder" in err and "model.kind=causal" in err
