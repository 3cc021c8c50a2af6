"""COMET without the unbabel-comet package (metrics/comet.py): on a small checkpoint in the released layout
(llmlab/fixtures/comet.py) the port gives unbabel-comet 2.2.7's own scores, the translation task records them
per sentence and as the system score, and a checkpoint the port does not read is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from llmlab.errors import UserError
from llmlab.fixtures import fixture_path
from llmlab.fixtures.comet import EXAMPLES
from llmlab.metrics import comet

# unbabel-comet 2.2.7's `predict` on EXAMPLES (batch size 2), printed by scripts/comet_reference.py run in an
# environment with that package (transformers 4.57, numpy 1.26): the package's code, not this port, made them
PACKAGE_SCORES = [1.1069208, 0.3825582, 0.8525257, 1.0772641, 1.3011514]
PACKAGE_SYSTEM = 0.944084
PACKAGE_SPARSE = [1.7501916, 0.573373, 0.8598079, 1.2209743, 1.1988637]   # layer_transformation sparsemax, no layer norm


@pytest.mark.parametrize("batch_size", [2, 16])
def test_the_port_gives_the_package_scores(batch_size):
    sources, hypotheses, references = (list(x) for x in zip(*EXAMPLES))
    scores = comet.load(fixture_path("comet")).segment_scores(sources, hypotheses, references, batch_size=batch_size)
    assert scores == pytest.approx(PACKAGE_SCORES, abs=1e-5)
    assert sum(scores) / len(scores) == pytest.approx(PACKAGE_SYSTEM, abs=1e-5)


def test_the_sparsemax_mix_without_layer_norm_gives_the_package_scores(tmp_path):
    from llmlab.fixtures import comet as fixture

    fixture.write(tmp_path, **fixture.SPARSE)
    sources, hypotheses, references = (list(x) for x in zip(*EXAMPLES))
    scores = comet.load(str(tmp_path)).segment_scores(sources, hypotheses, references)
    assert scores == pytest.approx(PACKAGE_SPARSE, abs=1e-5)


def test_the_translation_task_scores_comet_per_sentence(llmlab_inproc, outputs, tmp_path):
    (tmp_path / "src.txt").write_text("\n".join(s for s, _, _ in EXAMPLES[:4]) + "\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("\n".join(r for _, _, r in EXAMPLES[:4]) + "\n", encoding="utf-8")
    (tmp_path / "hyp.txt").write_text("\n".join(h for _, h, _ in EXAMPLES[:4]) + "\n", encoding="utf-8")
    code, out, err = llmlab_inproc("task=translation", "method=none", "model=replay", "model.format=lines",
                                   f"model.path={tmp_path / 'hyp.txt'}", f"task.source_path={tmp_path / 'src.txt'}",
                                   f"task.reference_path={tmp_path / 'ref.txt'}", "task.direction=ende",
                                   f"task.comet_model={fixture_path('comet')}", "logger=none")
    assert code == 0, err
    run = next(outputs.rglob("results.json")).parent
    results = json.loads((run / "results.json").read_text())
    assert results["metrics"]["comet"] == pytest.approx(sum(PACKAGE_SCORES[:4]) / 4, abs=1e-5)
    assert "port of unbabel-comet 2.2.7" in results["info"]["comet"]
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert [r["comet"] for r in rows] == pytest.approx(PACKAGE_SCORES[:4], abs=1e-5)


def test_a_checkpoint_of_another_kind_is_refused(tmp_path):
    import shutil

    model = tmp_path / "kiwi"
    shutil.copytree(fixture_path("comet"), model)
    hparams = yaml.safe_load((model / "hparams.yaml").read_text())
    (model / "hparams.yaml").write_text(yaml.safe_dump({**hparams, "class_identifier": "referenceless_regression_metric"}))
    with pytest.raises(UserError, match="not referenceless or ranking models"):
        comet.load(str(model / "checkpoints" / "model.ckpt"))
    (model / "hparams.yaml").unlink()
    with pytest.raises(UserError, match="hparams.yaml is missing"):
        comet.load(str(Path(model)))
