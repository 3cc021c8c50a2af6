"""unbabel-comet's own scores of the small COMET checkpoint (llmlab/fixtures/comet.py), for tests/test_comet.py.

unbabel-comet 2.2.7 pins transformers < 5 and numpy < 2, so it runs in an environment of its own:

    python3.11 -m venv /tmp/cometenv && /tmp/cometenv/bin/pip install torch==2.13.0 unbabel-comet==2.2.7 \
        "setuptools<70"   # torchmetrics 0.10 imports pkg_resources
    /tmp/cometenv/bin/python scripts/comet_reference.py

It writes the checkpoint with this repository's generator, loads it with `comet.load_from_checkpoint` and prints
the segment scores and the system score of the fixture's EXAMPLES as JSON, for the default settings and for the
sparsemax / no-layer-norm variant (the numbers in tests/test_comet.py)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def main() -> None:
    import importlib.util
    from importlib.metadata import version

    import comet

    # the fixture module by its file: llmlab itself is not installed in this environment
    spec = importlib.util.spec_from_file_location("fixture_comet", Path(__file__).resolve().parents[1] / "llmlab" /
                                                  "fixtures" / "comet.py")
    fixture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixture)
    out = {"unbabel_comet": version("unbabel-comet")}
    for name, hparams in (("default", {}), ("sparse", fixture.SPARSE)):
        with tempfile.TemporaryDirectory() as d:
            fixture.write(Path(d), **hparams)
            os.chdir(d)   # the checkpoint names its encoder directory relative to itself ("encoder")
            model = comet.load_from_checkpoint(str(Path(d) / "checkpoints" / "model.ckpt"), local_files_only=True)
            pred = model.predict([{"src": s, "mt": h, "ref": r} for s, h, r in fixture.EXAMPLES], batch_size=2,
                                 gpus=0, progress_bar=False)
            out[name] = {"scores": [round(x, 7) for x in pred.scores], "system_score": round(pred.system_score, 7)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
