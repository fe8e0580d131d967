"""DAPO's dynamic sampling: a group whose G rewards are all equal has zero advantage and teaches
nothing; it is left out of the step, and further prompts (the next global batch, a round at a time)
are sampled until the step has as many informative groups as it has prompts, or `rollout.max_rounds`
rounds are spent (then it trains on what it kept).

The keep rule is verl's DAPO trainer's: a group stays when the (population) std of its rewards is above
zero, or it has a single sample. All processes decide together from every process's informative groups,
so they run the same rounds and stay in lockstep; when the last round brings more informative groups than
the step needs, the surplus is cut in slot order (as verl cuts its batch): the same choice however many
processes share the batch. A left-out group keeps
its rows (every process runs the same micro-batches) but trains nothing and counts in no normalizer.
Logged: `dynamic/rounds`, `dynamic/prompts_drawn`, `dynamic/groups_kept`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from vaur1.rl.rollout import Rollout


def informative(rewards: list[float], group: int) -> list[bool]:
    """Per group of `group` consecutive rewards: whether it is kept (std > 0, or a single sample)."""
    return [
        bool(np.std(rewards[start : start + group]) > 0 or group == 1)
        for start in range(0, len(rewards), group)
    ]


def _informative_slots(rollouts: list[Rollout]) -> list[int]:
    """The global batch slots of this process's informative groups."""
    slots = []
    for rollout in rollouts:
        if not rollout.filler:
            flags = informative(rollout.rewards.tolist(), rollout.num_generations)
            slots += [slot for slot, flag in zip(rollout.slots, flags, strict=True) if flag]
    return slots


def _keep(rollouts: list[Rollout], chosen: set[int]) -> None:
    """Leave out this process's groups whose slots were not chosen."""
    for rollout in rollouts:
        if not rollout.filler:
            for index, slot in enumerate(rollout.slots):
                if slot not in chosen:
                    rollout.drop_group(index)


def refill(
    session: Any,
    max_rounds: int,
    roll_cycle: Callable[[list], list[Rollout]],
    rollouts: list[Rollout],
    cycles: Iterator[list],
) -> tuple[list[Rollout], dict[str, float]]:
    """The step's rollouts after dynamic sampling (this round's and any further rounds'), and its
    metrics. `roll_cycle` samples and scores one cycle of this process's micro-batches; `cycles` hands
    out the next cycles of the run's data order."""
    target = session.data.global_batch
    kept = drawn = rounds = 0
    result: list[Rollout] = []
    current = rollouts
    while True:
        rounds += 1
        drawn += int(
            session.reduce_sum(
                {"prompts": sum(r.rows // r.num_generations for r in current if not r.filler)}
            )["prompts"]
        )
        # every process's informative groups, the first in slot order up to what the step still needs:
        # the same choice however many processes share the batch
        chosen = set(sorted(session.gather(_informative_slots(current)))[: target - kept])
        _keep(current, chosen)
        kept += len(chosen)
        result += current
        if kept >= target or rounds >= max_rounds:
            break
        following = next(cycles, None)
        if following is None:
            break
        current = roll_cycle(following)
    return result, {"dynamic/rounds": rounds, "dynamic/prompts_drawn": drawn, "dynamic/groups_kept": kept}
