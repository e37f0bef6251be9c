"""Checks of the constructor arguments every family shares: each names the argument, the value and what is allowed.

>>> check_num_classes(-1)
Traceback (most recent call last):
...
ValueError: num_classes must be an integer >= 0 (0: no classifier, the model returns features), got -1
"""
from __future__ import annotations

import os
from typing import Any, Optional

__all__ = ["check_bool", "check_drop_rate", "check_min_input_size", "check_num_classes", "check_positive_int",
           "physical_memory"]


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an int >= 1, else raise a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is True or False: a string such as "no" would otherwise count as true."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def check_min_input_size(model_name: str, img_size: int, min_size: int, small_input: bool, small_min_size: int,
                         given: str = "") -> None:
    """Refuse a default input side the model's body cannot take (it would refuse its own default input)."""
    if img_size < min_size:
        raise ValueError(
            f"{model_name} takes images of at least {min_size}x{min_size}, got img_size={img_size}{given}"
            + (
                ""
                if small_input
                else f"; build it with small_input=True for images down to {small_min_size}x{small_min_size}"
            )
        )


def check_num_classes(value: Any) -> int:
    """``num_classes`` is an int >= 1, or 0 for no classifier (the model returns its pre-logits features, as in
    timm)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"num_classes must be an integer >= 0 (0: no classifier, the model returns features), got {value!r}"
        )
    return value


def physical_memory() -> Optional[int]:
    """Bytes of RAM on this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_drop_rate(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ValueError(f"drop_rate must be a float in [0, 1), got {value!r}")
    return float(value)
