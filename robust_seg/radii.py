"""Radii written as the papers write them: ``8/255``, ``0.0314``, ``0``, or lists of these.

An evaluation parses its radii once (``parse_radii``) into ``Radius`` pairs: the value the attacks use and the key
(the papers' notation, ``format_radius``) under which the results, reports, tables and W&B name it. The pair
travels together from the config check to the report; nothing parses a key back into a value.
"""
from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any, Iterable, NamedTuple

from robust_seg.errors import ConfigError

_NUMBER = r"\s*[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?\s*"
_RADIUS = re.compile(rf"^({_NUMBER})(?:/({_NUMBER}))?$")


class Radius(NamedTuple):
    """One radius of an evaluation: ``value`` (in [0, 1]) and ``key`` (e.g. ``8/255``: its name in the results)."""

    value: float
    key: str


def parse_radius(value: Any, name: str = "attack.eps") -> float:
    """``'8/255'`` -> 0.03137..., ``0.0314`` -> 0.0314. A negative, infinite or unreadable value raises
    ConfigError, and so does a radius above 1 (the whole [0, 1] range: ``8`` is refused as meaning ``8/255``)."""
    if isinstance(value, bool):
        raise ConfigError(f"{name}: {value!r} is not a radius (write e.g. 8/255 or 0.0314)")
    if isinstance(value, (int, float)):
        radius = float(value)
    elif str(value).strip().lower() in ("inf", "+inf", "infinity", "nan"):
        raise ConfigError(f"{name}: radius {value!r} is not finite (images live in [0, 1]: write e.g. 8/255)")
    else:
        match = _RADIUS.match(str(value))
        if not match:
            raise ConfigError(f"{name}: cannot read {value!r} as a radius (write e.g. 8/255 or 0.0314)")
        numerator, denominator = match.groups()
        if denominator is not None and float(denominator) == 0:
            raise ConfigError(f"{name}: {value!r} divides by zero (write e.g. 8/255)")
        radius = float(numerator) / float(denominator) if denominator is not None else float(numerator)
    if not radius >= 0:
        raise ConfigError(f"{name}: radius {value!r} must be >= 0")
    if not math.isfinite(radius):
        raise ConfigError(f"{name}: radius {value!r} is not finite (images live in [0, 1]: write e.g. 8/255)")
    if radius > 1:
        raise ConfigError(f"{name}: radius {value!r} is larger than 1, the whole image range; "
                          f"{value} looks like {value}/255 (write {name}={value}/255)")
    return radius


SAME_RADIUS = 0.1 / 255
"""Radii closer than this are one radius written twice (e.g. ``0.0314`` and ``8/255``); the papers' grids are
0.25/255 apart at the finest."""


def parse_radii(value: Any, name: str = "attack.eps") -> list[Radius]:
    """A radius or a list of radii (a list written as ``[4/255,8/255]`` on the command line), each as a ``Radius``
    (value, key) pair. A radius listed twice (also as two spellings closer than ``SAME_RADIUS``) is a ``ConfigError``: it would count every image twice."""
    if isinstance(value, str) and value.strip().startswith("["):
        value = [v for v in value.strip()[1:-1].split(",") if v.strip()]
    items: Iterable = value if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") and not isinstance(value, str) else [value]
    items = list(items)
    radii = [parse_radius(item, name) for item in items]
    if not radii:
        raise ConfigError(f"{name}: empty list of radii")
    for i, first in enumerate(radii):
        for j in range(i + 1, len(radii)):
            if abs(radii[j] - first) < SAME_RADIUS:
                written = [str(item).strip() for item in items]
                same = "twice" if radii[j] == first else f"twice ({written[i]} and {written[j]} are the same radius)"
                raise ConfigError(f"{name}: {format_radius(first)} is listed {same}; each image is evaluated once "
                                  "per radius: remove one")
    return [Radius(radius, format_radius(radius)) for radius in radii]


def format_radius(radius: float) -> str:
    """The paper's notation when the radius is k/255 for a simple k (e.g. '8/255', '0.5/255'), else the float."""
    if radius == 0:
        return "0"
    scaled = Fraction(radius * 255).limit_denominator(8)
    if abs(float(scaled) / 255 - radius) < 1e-9:
        numerator = float(scaled)
        text = f"{numerator:g}"
        return f"{text}/255"
    return f"{radius:g}"
