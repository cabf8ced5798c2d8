"""One bad submission harms no one else: a group whose decision fails is decided again in parts.

A group is tried whole first: when nothing fails (the usual case) this costs nothing more. When
its transaction fails for a reason that lies in the data (a value a database refuses, a bug a
particular submission triggers), the group is halved and each half tried in turn, recursively,
so every submission that can be decided is, in its own order; a single submission that still
fails is stored as rejected with the reason `unprocessable` (gateway/bounds.py).

A failure of the database itself (connection lost, database locked, disk) is not split: every
submission of the group gets the error, as before, and its sender retries. When even the
refusal of a single submission cannot be stored, the failure is taken for one of that kind:
the submissions not decided by then get the error too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from gateway.model import Submission, Verdict

log = logging.getLogger(__name__)

Outcome = Verdict | Exception


class Partial(list[Outcome]):
    """Outcomes of a group some of whose submissions got an error instead of a verdict."""


def systemic(exc: BaseException) -> bool:
    """Whether a failure lies with the database (or the machine), not with a submission."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError | MemoryError)


class _Abort(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


async def decide_apart(
    subs: Sequence[Submission],
    attempt: Callable[[list[Submission]], Awaitable[list[Verdict]]],
    refuse: Callable[[Submission], Awaitable[Verdict]],
) -> list[Outcome]:
    """`attempt(subs)`, or when that fails, its parts: one outcome per submission, in order.

    `attempt` decides and commits a list in one transaction; `refuse` stores one submission as
    `unprocessable` in a transaction of its own. Raises what `attempt` raised when the failure
    is systemic; returns a `Partial` when it proved so only part of the way."""
    whole = list(subs)
    try:
        return list(await attempt(whole))
    except Exception as exc:
        if systemic(exc) or not whole:
            raise
        failure = exc
    log.warning(
        "intake group of %d failed (%s: %s); deciding it in parts",
        len(whole),
        type(failure).__name__,
        failure,
    )
    out: list[Outcome | None] = [None] * len(whole)

    async def single(i: int, exc: Exception) -> None:
        log.error("submission %d of a group could not be decided; refused as unprocessable", i, exc_info=exc)
        try:
            out[i] = await refuse(whole[i])
        except Exception as again:
            raise _Abort(exc) from again

    async def part(lo: int, hi: int, exc: Exception) -> None:
        if hi - lo == 1:
            await single(lo, exc)
            return
        mid = (lo + hi) // 2
        for a, b in ((lo, mid), (mid, hi)):
            try:
                out[a:b] = await attempt(whole[a:b])
            except Exception as half_failure:
                if systemic(half_failure):
                    raise _Abort(half_failure) from None
                await part(a, b, half_failure)

    try:
        await part(0, len(whole), failure)
    except _Abort as abort:
        log.error("intake group of %d failed for the database itself: %s", len(whole), abort.cause)
        return Partial(abort.cause if v is None else v for v in out)
    return [v for v in out if v is not None]
