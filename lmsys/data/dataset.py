"""`Dataset`: what every array loader returns (numpy arrays per split)."""

from __future__ import annotations

import dataclasses

import numpy as np

from lmsys.config import ConfigError


@dataclasses.dataclass
class Dataset:
  """Arrays per split: splits[split] = {'x': float32 [N, D], 'y': int32 [N]}."""
  name: str
  splits: dict[str, dict[str, np.ndarray]]
  num_classes: int
  info: dict = dataclasses.field(default_factory=dict)

  def __getitem__(self, split):
    if split not in self.splits:
      raise ConfigError(f"dataset {self.name!r} has no split {split!r} (has: {', '.join(self.splits)})")
    return self.splits[split]
