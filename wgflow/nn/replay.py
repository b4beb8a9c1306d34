"""A ring replay buffer of transitions ``(s, a, cost, s', terminated)`` in numpy."""
from __future__ import annotations

import numpy as np

from ..errors import ValidationError

__all__ = ["ReplayBuffer"]


class ReplayBuffer:
    """Fixed-capacity ring buffer; :meth:`sample` draws indices uniformly with a numpy Generator."""

    def __init__(self, capacity: int, state_dim: int, action_dim: int):
        if int(capacity) < 1:
            raise ValidationError(f"replay capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.s = np.zeros((self.capacity, state_dim), np.float32)
        self.a = np.zeros((self.capacity, action_dim), np.float32)
        self.c = np.zeros(self.capacity, np.float32)
        self.s2 = np.zeros((self.capacity, state_dim), np.float32)
        self.term = np.zeros(self.capacity, np.float32)
        self.pos = 0
        self.size = 0

    def add(self, s, a, c, s2, term):
        """Append a batch of transitions (leading axis = copies of the environment)."""
        n = np.asarray(c).reshape(-1).shape[0]
        idx = (self.pos + np.arange(n)) % self.capacity
        self.s[idx] = s
        self.a[idx] = a
        self.c[idx] = np.asarray(c).reshape(-1)
        self.s2[idx] = s2
        self.term[idx] = np.asarray(term, dtype=np.float32).reshape(-1)
        self.pos = int((self.pos + n) % self.capacity)
        self.size = int(min(self.size + n, self.capacity))

    def sample(self, rng: np.random.Generator, batch: int):
        idx = rng.integers(0, self.size, size=int(batch))
        return self.s[idx], self.a[idx], self.c[idx], self.s2[idx], self.term[idx]

    def state_dict(self) -> dict:
        n = self.size
        return {"capacity": self.capacity, "pos": self.pos, "size": n, "s": self.s[:n].copy(),
                "a": self.a[:n].copy(), "c": self.c[:n].copy(), "s2": self.s2[:n].copy(),
                "term": self.term[:n].copy()}

    def load_state_dict(self, d: dict):
        n = int(d["size"])
        if int(d["capacity"]) != self.capacity:
            # a buffer that never wrapped around holds the same transitions in any larger ring
            if not (n < int(d["capacity"]) and int(d["pos"]) == n and n <= self.capacity):
                raise ValidationError(f"checkpoint buffer capacity {d['capacity']} != {self.capacity}")
        for k in ("s", "a", "c", "s2", "term"):
            getattr(self, k)[:n] = d[k]
        self.pos, self.size = int(d["pos"]), n
