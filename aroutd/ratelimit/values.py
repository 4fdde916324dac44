"""The rate limiter's values (SPEC §9): limits in, decisions out, all frozen.

A subject is a string naming what is counted, namespaced like the usage rows
(``key:<hash>``, ``tenant:<id>``, ``wallet:<id>``); the same limits apply to
different subjects with their own figures. A :class:`Step` is one limit of one
subject, checked but not yet committed: how long until it would admit, the state it
leaves if the request is admitted, and its window for the ``X-RateLimit-*`` headers
before and after. A limit is a positive integer, or None for none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

__all__ = ["Admitted", "Decision", "Limits", "Reason", "Refused", "Step", "Subject", "Window"]

Subject = str
Reason = Literal["rpm", "rpd", "tpm"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The rate limits of one subject: requests per minute, per UTC day, tokens per minute."""

    rpm: int | None = None
    rpd: int | None = None
    tpm: int | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "rpd", "tpm"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 1):
                raise ValueError(f"{name} limit must be a positive integer, not {value!r}")


class Window(NamedTuple):
    """What ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (Unix seconds) say (a
    tuple, like :class:`Step`: several are made for every request)."""

    limit: int
    remaining: int
    reset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Admitted:
    """Every limit admitted the request, and it has been counted."""

    window: Window | None  # None: no rpm or rpd limit applies


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """A limit refused the request (429); nothing was counted anywhere."""

    reason: Reason  # of the limit with the longest wait
    subject: Subject  # whose limit that is
    retry_after_s: int  # whole seconds, at least 1: then every limit admits
    window: Window | None


Decision = Admitted | Refused


class Step(NamedTuple):
    """One limit of one subject, checked and not committed (a tuple: it is made for every
    limit of every request, and a frozen dataclass costs several times more to build).

    Its window is kept as numbers, not as :class:`Window` values: only the one window
    shown is built (:func:`~aroutd.ratelimit.nearest.nearest`). ``remaining`` is what it
    admits now, before this request: at least 1 when it admits, 0 when it refuses, so
    after an admission it shows ``remaining - 1``."""

    reason: Reason
    subject: Subject
    wait_ticks: int  # 0: admits now
    state_after: int  # rpm: the TAT; rpd: the day's count; tpm: unused (0)
    limit: int  # X-RateLimit-Limit; 0 for tpm, which has no such headers
    remaining: int  # before this request
    reset_s: int  # X-RateLimit-Reset (Unix seconds) before this request
    reset_after_s: int  # and after it, when admitted
