"""Workers for the multi-process Redis tests (spawned processes import them by name)."""

from __future__ import annotations

import time
from typing import Any

from sticky import PoolSettings

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


# -- a number's life, at random (the differential tests on one server and on a cluster) ---
_HEALTH: dict[str, Any] = {"min_samples": 4, "health_window": 240.0, "min_delivery_rate": 0.4}
LIFE_SETTINGS = {
    False: PoolSettings(ttl=120.0, skip_unhealthy=True, max_spam_rate=0.3, **_HEALTH),
    True: PoolSettings(
        ttl=120.0,
        skip_unhealthy=True,
        max_spam_rate=0.3,
        daily_new_recipients=40,
        max_wait=3.0,
        **_HEALTH,
    ),
}
"""Settings of a profile whose numbers flip health often; with capacity (True) or not."""
LIFE_NUMBERS = ["+13125550001", "+13125550002", "+18005550003"]
LIFE_TO = [f"+1212555{i:04d}" for i in range(12)]


def life_world(e: Any, settings: Any) -> Any:
    """Profile ``p`` with two long codes (one with its own rate) and a toll-free number."""
    from sticky import NumberType  # noqa: PLC0415

    e.create_profile("p", settings)
    e.add_number("p", LIFE_NUMBERS[0])
    e.add_number("p", LIFE_NUMBERS[1], rate=2.0)
    e.add_number("p", LIFE_NUMBERS[2], NumberType.TOLL_FREE)
    return e


def life_step(e: Any, rng: Any, now: float) -> object:
    """One random operation of a number's life; its outcome, or the error's type."""
    op = rng.randrange(14)
    to = rng.choice(LIFE_TO)
    number = rng.choice(LIFE_NUMBERS)
    try:
        if op <= 2:
            return e.select("p", to, now=now)
        if op == 3:
            picked = rng.sample(LIFE_TO, 5)
            out = e.select_many("p", picked, now=now)
            return list(out), out.opted_out
        if op == 4:
            if rng.random() < 0.5:
                return e.undrain("p", number)
            return e.drain("p", number, grace=rng.choice([None, 0.0, 30.0]), now=now)
        if op == 5 or op >= 11:
            outcome = rng.choice(["delivered", "failed", "failed", "spam"])
            return e.record_delivery(number, outcome, now=now)
        if op == 6:
            e.set_health(number, healthy=rng.random() < 0.7)
            return e.numbers("p")
        if op == 7:
            return e.opt_out("p", to, now=now)
        if op == 8:
            return e.opt_in("p", to)
        if op == 9:
            body = rng.choice([None, "hi", "STOP", " start ", "yes"])
            return e.record_reply("p", to, number, body=body, now=now)
        return e.mapping("p", to, now=now), e.recipients_of("p", number, now=now)
    except Exception as exc:
        return type(exc)
