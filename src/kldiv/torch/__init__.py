"""PyTorch losses for KL and Jensen–Shannon divergences: drop-in, chunked, fused-linear, RL penalty.

This is the only module of kldiv that imports torch at import time. Q is always the model
being trained (``input``, the student) and P the reference (``target``, the teacher).
"""

try:
    import torch as _torch  # noqa: F401
except ModuleNotFoundError as _error:
    if _error.name != "torch":
        raise
    raise ModuleNotFoundError(
        "kldiv.torch needs PyTorch, which is not installed: pip install 'kldiv[torch]' "
        "(or install torch for your platform from https://pytorch.org)",
        name="torch",
    ) from None

from kldiv.torch.fused_linear import FusedLinearJSDLoss, FusedLinearKLDivLoss, TopK
from kldiv.torch.losses import JSDLoss, KLDivLoss, generalized_jsd_loss, js_div, kl_div
from kldiv.torch.penalty import kl_penalty

__all__ = [
    "FusedLinearJSDLoss",
    "FusedLinearKLDivLoss",
    "JSDLoss",
    "KLDivLoss",
    "TopK",
    "generalized_jsd_loss",
    "js_div",
    "kl_div",
    "kl_penalty",
]
