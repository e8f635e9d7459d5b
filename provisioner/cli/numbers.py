"""The one validator every number flag and ``PROVISION_*`` variable goes through.

A number a user types is checked once, here, before anything runs: it must parse, be finite
(``float("nan")`` passes every range check click does, since each comparison with NaN is
false: ``--consistency-window nan`` turned the window off, issue 20), and lie inside a range
that ``--help`` states. Values that parse but make no sense at one end are refused too:
``--max-rps 1e-300`` means one request per 10^300 seconds, a hang, not a rate.

The error names the flag, and the variable when the value came from one, so a pipeline
whose ``PROVISION_CONSISTENCY_WINDOW`` is wrong is told which line of its settings to fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

if TYPE_CHECKING:
    # Generic in click 8.2+ only: subscripted for the type checker, plain at run time (8.1).
    _ParamType = click.ParamType[Any]
else:
    _ParamType = click.ParamType

__all__ = [
    "MAX_LOCK_TIMEOUT",
    "Duration",
    "Number",
    "Parsed",
    "check_range",
    "parse_duration",
]


def check_range(
    number: float, low: float, high: float, *, low_open: bool = False, unit: str = ""
) -> float:
    """``number`` when finite and in ``[low, high]`` (``(low, high]`` with ``low_open``);
    ValueError otherwise, saying the range."""
    if not math.isfinite(number):
        raise ValueError(f"{number!r} is not a finite number")
    below = number <= low if low_open else number < low
    if below or number > high:
        left = "more than" if low_open else "from"
        raise ValueError(f"{number:g} is out of range: expected {left} {_show(low, unit)} "
                         f"to {_show(high, unit)}")  # fmt: skip
    return number


def _show(value: float, unit: str) -> str:
    return f"{value:g}{unit}"


def _source_hint(param: click.Parameter | None, ctx: click.Context | None) -> str | None:
    """``'--flag' (from VARIABLE)`` when the value came from the environment."""
    if param is None or ctx is None or param.name is None:
        return None
    if ctx.get_parameter_source(param.name) is not ParameterSource.ENVIRONMENT:
        return None
    envvar = getattr(param, "envvar", None)
    name = envvar if isinstance(envvar, str) else None
    flags = "/".join(f"'{opt}'" for opt in getattr(param, "opts", ()))
    return f"{flags} (from {name})" if name else None


def _fail(message: str, param: click.Parameter | None, ctx: click.Context | None) -> None:
    hint = _source_hint(param, ctx)
    if hint is not None:
        raise click.BadParameter(message, ctx=ctx, param=param, param_hint=hint)
    raise click.BadParameter(message, ctx=ctx, param=param)


class Number(_ParamType):
    """A number flag: finite, in ``[low, high]`` (``(low, high]`` with ``low_open``), an
    integer when ``integer``. The range belongs in the option's help text."""

    def __init__(
        self,
        low: float,
        high: float,
        *,
        integer: bool = False,
        low_open: bool = False,
        unit: str = "",
        metavar: str | None = None,
    ) -> None:
        self.low, self.high = low, high
        self.integer = integer
        self.low_open = low_open
        self.unit = unit
        self.name = metavar or ("INTEGER" if integer else "NUMBER")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, bool):
            _fail(f"{value!r} is not a number.", param, ctx)
        try:
            number = self._parse(value)
            check_range(number, self.low, self.high, low_open=self.low_open, unit=self.unit)
        except ValueError as exc:
            _fail(f"{exc}.", param, ctx)
        return int(number) if self.integer else float(number)

    def _parse(self, value: Any) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip()
        # Bounded before int()/float(): a 5,000-digit number is not an input, it is an attack
        # on the parser (int() refuses > 4,300 digits with an unhelpful message).
        if len(text) > 40:
            raise ValueError(f"{text[:20]!r}... is not a number")
        if self.integer:
            if not re.fullmatch(r"[+-]?\d+", text):
                raise ValueError(f"{text!r} is not an integer")
            return float(int(text))
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return self.name


# -- durations (--lock-timeout) ------------------------------------------------------------------

#: The longest wait --lock-timeout accepts (every input is bounded): a day.
MAX_LOCK_TIMEOUT = 24 * 3600.0
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(text: str, *, high: float = MAX_LOCK_TIMEOUT) -> float:
    """Seconds in a duration as Terraform writes them (``0s``, ``30s``, ``5m``, ``1h30m``,
    ``500ms``), or a bare number of seconds, from 0 to ``high``. Raises ValueError."""
    text = text.strip().lower()
    if len(text) > 40:
        raise ValueError(f"{text[:20]!r}... is not a duration")
    try:
        seconds = float(text)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(text):
            if match.start() != pos:
                break
            value, unit = float(match[1]), match[2]
            seconds += value * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
            pos = match.end()
        if pos != len(text) or not text:
            raise ValueError(f"{text!r} is not a duration (e.g. 30s, 5m, 1h30m)") from None
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is not a finite duration")
    if not 0 <= seconds <= high:
        raise ValueError(f"{text!r} is out of range (0s to {high:g}s)")
    return seconds


class Duration(_ParamType):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            value = repr(value)  # a default given as a number is checked like typed text
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            _fail(str(exc), param, ctx)


class Parsed(_ParamType):
    """A flag whose text a parser of the core checks (``N`` or ``LO-HI`` spans, ``xN``
    scales): its ValueError or `ProvisionError` becomes the same usage error as a
    `Number`'s, naming the flag or its variable. The value stays the text."""

    def __init__(self, parse: Callable[[str], object], metavar: str = "TEXT") -> None:
        self._parse = parse
        self.name = metavar

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from provisioner.errors import ProvisionError

        text = str(value)
        try:
            self._parse(text)
        except (ValueError, ProvisionError) as exc:
            message = exc.message if isinstance(exc, ProvisionError) else str(exc)
            _fail(message, param, ctx)
        return text
