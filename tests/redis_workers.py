"""Workers for the multi-process Redis tests (spawned processes import them by name)."""

from __future__ import annotations

import time

Action = tuple[str, str, float, float]
Observation = tuple[str, str, str, float, float, int]


def _wait_until(start_at: float) -> None:
    while (left := start_at - time.time()) > 0:
        time.sleep(min(left, 0.01))


def select_worker(
    url: str,
    prefix: str,
    profile: str,
    recipients: list[str],
    rounds: int,
    seed: int,
    start_at: float,
) -> list[Observation]:
    """Select for every recipient, ``rounds`` times in a shuffled order; record each answer."""
    import random  # noqa: PLC0415 - a spawned process imports what it uses

    from sticky import Engine  # noqa: PLC0415
    from sticky.store.redis import RedisStore  # noqa: PLC0415

    rng = random.Random(seed)
    seen: list[Observation] = []
    with Engine(seed=seed, store=RedisStore.from_url(url, prefix=prefix)) as engine:
        _wait_until(start_at)
        for _ in range(rounds):
            order = list(recipients)
            rng.shuffle(order)
            for to in order:
                t0 = time.time()
                sel = engine.select(profile, to)
                seen.append((to, sel.from_number, sel.reason.value, t0, time.time(), seed))
    return seen


def chaos_worker(
    url: str,
    prefix: str,
    profile: str,
    flippable: list[str],
    removable: list[str],
    duration: float,
    start_at: float,
) -> list[Action]:
    """Flip the health of ``flippable`` numbers and remove ``removable`` ones, spread over time."""
    import random  # noqa: PLC0415

    from sticky import Engine  # noqa: PLC0415
    from sticky.store.redis import RedisStore  # noqa: PLC0415

    rng = random.Random(99)
    done: list[Action] = []
    with Engine(store=RedisStore.from_url(url, prefix=prefix)) as engine:
        _wait_until(start_at)
        end = time.time() + duration
        todo = list(removable)
        step = duration / (len(todo) + 1)
        next_removal = time.time() + step
        while time.time() < end:
            number = rng.choice(flippable)
            healthy = rng.random() < 0.5
            t0 = time.time()
            engine.set_health(number, healthy)
            done.append(("healthy" if healthy else "unhealthy", number, t0, time.time()))
            if todo and time.time() >= next_removal:
                number = todo.pop(0)
                t0 = time.time()
                engine.remove_number(profile, number)
                done.append(("removed", number, t0, time.time()))
                next_removal += step
            time.sleep(0.005)
        for number in todo:
            t0 = time.time()
            engine.remove_number(profile, number)
            done.append(("removed", number, t0, time.time()))
    return done


Scheduled = tuple[str, str, str, float]
"""A capacity select's answer: recipient, sender, reason, send_at (or the error's name)."""


def capacity_worker(
    url: str, prefix: str, profile: str, recipients: list[str], seed: int, start_at: float
) -> list[Scheduled]:
    """Select for every recipient in a shuffled order, as fast as it can; record each answer.

    A refusal (PoolExhausted, PoolBusy) is recorded with its retry_at as send_at.
    """
    import random  # noqa: PLC0415

    from sticky import Engine, NoEligibleSender  # noqa: PLC0415
    from sticky.store.redis import RedisStore  # noqa: PLC0415

    rng = random.Random(seed)
    order = list(recipients)
    rng.shuffle(order)
    seen: list[Scheduled] = []
    with Engine(seed=seed, store=RedisStore.from_url(url, prefix=prefix)) as engine:
        _wait_until(start_at)
        for to in order:
            try:
                sel = engine.select(profile, to)
            except NoEligibleSender as exc:
                seen.append((to, "", type(exc).__name__, getattr(exc, "retry_at", 0.0)))
                continue
            seen.append((to, sel.from_number, sel.reason.value, sel.send_at))
    return seen
