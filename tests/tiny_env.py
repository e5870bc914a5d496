"""
A tiny env of the tests' own, registered on import as ``TinyCorridor-v0``: used as ``--gym-packages tiny_env`` or
``--envs tiny_env:TinyCorridor-v0`` (the tests folder is on the path of pytest and of the workers it starts).
"""

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class TinyCorridor(gym.Env):
    """
    Walk right along a corridor of ``length`` cells (actions: 0 left, 1 right); reward +1 at the end, −0.01 per step;
    episodes end at the end or after ``3 * length`` steps.

    :param length: number of cells (an env kwarg: ``--env-kwargs length:4``)
    """

    def __init__(self, length: int = 6) -> None:
        self.length = length
        self.observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.position = self.steps = 0

    def _observation(self) -> np.ndarray:
        return np.array([self.position / (self.length - 1)], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.position = self.steps = 0
        return self._observation(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.position = int(np.clip(self.position + (1 if action == 1 else -1), 0, self.length - 1))
        self.steps += 1
        done = self.position == self.length - 1
        return self._observation(), 1.0 if done else -0.01, done, self.steps >= 3 * self.length, {}


if "TinyCorridor-v0" not in gym.envs.registry:
    gym.register("TinyCorridor-v0", entry_point=TinyCorridor)
