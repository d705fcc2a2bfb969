"""PyTorch losses for KL and Jensen–Shannon divergences: drop-in, chunked and fused-linear.

This is the only module of kldiv that imports torch at import time. Q is always the model
being trained (``input``, the student) and P the reference (``target``, the teacher).
"""

from kldiv.torch.fused_linear import FusedLinearJSDLoss, FusedLinearKLDivLoss, TopK
from kldiv.torch.losses import JSDLoss, KLDivLoss, generalized_jsd_loss, js_div, kl_div

__all__ = [
    "FusedLinearJSDLoss",
    "FusedLinearKLDivLoss",
    "JSDLoss",
    "KLDivLoss",
    "TopK",
    "generalized_jsd_loss",
    "js_div",
    "kl_div",
]
