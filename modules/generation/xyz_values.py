"""Value lists of the X/Y/Z plot axes, written as in A1111: comma-separated (CSV quoting for
values holding commas), integer ranges "1-5", "1-9 (+2)", "10-1 (-3)", counted ranges
"1-10 [4]", the same for decimals ("0.5-2.5 (+0.5)", "1-2 [5]"), or one value per line."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from itertools import permutations
from typing import Any

import numpy as np

_NUM = r"[+-]?\s*\d+"
_DEC = r"[+-]?\s*\d+(?:\.\d*)?"
RANGE_INT = re.compile(rf"\s*({_NUM})\s*-\s*({_NUM})(?:\s*\(\s*([+-]\s*\d+)\s*\))?\s*")
COUNT_INT = re.compile(rf"\s*({_NUM})\s*-\s*({_NUM})\s*\[\s*(\d+)\s*\]\s*")
RANGE_FLOAT = re.compile(rf"\s*({_DEC})\s*-\s*({_DEC})(?:\s*\(\s*([+-]\s*\d+(?:\.\d*)?)\s*\))?\s*")
COUNT_FLOAT = re.compile(rf"\s*({_DEC})\s*-\s*({_DEC})\s*\[\s*(\d+)\s*\]\s*")

MAX_VALUES = 10_000  # a typo like "1-100000000" must not allocate forever


class AxisValueError(ValueError):
    """An axis value that cannot be read; the message names the axis and the value."""


def split_csv(text: str) -> list[str]:
    """A1111's csv_string_to_list_strip: CSV fields over all lines, stripped."""
    rows = csv.reader(io.StringIO(text or ""), skipinitialspace=True)
    return [field.strip() for row in rows for field in row]


def join_csv(values: list[Any]) -> str:
    """The inverse of split_csv (quotes values holding commas)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow([str(v) for v in values])
    return buffer.getvalue().strip()


def split_values(text: str, *, raw_lines: bool = False) -> list[str]:
    """Values of a textbox: one per line with raw_lines (when there are several lines), else CSV."""
    if raw_lines and "\n" in (text or "").strip():
        return [line.strip() for line in text.strip().split("\n")]
    return split_csv(text)


def _num(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _check_count(count: int, label: str, value: str) -> None:
    if count > MAX_VALUES:
        raise AxisValueError(f"{label}: range {value!r} gives {count} values (at most {MAX_VALUES})")


def expand_ints(values: list[str], label: str) -> list[int]:
    out: list[int] = []
    for value in values:
        counted = COUNT_INT.fullmatch(value)
        ranged = RANGE_INT.fullmatch(value)
        if counted is not None:
            start, end, num = int(_num(counted[1])), int(_num(counted[2])), int(counted[3])
            _check_count(num, label, value)
            out += [int(x) for x in np.linspace(start, end, num=num).tolist()]
        elif ranged is not None:
            start, end = int(_num(ranged[1])), int(_num(ranged[2]))
            step = int(_num(ranged[3])) if ranged[3] else (1 if end >= start else -1)
            if step == 0:
                raise AxisValueError(f"{label}: range {value!r} has a step of 0")
            stop = end + (1 if step > 0 else -1)
            _check_count(abs(stop - start) // abs(step), label, value)
            out += list(range(start, stop, step))
        else:
            out.append(_to_int(value, label))
    return out


def expand_floats(values: list[str], label: str) -> list[float]:
    out: list[float] = []
    for value in values:
        counted = COUNT_FLOAT.fullmatch(value)
        ranged = RANGE_FLOAT.fullmatch(value)
        if counted is not None:
            start, end, num = float(_num(counted[1])), float(_num(counted[2])), int(counted[3])
            _check_count(num, label, value)
            out += [float(x) for x in np.linspace(start, end, num=num).tolist()]
        elif ranged is not None:
            start, end = float(_num(ranged[1])), float(_num(ranged[2]))
            step = float(_num(ranged[3])) if ranged[3] else (1.0 if end >= start else -1.0)
            if step == 0:
                raise AxisValueError(f"{label}: range {value!r} has a step of 0")
            _check_count(int((end - start) / step) + 1, label, value)
            # A1111: arange(start, end + step, step); rounding hides float noise like 0.30000000000000004
            out += [round(float(x), 8) for x in np.arange(start, end + step, step).tolist()]
        else:
            out.append(_to_float(value, label))
    return out


def _to_int(value: str, label: str) -> int:
    try:
        return int(value)
    except ValueError:
        try:
            as_float = float(value)
        except ValueError:
            raise AxisValueError(f"{label}: {value!r} is not a whole number") from None
        if not as_float.is_integer():
            raise AxisValueError(f"{label}: {value!r} is not a whole number") from None
        return int(as_float)


def _to_float(value: str, label: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise AxisValueError(f"{label}: {value!r} is not a number") from None


def parse_axis_values(kind: str, values: list[str], label: str) -> list[Any]:
    """`kind`: "int", "float", "str" or "permutations" (Prompt order: every ordering of the values)."""
    converters: dict[str, Callable[[list[str], str], list[Any]]] = {
        "int": expand_ints,
        "float": expand_floats,
        "str": lambda v, _label: list(v),
        "permutations": lambda v, _label: [list(order) for order in permutations(v)],
    }
    if kind not in converters:
        raise ValueError(f"unknown axis value kind {kind!r}")
    if kind == "permutations" and len(values) > 7:
        raise AxisValueError(f"{label}: {len(values)} values give too many orderings (at most 7 values)")
    return converters[kind](values, label)
