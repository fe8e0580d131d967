"""A deterministic, resumable order over a dataset's sample indices.

Every epoch is a permutation drawn from (seed, epoch) alone, so it does not depend on the global
RNG, on how many processes run, or on where a previous run stopped. The position inside the current
epoch is the only state; it goes into every checkpoint.

    order = DataOrder(len(dataset), seed=cfg.seed)
    indices = order.next_indices(global_batch)            # the same list on every process
    mine = indices[rank::world_size]

A batch that runs past the end of an epoch continues with the next epoch's permutation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vaur1.errors import ConfigError


class DataOrder:
    def __init__(self, num_samples: int, seed: int, shuffle: bool = True) -> None:
        if num_samples < 1:
            raise ConfigError("the training set is empty: there is nothing to order")
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.position = 0

    def permutation(self, epoch: int) -> list[int]:
        """The sample order of `epoch`: a function of (seed, epoch) only."""
        if not self.shuffle:
            return list(range(self.num_samples))
        rng = np.random.default_rng([self.seed, epoch])
        return rng.permutation(self.num_samples).tolist()

    def next_indices(self, count: int) -> list[int]:
        """The next `count` sample indices, advancing the position (and the epoch when one ends)."""
        if count < 1:
            raise ValueError(f"count must be positive, got {count}")
        indices: list[int] = []
        while len(indices) < count:
            order = self.permutation(self.epoch)
            take = min(count - len(indices), self.num_samples - self.position)
            indices.extend(order[self.position : self.position + take])
            self.position += take
            if self.position == self.num_samples:
                self.epoch += 1
                self.position = 0
        return indices

    @property
    def samples_seen(self) -> int:
        return self.epoch * self.num_samples + self.position

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_samples": self.num_samples,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "epoch": self.epoch,
            "position": self.position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the position; refuse if the data set or the seed changed since it was saved."""
        saved = (state["num_samples"], state["seed"], state["shuffle"])
        if saved != (self.num_samples, self.seed, self.shuffle):
            raise ConfigError(
                "the checkpoint's data order does not match this run: saved with "
                f"{state['num_samples']} samples, seed {state['seed']}, shuffle {state['shuffle']}; now "
                f"{self.num_samples} samples, seed {self.seed}, shuffle {self.shuffle}. Resuming would "
                "not continue the same run (use resume=never and a new output_dir to start over)"
            )
        if not 0 <= state["position"] < self.num_samples or state["epoch"] < 0:
            raise ConfigError(f"the checkpoint's data position is invalid: {state}")
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
