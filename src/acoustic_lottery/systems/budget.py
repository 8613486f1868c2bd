"""The DCASE 2021 Task 1a size budget: a system's size is the sum of its members' sizes.

Each distinct model counts once (a multi-task model serving both the scene and the super
member is stored once), so `member_sizes` is keyed by model name. The limit is 128 KB of
non-zero parameters (KB = 1024 bytes); systems that exceed it (Table 1 rows with
two-stage LICs, the teachers) are allowed only when their spec says `over_budget_ok`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from acoustic_lottery.errors import InputError

__all__ = ["BUDGET_KB", "check_budget", "system_size_kb"]

log = logging.getLogger(__name__)

#: DCASE 2021 Task 1a: at most 128 KB of non-zero parameters.
BUDGET_KB = 128.0


def system_size_kb(member_sizes: Mapping[str, float], system_name: str = "system") -> float:
    """Sum of the member models' sizes in KB; InputError on a negative or non-number size."""
    if not member_sizes:
        raise InputError(f"system {system_name!r}: no member sizes given")
    total = 0.0
    for name, kb in member_sizes.items():
        if (
            isinstance(kb, bool)
            or not isinstance(kb, int | float)
            or not math.isfinite(kb)
            or kb < 0
        ):
            raise InputError(
                f"system {system_name!r}: size of member {name!r} must be a finite number of "
                f"KB >= 0, found {kb!r}"
            )
        total += float(kb)
    return total


def check_budget(
    system_name: str,
    member_sizes: Mapping[str, float],
    budget_kb: float = BUDGET_KB,
    over_budget_ok: bool = False,
) -> float:
    """Total size (KB) of a system; over the budget -> InputError unless `over_budget_ok`.

    The error names the system, the budget, the total and every member's size, so the
    offending member is visible at once.
    """
    if isinstance(budget_kb, bool) or not isinstance(budget_kb, int | float) or not budget_kb > 0:
        raise InputError(
            f"system {system_name!r}: budget must be a number of KB > 0, found {budget_kb!r}"
        )
    total = system_size_kb(member_sizes, system_name)
    if total > budget_kb:
        members = ", ".join(f"{name} {kb:.2f} KB" for name, kb in member_sizes.items())
        message = (
            f"system {system_name!r}: {total:.2f} KB exceeds the {budget_kb:g} KB budget "
            f"(members: {members})"
        )
        if not over_budget_ok:
            raise InputError(message + "; set over_budget_ok to report it anyway")
        log.warning("%s (allowed: over_budget_ok)", message)
    return total
