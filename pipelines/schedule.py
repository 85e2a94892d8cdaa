"""Cron schedules for recurring runs, checked before they reach Kubeflow Pipelines.

KFP's scheduler reads six fields with seconds first (``sec min hour day-of-month month
day-of-week``), so the common five-field form means something else there: ``0 10 * * *`` is
"every hour at minute 10", not "daily at 10:00". :func:`check_cron` rejects five fields with the
six-field equivalent in the message, and checks every field's range.
"""

from __future__ import annotations

import re

from synk8s.errors import UsageError

# name, lowest, highest, accepts "?", symbolic names (index = value)
_FIELDS = (
    ("second", 0, 59, False, ()),
    ("minute", 0, 59, False, ()),
    ("hour", 0, 23, False, ()),
    ("day of month", 1, 31, True, ()),
    ("month", 1, 12, False, ("", "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day of week", 0, 6, True, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)
_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
_EXAMPLE = "e.g. '0 0 3 * * *' for daily at 03:00"


def _value(text: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text and text.upper() in names:
        return names.index(text.upper())
    if not text.isdigit():
        raise ValueError(text)
    value = int(text)
    if not low <= value <= high:
        raise ValueError(text)
    return value


def _check_field(text: str, low: int, high: int, question: bool, names: tuple[str, ...]) -> bool:
    if text == "?" and question:
        return True
    for part in text.split(","):
        span, slash, step = part.partition("/")
        if slash and (not step.isdigit() or int(step) < 1):
            return False
        try:
            if span != "*":
                first, dash, last = span.partition("-")
                if dash and _value(first, low, high, names) > _value(last, low, high, names):
                    return False
                if not dash:
                    _value(first, low, high, names)
        except ValueError:
            return False
    return True


def check_cron(text: str) -> str:
    """Return ``text`` stripped if KFP's scheduler accepts it; else raise a one-line UsageError.

    Accepts six fields (``sec min hour dom month dow``; ``*``, ``?``, lists, ranges, steps,
    ``JAN``-``DEC``, ``SUN``-``SAT``), the descriptors ``@hourly`` ... ``@yearly`` and
    ``@every <duration>`` (Go duration, e.g. ``@every 6h``).
    """
    cron = " ".join(text.split())
    if cron in _DESCRIPTORS:
        return cron
    if cron.startswith("@every"):
        if _DURATION.match(cron.removeprefix("@every").strip()):
            return cron
        raise UsageError(f"bad schedule {text!r}: write @every with a duration such as '@every 6h' or '@every 90m'")
    fields = cron.split(" ")
    if len(fields) == 5:
        raise UsageError(
            f"bad schedule {text!r}: Kubeflow Pipelines reads six cron fields with seconds first; "
            f"for this five-field schedule write '0 {cron}'"
        )
    if len(fields) != 6:
        raise UsageError(f"bad schedule {text!r}: need six cron fields (sec min hour dom month dow), {_EXAMPLE}")
    for value, (name, low, high, question, names) in zip(fields, _FIELDS):
        if not _check_field(value, low, high, question, names):
            raise UsageError(f"bad schedule {text!r}: {name} field {value!r} is not in {low}-{high}; {_EXAMPLE}")
    return cron
