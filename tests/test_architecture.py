"""The house rules that code review would otherwise have to catch: the import picture (no cycles,
no upward imports, tasks never import a method family), capabilities read from the configs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from llmlab import capabilities as caps

ROOT = Path(__file__).resolve().parent.parent


def _picture():
    spec = importlib.util.spec_from_file_location("import_picture", ROOT / "scripts" / "import_picture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_imports_flow_one_way():
    pic = _picture()
    graph = pic.edges()
    assert pic.cycles(graph) == []
    assert pic.violations(graph) == []
    assert any(dst.startswith("llmlab.capabilities") for dst in graph["llmlab.tasks.editing"])


def test_a_task_importing_a_method_family_is_caught(tmp_path, monkeypatch):
    """The check itself can fail: a forbidden edge is reported."""
    pic = _picture()
    graph = {"llmlab.tasks.x": {"llmlab.methods.kv.base"}, "llmlab.methods.kv.base": set()}
    assert pic.violations(graph) == ["forbidden: llmlab.tasks.x imports llmlab.methods.kv.base"]
    assert pic.cycles({"llmlab.a": {"llmlab.b"}, "llmlab.b": {"llmlab.a"}}) == [["llmlab.a", "llmlab.b"]]


def test_methods_with_a_capability_come_from_the_configs():
    editing = caps.methods_with(caps.Editing)
    assert {"ft", "ft_m", "rome", "memit", "ike", "xkde", "xkde_it", "reason_ke"} <= set(editing)
    assert "dynamickv" not in editing and "none" not in editing
    assert set(caps.methods_with(caps.KVCompression)) >= {"fullkv", "streamingllm", "h2o", "snapkv", "pyramidkv",
                                                         "dynamickv"}
    assert caps.methods_with(caps.OwnAnswering) == ["reason_ke"]


@pytest.mark.parametrize("method,task,needle", [
    ("rome", "longbench", "task longbench cannot use rome's knowledge editing"),
    ("snapkv", "bizsre", "task bizsre needs a method with knowledge editing; snapkv is a method for KV-cache"),
    ("reason_ke", "bizsre", "task bizsre cannot use reason_ke's an answering protocol of its own"),
    ("snapkv", "perplexity", "task perplexity cannot use snapkv's KV-cache compression"),
])
def test_incompatible_pairs_are_refused_with_the_listing(method, task, needle):
    from hydra.utils import get_class

    method_cls = caps.method_classes()[method]
    import yaml

    task_cls = get_class(yaml.safe_load((ROOT / "conf" / "task" / f"{task}.yaml").read_text())["_target_"])
    with pytest.raises(caps.CapabilityError) as err:
        caps.check_compatible(method_cls(), task, task_cls.honours, task_cls.requires, task_cls.reference_ok)
    assert needle in str(err.value)
