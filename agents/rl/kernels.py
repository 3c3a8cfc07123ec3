"""Faster kernels for the same functions, swapped into the Hugging Face models we train.

Why: GPT-2-style models ship ``gelu_new``, the tanh approximation of GELU written as seven
elementwise tensor operations. At the sizes we train on CPU that activation costs about as much as
all the matrix multiplies of a forward and backward (measured with cProfile on the perf model).
``transformers`` documents its ``GELUTanh`` as the same function in one fused PyTorch kernel
(``F.gelu(x, approximate="tanh")``), equal up to float rounding, so the swap changes speed, not the
model: no weight or config changes, and a saved policy loads as before.
"""

from __future__ import annotations

from torch import nn
from transformers.activations import FastGELUActivation, GELUTanh, NewGELUActivation

TANH_GELU_MODULES = (NewGELUActivation, FastGELUActivation)


def fuse_activations(model: nn.Module) -> int:
    """Replace every python-written tanh-GELU module of ``model`` with ``GELUTanh``; returns how many."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) in TANH_GELU_MODULES:
                setattr(parent, name, GELUTanh())
                replaced += 1
    return replaced
