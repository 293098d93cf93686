"""Domains: interval strings such as "(0, 1)" or "[0, oo)" as SymPy intervals and assumptions."""

from __future__ import annotations

import re

import sympy as sp

from .errors import SpecError

_BOUND = r"\s*([+-]?(?:oo|inf|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))\s*"
_INTERVAL = re.compile(r"^\s*([\(\[])" + _BOUND + "," + _BOUND + r"([\)\]])\s*$")

REAL_LINE = sp.Interval(-sp.oo, sp.oo)


def _parse_bound(text: str) -> sp.Expr:
    text = text.strip().replace("inf", "oo")
    if text in ("oo", "+oo"):
        return sp.oo
    if text == "-oo":
        return -sp.oo
    return sp.Rational(text)


def parse_interval(text: str, field: str = "domain") -> sp.Interval:
    """Read an interval written "(a, b)", "[a, b]", "(a, b]" or "[a, b)"; a and b may be +-oo."""
    if not isinstance(text, str):
        raise SpecError(f"{field}: expected an interval string such as \"(0, 1)\", got {type(text).__name__}")
    match = _INTERVAL.match(text)
    if match is None:
        raise SpecError(f"{field}: cannot read interval {text!r}; write it like \"(0, 1)\", \"[0, oo)\" or \"(-oo, oo)\"")
    left, lo, hi, right = match.groups()
    lower, upper = _parse_bound(lo), _parse_bound(hi)
    if lower > upper or (lower == upper and (left == "(" or right == ")")):
        raise SpecError(f"{field}: interval {text!r} is empty")
    if lower == upper:
        raise SpecError(f"{field}: interval {text!r} is a single point; make the name a param with that value instead")
    if (left == "[" and lower.is_infinite) or (right == "]" and upper.is_infinite):
        raise SpecError(f"{field}: interval {text!r} cannot include an infinite end; use ( or )")
    return sp.Interval(lower, upper, left_open=(left == "("), right_open=(right == ")"))


def interval_text(interval: sp.Interval) -> str:
    """Write an interval back in the spec syntax."""
    left = "(" if interval.left_open or interval.start.is_infinite else "["
    right = ")" if interval.right_open or interval.end.is_infinite else "]"
    return f"{left}{interval.start}, {interval.end}{right}"


def assumptions_for(interval: sp.Interval) -> dict[str, bool]:
    """SymPy assumptions implied by a real interval (always real; sign facts when they hold)."""
    facts = {"real": True}
    lo, hi = interval.start, interval.end
    if lo > 0 or (lo == 0 and interval.left_open):
        facts["positive"] = True
    elif lo >= 0:
        facts["nonnegative"] = True
    if hi < 0 or (hi == 0 and interval.right_open):
        facts["negative"] = True
    elif hi <= 0:
        facts["nonpositive"] = True
    return facts
