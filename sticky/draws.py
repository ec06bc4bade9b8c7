"""The engine's random draws: one seeded stream, one draw per fresh choice."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Draws"]


class Draws:
    """The engine's stream of uniform draws in [0, 1), from its seeded generator.

    Each fresh choice uses one draw: ``take()``, the next one, consumed (O(1); while
    nothing is looked ahead it is the generator's own ``random``, so the in-process
    stores' fresh choices pay no extra call). A store that chooses outside Python looks
    ahead (:meth:`peek`) and consumes only the draws its choices used
    (:meth:`consume`), so one seed gives one sequence of choices whatever the store.
    """

    __slots__ = ("_ahead", "_random", "take")

    def __init__(self, rng: random.Random) -> None:
        self._random = rng.random
        self._ahead: list[float] = []
        self.take: Callable[[], float] = self._random

    def _take_ahead(self) -> float:
        ahead = self._ahead
        value = ahead.pop(0)
        if not ahead:
            self.take = self._random
        return value

    def peek(self, k: int) -> list[float]:
        """The next ``k`` draws, not consumed. O(k)."""
        ahead = self._ahead
        while len(ahead) < k:
            ahead.append(self._random())
        if ahead:
            self.take = self._take_ahead
        return ahead[:k]

    def put_back(self, value: float) -> None:
        """Undo a :meth:`take` whose draw was not used (a refused select). O(1) amortised."""
        self._ahead.insert(0, value)
        self.take = self._take_ahead

    def consume(self, k: int) -> None:
        """Consume the next ``k`` draws. O(k)."""
        ahead = self._ahead
        del ahead[:k]
        if not ahead:
            self.take = self._random
