"""Exact match of arithmetic answers, as the calibration-data paper's lib/eval.py scores them, without `eval`.

The release compares `eval(prediction) == eval(label)` and counts any exception as wrong: a number, an
equation ("( 76.0 - 25.0 )", SVAMP's labels), or "1,000" (a Python tuple) all evaluate. `value` evaluates
the same grammar safely (numbers, + - * / // % **, unary signs, parentheses, tuples) and returns None for
anything else, where Python's eval would also fail or would run code."""

from __future__ import annotations

import ast
import operator
import re

from llmlab.metrics.registry import register

register("exact_match_eval", "share of answers whose value equals the gold's, parsed as the calibration-data "
         "paper's lib/eval.py (text before the first blank line, after the last '####'), evaluated as arithmetic "
         "(safe eval), x100", unit="x100")
register("exact_match_lenient", "share of answers whose first number (commas dropped) equals the gold value: "
         "a more forgiving parse than exact_match_eval, not the paper's, x100", unit="x100")
register("answer_nll", "mean negative log-likelihood per token of the gold answer after the few-shot prompt "
         "(teacher-forced), nats", higher_is_better=False, unit="nats/token")

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _eval(node):
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large")
        return _BIN[type(node.op)](left, right)
    if isinstance(node, ast.Tuple):
        return tuple(_eval(e) for e in node.elts)
    raise ValueError(f"not arithmetic: {ast.dump(node)[:40]}")


def value(text: str):
    """The value Python's eval would give `text` when it is plain arithmetic; None otherwise."""
    try:
        return _eval(ast.parse(text.strip(), mode="eval"))
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError, OverflowError, RecursionError):
        return None


def release_answer(output: str) -> str:
    """lib/eval.py: `output.split('\\n\\n')[0].split('####')[-1].strip()`."""
    return output.split("\n\n")[0].split("####")[-1].strip()


def same_value(prediction: str, gold: str) -> bool:
    p, g = value(prediction), value(gold)
    return p is not None and g is not None and p == g


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def first_number(text: str) -> float | None:
    m = _NUMBER.search(text)
    if not m:
        return None
    try:
        return float(m.group().replace(",", ""))
    except ValueError:
        return None
