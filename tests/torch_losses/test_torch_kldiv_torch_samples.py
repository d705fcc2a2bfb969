"""`kldiv.torch.kl_div` on torch's own options against `F.kl_div`, on torch's own test inputs.

The inputs are those of PyTorch's OpInfo ``sample_inputs_kl_div`` (shapes (2,) and (2, 3),
every reduction, ``log_target`` both ways, log-softmax inputs and softmax or log-softmax
targets), its empty tensors, and the bad targets the drop-in must treat as torch does: a NaN
target gives NaN, a negative target gives torch's NaN, and the gradients are torch's (autograd
of ``F.kl_div``) wherever the target is not 0.
"""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from kldiv.torch import KLDivLoss, kl_div

REDUCTIONS = ("none", "mean", "batchmean", "sum")


def _both(input: torch.Tensor, target: torch.Tensor, reduction: str, log_target: bool):  # type: ignore[no-untyped-def]
    """Values and (input, target) gradients of ours and torch's, for the same upstream gradient."""
    results = []
    for function in (kl_div, F.kl_div):
        x = input.detach().clone().requires_grad_()
        t = target.detach().clone().requires_grad_()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # both warn about 'mean'
            value = function(x, t, reduction=reduction, log_target=log_target)
        upstream = torch.linspace(0.5, 1.5, value.numel(), dtype=value.dtype).reshape(value.shape)
        (value * upstream).sum().backward()
        results.append((value.detach(), x.grad, t.grad))
    return results


def _assert_same(ours, theirs) -> None:  # type: ignore[no-untyped-def]
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14, equal_nan=True)


def _samples():  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(0)
    for shape, reduction, log_target in itertools.product(
        ((2,), (2, 3)), REDUCTIONS, (True, False)
    ):
        raw = torch.rand(shape, generator=generator, dtype=torch.float64) * 9  # make_tensor(low=0)
        input = F.log_softmax(raw, -1)
        raw_t = torch.rand(shape, generator=generator, dtype=torch.float64) * 9
        target = F.log_softmax(raw_t, -1) if log_target else F.softmax(raw_t, -1)
        yield pytest.param(
            input, target, reduction, log_target, id=f"{shape}-{reduction}-{log_target}"
        )


@pytest.mark.parametrize(("input", "target", "reduction", "log_target"), list(_samples()))
def test_opinfo_sample_inputs(input, target, reduction: str, log_target: bool) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = _both(input, target, reduction, log_target)
    _assert_same(ours, theirs)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("log_target", [False, True])
def test_empty_tensors(reduction: str, log_target: bool) -> None:
    input, target = torch.zeros(0, 3, dtype=torch.float64), torch.zeros(0, 3, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ours = kl_div(input, target, reduction=reduction, log_target=log_target)
        theirs = F.kl_div(input, target, reduction=reduction, log_target=log_target)
    torch.testing.assert_close(ours, theirs, equal_nan=True)


BAD_TARGETS = {
    "issue-nan": ([[-1.0, -0.5]], [[math.nan, 0.4]]),
    "issue-negative": ([[-1.0, -0.5]], [[-0.5, 1.5]]),
    "nan-in-one-row": ([[-1.0, -0.5], [-0.3, -1.4]], [[0.6, 0.4], [math.nan, 0.5]]),
    "negative-in-one-row": ([[-1.0, -0.5], [-0.3, -1.4]], [[0.6, 0.4], [1.2, -0.2]]),
}


@pytest.mark.parametrize("case", list(BAD_TARGETS))
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_nan_and_negative_targets_are_torchs(case: str, reduction: str, dtype: torch.dtype) -> None:
    input, target = (torch.tensor(a, dtype=dtype) for a in BAD_TARGETS[case])
    ours, theirs = _both(input, target, reduction, log_target=False)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, equal_nan=True)


def test_issue_case_reduction_none() -> None:
    input, target = torch.tensor([[-1.0, -0.5]]), torch.tensor([[math.nan, 0.4]])
    value = kl_div(input, target, reduction="none")
    assert torch.isnan(value[0, 0])
    assert value[0, 1] == pytest.approx(0.4 * (math.log(0.4) + 0.5), rel=1e-6)
    # The module looks at its first batch: these "log-probabilities" do not normalize
    # (e^-1 + e^-0.5 = 0.974), which is what raw logits declared as log_probs look like.
    with pytest.raises(ValueError, match=r"sum to 0\.974\d*, not 1; .*input_kind='logits'"):
        KLDivLoss(reduction="none")(input, target)


@pytest.mark.parametrize("log_target", [False, True])
def test_nan_targets_through_the_chunked_kernel(log_target: bool) -> None:
    # Options torch lacks (labels) route the call through the chunked kernel.
    input = torch.tensor([[-1.0, -0.5], [-0.3, -1.4]], dtype=torch.float64).log_softmax(-1)
    target = torch.tensor([[0.6, 0.4], [math.nan, 0.5]], dtype=torch.float64)
    if log_target:
        target = target.log()
    values = kl_div(input, target, log_target=log_target, labels=torch.tensor([1, 1]),
                    reduction="none")  # fmt: skip
    assert not torch.isnan(values[0])
    assert torch.isnan(values[1])
