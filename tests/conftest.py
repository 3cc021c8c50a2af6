"""Test settings: offline, no W&B by default, outputs in a temporary directory."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
LLMLAB = [sys.executable, "-m", "llmlab.cli"]


def run_llmlab(args: list[str], outputs: Path, env: dict | None = None, check: bool = True, timeout: int = 300):
    """Run the `llmlab` CLI in a subprocess with its outputs under `outputs`."""
    full_env = dict(os.environ, LLMLAB_OUTPUTS=str(outputs), **(env or {}))
    proc = subprocess.run(LLMLAB + args, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"llmlab {' '.join(args)} exited {proc.returncode}\nSTDOUT:\n{proc.stdout[-3000:]}\n"
                             f"STDERR:\n{proc.stderr[-5000:]}")
    return proc


def results_under(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(root).rglob("results.json"))]


@pytest.fixture
def outputs(tmp_path) -> Path:
    path = tmp_path / "outputs"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def tiny_lm():
    from llmlab.models import load

    return load({"name": "tiny-llama", "source": "tiny", "arch": "llama", "chat": True})


@pytest.fixture
def llmlab_inproc(outputs, monkeypatch, capsys):
    """`llmlab run <args>` in this process (no fresh interpreter importing torch again):
    returns (exit status, stdout, stderr)."""
    from llmlab import cli

    monkeypatch.setenv("LLMLAB_OUTPUTS", str(outputs))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)

    def call(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = cli.run(list(args))
        finally:  # Hydra's job logging adds handlers (job.log) to the root logger: undo
            for handler in root.handlers[:]:
                if handler not in saved[0]:
                    root.removeHandler(handler)
                    handler.close()
            root.setLevel(saved[1])
        out = capsys.readouterr()
        return code, out.out, out.err

    return call
