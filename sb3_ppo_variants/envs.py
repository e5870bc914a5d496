"""
Small environments for tests and benchmarks.

:class:`CueCorridorEnv` needs both memory and action masks: a T-maze whose goal side is shown only at the first step,
with only some moves legal in each cell. :class:`StrictMaskEnv` raises on any illegal action, so a policy that is played
without its masks fails at once. Registered as ``sb3_ppo_variants/CueCorridor-v0`` and ``sb3_ppo_variants/StrictMask-v0``
when this module is imported.
"""

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class CueCorridorEnv(gym.Env[np.ndarray, np.int64]):
    """
    A corridor of ``length`` cells ending in a junction (a T-maze). The agent starts in cell 0; the goal is up or
    down at the junction, drawn at random each episode and shown **only in the first observation** (so the agent must
    remember it), and only some moves are legal in each cell (so masks matter):

    - in the corridor, ``RIGHT`` (towards the junction) is legal and ``LEFT`` is legal except in cell 0;
      ``UP`` and ``DOWN`` hit a wall;
    - at the junction only ``UP`` and ``DOWN`` are legal; taking one ends the episode, with reward +1 for the goal
      side (``info["is_success"] = True``) and -1 for the other.

    An illegal move leaves the agent in place with reward ``-illegal_penalty`` and ``info["illegal_action"] = True``.
    Episodes are truncated after ``max_steps`` steps (default ``4 * length``). Without memory the best success rate is
    50 %; with masks, an agent never wastes a step on a wall.

    Observation: one-hot of the cell (``length`` values), then the cue: +1 (goal up) or -1 (goal down) at the first
    step, 0 afterwards. Actions: ``Discrete(4)``, ``LEFT, RIGHT, UP, DOWN = 0, 1, 2, 3``. Masks: :meth:`action_masks`.

    :param length: number of cells, junction included (>= 2)
    :param illegal_penalty: reward cost of an illegal move (>= 0)
    :param max_steps: time limit of an episode (``None``: ``4 * length``)
    """

    LEFT, RIGHT, UP, DOWN = 0, 1, 2, 3
    metadata = {"render_modes": []}  # noqa: RUF012 (gymnasium declares it an instance variable)

    def __init__(self, length: int = 6, illegal_penalty: float = 0.1, max_steps: int | None = None) -> None:
        if length < 2:
            raise ValueError(f"length must be >= 2, got {length}")
        if illegal_penalty < 0:
            raise ValueError(f"illegal_penalty must be >= 0, got {illegal_penalty}")
        self.length = length
        self.illegal_penalty = illegal_penalty
        self.max_steps = 4 * length if max_steps is None else max_steps
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(length + 1,), dtype=np.float32)
        self.action_space = spaces.Discrete(4)
        self.position = 0
        self.goal = self.UP
        self.steps = 0

    def _observation(self) -> np.ndarray:
        observation = np.zeros(self.length + 1, dtype=np.float32)
        observation[self.position] = 1.0
        if self.steps == 0:
            observation[-1] = 1.0 if self.goal == self.UP else -1.0
        return observation

    def action_masks(self) -> np.ndarray:
        """Legal moves in the current cell, a bool array of shape (4,)."""
        masks = np.zeros(4, dtype=bool)
        if self.position == self.length - 1:
            masks[[self.UP, self.DOWN]] = True
        else:
            masks[self.RIGHT] = True
            masks[self.LEFT] = self.position > 0
        return masks

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.goal = self.UP if self.np_random.random() < 0.5 else self.DOWN
        self.position = 0
        self.steps = 0
        return self._observation(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = int(action)
        legal = bool(self.action_masks()[action])
        self.steps += 1
        reward, terminated, info = 0.0, False, {"illegal_action": not legal}
        if not legal:
            reward = -self.illegal_penalty
        elif action in (self.UP, self.DOWN):
            terminated = True
            info["is_success"] = action == self.goal
            reward = 1.0 if info["is_success"] else -1.0
        else:
            self.position += 1 if action == self.RIGHT else -1
        truncated = not terminated and self.steps >= self.max_steps
        if truncated:
            info["is_success"] = False
        return self._observation(), reward, terminated, truncated, info


class IllegalActionError(ValueError):
    """An action the env's current masks forbid (:class:`StrictMaskEnv`)."""


class StrictMaskEnv(gym.Env[np.ndarray, np.int64]):
    """
    ``length`` steps; at each step ``n_legal`` of the ``n_actions`` actions are legal, drawn at random, and an illegal
    action raises :class:`IllegalActionError` (a ``ValueError``). Taking legal action ``a`` gives reward
    ``(a + 1) / n_actions``, so the return says which legal actions a policy chose, and every episode of a policy that
    uses the masks lasts ``length`` steps. An untrained policy played without masks takes an illegal action within a
    few steps (each step with probability ``1 - n_legal / n_actions``).

    Observation: the current masks as 0/1 floats. Masks: :meth:`action_masks`. ``render_mode="rgb_array"`` renders the
    masks as a small image (for video recording).

    :param n_actions: size of the ``Discrete`` action space (>= 2)
    :param n_legal: legal actions per step (1 to ``n_actions - 1``)
    :param length: steps per episode (>= 1)
    :param render_mode: ``None`` or ``"rgb_array"``
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}  # noqa: RUF012 (gymnasium declares it an instance variable)

    def __init__(self, n_actions: int = 4, n_legal: int = 2, length: int = 8, render_mode: str | None = None) -> None:
        if n_actions < 2 or not 1 <= n_legal < n_actions:
            raise ValueError(f"need n_actions >= 2 and 1 <= n_legal < n_actions, got n_actions={n_actions}, n_legal={n_legal}")
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.n_actions, self.n_legal, self.length, self.render_mode = n_actions, n_legal, length, render_mode
        self.observation_space = spaces.Box(0.0, 1.0, shape=(n_actions,), dtype=np.float32)
        self.action_space = spaces.Discrete(n_actions)
        self.masks = np.ones(n_actions, dtype=bool)
        self.steps = 0

    def _draw_masks(self) -> np.ndarray:
        self.masks = np.zeros(self.n_actions, dtype=bool)
        self.masks[self.np_random.choice(self.n_actions, self.n_legal, replace=False)] = True
        return self.masks.astype(np.float32)

    def action_masks(self) -> np.ndarray:
        """The legal actions of the current step, a bool array of shape (n_actions,)."""
        return self.masks.copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.steps = 0
        return self._draw_masks(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = int(action)
        if not self.masks[action]:
            legal = np.flatnonzero(self.masks).tolist()
            raise IllegalActionError(f"action {action} is illegal at step {self.steps} (legal: {legal})")
        self.steps += 1
        return self._draw_masks(), (action + 1) / self.n_actions, False, self.steps >= self.length, {}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        # One 16x16 cell per action, white where legal; a 16-pixel multiple suits video encoders.
        return np.repeat(np.repeat(self.masks[None, :, None] * 255, 16, axis=0), 16, axis=1).repeat(3, axis=2).astype(np.uint8)


for _name, _entry_point in (("CueCorridor-v0", "CueCorridorEnv"), ("StrictMask-v0", "StrictMaskEnv")):
    if f"sb3_ppo_variants/{_name}" not in gym.registry:
        gym.register(id=f"sb3_ppo_variants/{_name}", entry_point=f"sb3_ppo_variants.envs:{_entry_point}")
