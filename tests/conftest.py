"""Shared test settings: deterministic torch, small thread pool."""

import torch

torch.set_num_threads(1)
