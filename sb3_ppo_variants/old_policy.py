"""
π_old: the policy that collected a rollout, frozen for the whole update.

The KL penalty needs the *full* old action distribution at every state of a minibatch (pitfall 5 of the paper notes:
taking it from the parameters being optimised makes the KL identically 0). SB3's buffers store only the old
log-probability of the taken action, so π_old is kept as a frozen copy of the policy, refreshed at the start of each
update, and evaluated on each minibatch with the minibatch's own inputs. Whatever the minibatch carries for the policy
(the action masks of MaskablePPO, the stored LSTM states and episode starts of RecurrentPPO) therefore reaches π_old
exactly as it reaches π_θ: no buffer internals, no index bookkeeping, and the same code for every variant.

The copy is made once (``copy.deepcopy``, which draws no random numbers) and refreshed in place, so an update costs one
parameter copy plus one no-grad actor pass per minibatch.
"""

import copy

import torch as th
from stable_baselines3.common.policies import BasePolicy


class OldPolicy:
    """
    A frozen copy of a policy, in evaluation mode (as when it collected the rollout) and without gradients.

    :param policy: the policy to copy; call :meth:`capture` before each update to refresh the copy
    """

    def __init__(self, policy: BasePolicy) -> None:
        # The copy never trains: its optimizer (and the optimizer's state) is not copied, gradients are not tracked.
        # The action distribution object, which SB3 refills in place at every call, is copied shallowly: its last
        # contents (e.g. gSDE's noise, non-leaf tensors that cannot be deep-copied) are never read before a refill.
        memo: dict[int, object] = {id(getattr(policy, "optimizer", None)): None}
        if getattr(policy, "action_dist", None) is not None:
            memo[id(policy.action_dist)] = copy.copy(policy.action_dist)
        self.policy = copy.deepcopy(policy, memo=memo)
        self.policy.requires_grad_(False)
        self.policy.set_training_mode(False)

    def capture(self, policy: BasePolicy) -> "OldPolicy":
        """Make the copy equal to ``policy`` (in place): π_old for the update about to start."""
        with th.no_grad():
            self.policy.load_state_dict(policy.state_dict())
        return self
