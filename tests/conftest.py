"""Tests run on CPU with one torch thread per process: deterministic, and two xdist workers fit two cores."""

import torch as th

th.set_num_threads(1)
