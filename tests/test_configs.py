"""Every config file composes, and every method and task instantiates."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parent.parent / "conf"


def _choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _compose(overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("group", ["model", "method", "task", "logger", "scale"])
def test_every_choice_composes(group):
    for name in _choices(group):
        cfg = _compose([f"{group}={name}"])
        OmegaConf.to_container(cfg, resolve=False)
        if group in ("method", "task"):
            obj = instantiate(cfg[group], _convert_="all")
            assert type(obj).__name__ != "dict", f"{group}/{name} has no _target_"


@pytest.mark.parametrize("name", _choices("experiment"))
def test_every_experiment_composes_with_a_table_spec(name):
    cfg = _compose([f"experiment={name}"])
    assert cfg.experiment_name, f"experiment {name} sets no experiment_name"
    assert "table" in cfg and cfg.table.rows and cfg.table.columns
    assert cfg.hydra.sweeper.params, f"experiment {name} has no sweep"


def test_every_config_file_has_a_description():
    from llmlab.cli import describe

    for path in CONF.rglob("*.yaml"):
        if path.parent.name in ("launcher",) or path.name == "config.yaml":
            continue
        assert describe(path), f"{path} has no one-line description comment"


@pytest.mark.parametrize("stem", sorted(p.stem for p in (CONF / "experiment_scale").glob("*.yaml")))
def test_every_experiment_scale_composes_with_its_experiment(stem):
    experiment, scale = stem.rsplit("-", 1)
    assert (CONF / "experiment" / f"{experiment}.yaml").is_file(), f"{stem}: no experiment {experiment}"
    assert (CONF / "scale" / f"{scale}.yaml").is_file(), f"{stem}: no scale {scale}"
    cfg = _compose([f"experiment={experiment}", f"scale={scale}"])
    OmegaConf.to_container(cfg, resolve=False)
    for key, values in cfg.hydra.sweeper.params.items():  # every swept group choice exists
        group = key.split("@")[0]
        if (CONF / group).is_dir():
            for value in str(values).split(","):
                assert (CONF / group / f"{value.strip()}.yaml").is_file(), f"{stem}: {key}={value} has no config"
