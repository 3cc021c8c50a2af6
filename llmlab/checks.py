"""Config checks that turn a bad value into one clear paragraph (a UserError) before any work:
the run settings, and each method/task field against its dataclass type."""

from __future__ import annotations

import collections.abc
import dataclasses
import re
import types
import typing

from omegaconf import DictConfig, OmegaConf

from llmlab.errors import UserError


DEVICES = re.compile(r"^(cpu|auto|mps|cuda(:\d+)?)$")


def resolve(cfg: DictConfig) -> dict:
    """The resolved config as a plain dict; interpolation and missing-value errors as UserError."""
    from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue, OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as err:
        key = getattr(err, "full_key", None) or "?"
        raise UserError(f"{key} has no value (it is ??? in its config file); set it on the command line, "
                        f"e.g. {key}=<value>.") from err
    except InterpolationResolutionError as err:
        key = getattr(err, "full_key", None) or "?"
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{key}: its value could not be resolved ({first}). Fix the ${{...}} reference in the "
                        f"override or config file (e.g. ${{oc.env:VAR,default}} for an environment variable).") from err
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise UserError(f"{key}: {str(err).splitlines()[0]}") from err


def check_run_settings(config: dict) -> None:
    """Run settings (seed, limit, device, dtype, rerun, threads): right type and value, or UserError."""
    def bad(key: str, want: str, example: str) -> UserError:
        return UserError(f"{key}={config.get(key)!r} is not valid: {key} must be {want}. Set e.g. {key}={example}.")

    seed = config.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise bad("seed", "an integer", "0")
    limit = config.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise bad("limit", "a positive integer (examples per task) or null (all)", "100")
    if not isinstance(config.get("rerun", False), bool):
        raise bad("rerun", "true or false", "true")
    threads = config.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise bad("threads", "a positive integer (torch threads per job) or null (auto: cores / parallel jobs)", "4")
    device = config.get("device", "cpu")
    if not isinstance(device, str) or not DEVICES.match(device):
        raise bad("device", "one of cpu, cuda, cuda:<index>, mps, auto", "cpu")
    from llmlab.models import DTYPES

    dtype = config.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise bad("dtype", f"one of {', '.join(DTYPES)}", "float32")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"device={device} but torch sees no CUDA GPU here (torch {torch.__version__}, "
                            f"CUDA build: {torch.version.cuda or 'no'}). Use device=cpu, or device=auto to take a "
                            f"GPU only when there is one.")


def build(node: DictConfig, group: str, choices: dict | None = None):
    """instantiate() a method/task config after checking its keys and value types against the dataclass."""
    from hydra.errors import InstantiationException
    from hydra.utils import get_class, instantiate

    values = OmegaConf.to_container(node, resolve=True)
    target = values.get("_target_")
    name = (choices or {}).get(group) or target
    if not target:
        raise UserError(f"{group} config {name!r} has no _target_ naming its class (conf/{group}/<name>.yaml).")
    try:
        cls = get_class(target)
    except Exception as err:
        raise UserError(f"{group}._target_={target} cannot be imported ({err.__cause__ or err}). "
                        f"Check the class path in conf/{group}/{name}.yaml.") from err
    check_fields(cls, values, group, name)
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as err:  # an error raised in __post_init__ keeps its own type and message
        if isinstance(err.__cause__, Exception):
            raise err.__cause__ from None
        raise


def check_fields(cls, values: dict, group: str, name: str | None = None) -> None:
    """Every key of `values` is a field of dataclass `cls`, of the field's annotated type; else UserError."""
    if not dataclasses.is_dataclass(cls):
        return
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation we cannot evaluate: check names only
        hints = {}
    where = f"conf/{group}/{name}.yaml" if name and "." not in str(name) else cls.__name__
    for key, value in values.items():
        if key.startswith("_"):
            continue
        if key not in fields:
            raise UserError(f"{group}.{key}: {cls.__name__} ({where}) has no field {key!r}. Its fields: "
                            f"{', '.join(fields) or '(none)'}.")
        tp = hints.get(key)
        if tp is not None and not _matches(value, tp):
            default = fields[key].default
            shown = "" if default is dataclasses.MISSING else f" (default {_show(default)})"
            raise UserError(f"{group}.{key}={_show(value)} is not valid: {cls.__name__}.{key} expects "
                            f"{_describe(tp)}{shown}. Set e.g. {group}.{key}={_example(tp, default)}.")


def _matches(value, tp) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is typing.Any or isinstance(tp, typing.TypeVar):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is typing.Literal:
        return value in args
    if tp in (list, tuple) or origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        item = args[0] if args and (origin is not tuple or (len(args) == 2 and args[1] is Ellipsis)) else None
        return item is None or all(_matches(v, item) for v in value)
    if tp is dict or origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            return False
        return len(args) != 2 or all(_matches(v, args[1]) for v in value.values())
    return True  # a type we do not judge


def _describe(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(_show(a) for a in args)
    if tp in (list, tuple) or origin in (list, tuple, collections.abc.Sequence):
        return f"a list of {_plural(args[0])}" if args else "a list"
    if tp is dict or origin in (dict, collections.abc.Mapping):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _plural(tp) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(tp, _describe(tp))


def _show(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) else str(value)


def _example(tp, default) -> str:
    if default is not dataclasses.MISSING and default is not None and _matches(default, tp):
        return _show(default).strip("'")
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        tp = next((a for a in args if a is not type(None)), tp)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return str(args[0])
    if tp in (list, tuple) or origin in (list, tuple):
        return "[1,2]" if args and args[0] in (int, float) else "[a,b]"
    return {int: "1", float: "0.5", str: "text", bool: "true"}.get(tp, "<value>")


# -- threads -----------------------------------------------------------------------------------
