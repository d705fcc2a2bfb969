"""Drop-in parity of kldiv.torch.KLDivLoss / kl_div with torch.nn.KLDivLoss / F.kl_div."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from kldiv.torch import KLDivLoss, kl_div

REDUCTIONS = ("none", "sum", "mean", "batchmean")
SHAPES = ((13,), (6, 11), (3, 4, 17), (41, 401, 1271))
# bfloat16 keeps 8 bits of mantissa; both libraries round inputs the same way, but torch sums
# in bfloat16 where kldiv sums in float32, so sums differ by a few bfloat16 ulps.
TOLERANCES = {
    torch.float64: {"rtol": 1e-12, "atol": 1e-14},
    torch.float32: {"rtol": 1e-6, "atol": 1e-7},
    torch.bfloat16: {"rtol": 2e-2, "atol": 2e-2},
}


def _inputs(
    shape: tuple[int, ...], dtype: torch.dtype, *, log_target: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(sum(shape))
    log_q = torch.randn(shape, generator=generator, dtype=torch.float64).log_softmax(-1)
    log_p = torch.randn(shape, generator=generator, dtype=torch.float64).log_softmax(-1)
    target = log_p if log_target else log_p.exp()
    return log_q.to(dtype).requires_grad_(), target.to(dtype).requires_grad_()


def _torch_kl_div(
    input: torch.Tensor, target: torch.Tensor, reduction: str, log_target: bool
) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's own 'mean' warning
        return F.kl_div(input, target, reduction=reduction, log_target=log_target)


def _upstream(value: torch.Tensor) -> torch.Tensor:
    # An upstream gradient that is not 1 and differs per element.
    generator = torch.Generator().manual_seed(7)
    return (
        torch.rand(value.shape, generator=generator, dtype=torch.float64).add_(0.5).to(value.dtype)
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("shape", SHAPES[:3])
@pytest.mark.parametrize("dtype", list(TOLERANCES))
def test_module_matches_torch(
    reduction: str, log_target: bool, shape: tuple[int, ...], dtype: torch.dtype
) -> None:
    ours_in, ours_target = _inputs(shape, dtype, log_target=log_target)
    ref_in, ref_target = _inputs(shape, dtype, log_target=log_target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ours = KLDivLoss(reduction=reduction, log_target=log_target)(ours_in, ours_target)
    expected = torch.nn.KLDivLoss(reduction=reduction, log_target=log_target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reference = expected(ref_in, ref_target)
    tolerance = TOLERANCES[dtype]
    assert ours.shape == reference.shape
    assert ours.dtype == reference.dtype
    torch.testing.assert_close(ours, reference, **tolerance)
    upstream = _upstream(reference)
    ours.backward(upstream)
    reference.backward(upstream)
    assert ours_in.grad is not None
    assert ref_in.grad is not None
    torch.testing.assert_close(ours_in.grad, ref_in.grad, **tolerance)
    if dtype != torch.bfloat16:
        # torch's target gradient is NaN only at zero targets, which these inputs do not have.
        assert ours_target.grad is not None
        assert ref_target.grad is not None
        # log p + 1 − log q cancels near zero: compare at the scale of its terms, not its value.
        target_tolerance = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else tolerance
        torch.testing.assert_close(ours_target.grad, ref_target.grad, **target_tolerance)


def test_functional_matches_torch_on_odd_large_shape() -> None:
    # 41 x 401 rows in blocks of 1000 rows: the last block is partial.
    reduction, chunk_size = "batchmean", 1000
    shape = SHAPES[3]
    ours_in, target = _inputs(shape, torch.float32, log_target=False)
    ref_in = ours_in.detach().clone().requires_grad_()
    target = target.detach()
    ours = kl_div(ours_in, target, reduction=reduction, chunk_size=chunk_size)
    reference = _torch_kl_div(ref_in, target, reduction, log_target=False)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=0.0)
    (ours * 3.0).backward()
    (reference * 3.0).backward()
    assert ours_in.grad is not None
    assert ref_in.grad is not None
    torch.testing.assert_close(ours_in.grad, ref_in.grad, rtol=1e-6, atol=1e-9)


def test_mean_keeps_torch_meaning_and_warns() -> None:
    log_q, target = _inputs((4, 5), torch.float64, log_target=False)
    with pytest.warns(UserWarning, match="reduction='mean' divides the total loss by both"):
        ours = kl_div(log_q, target, reduction="mean")
    expected = _torch_kl_div(log_q, target, "sum", log_target=False) / 20
    torch.testing.assert_close(ours, expected)


def test_default_reduction_is_batchmean() -> None:
    log_q, target = _inputs((4, 5), torch.float64, log_target=False)
    expected = _torch_kl_div(log_q, target, "batchmean", log_target=False)
    torch.testing.assert_close(KLDivLoss()(log_q, target), expected)
    torch.testing.assert_close(kl_div(log_q, target), expected)


@pytest.mark.parametrize(
    ("size_average", "reduce", "reduction"),
    [(None, False, "none"), (False, None, "sum"), (True, True, "mean")],
)
def test_legacy_arguments_map_like_torch(
    size_average: bool | None, reduce: bool | None, reduction: str
) -> None:
    log_q, target = _inputs((3, 6), torch.float64, log_target=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = KLDivLoss(size_average, reduce)(log_q, target)
    torch.testing.assert_close(ours, _torch_kl_div(log_q, target, reduction, log_target=False))


@pytest.mark.parametrize(
    ("size_average", "reduce"), [(False, None), (None, False), (True, True), (False, True)]
)
def test_legacy_arguments_warn_as_torch_does(
    size_average: bool | None, reduce: bool | None
) -> None:
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        torch.nn.KLDivLoss(size_average, reduce)
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        KLDivLoss(size_average, reduce)
    assert [(w.category, str(w.message)) for w in ours] == [
        (w.category, str(w.message)) for w in theirs
    ]
    assert ours[0].category is UserWarning  # shown by default, unlike a DeprecationWarning
    assert ours[0].filename == __file__  # attributed to the caller's line


def test_functional_accepts_torch_positional_order() -> None:
    log_q, target = _inputs((3, 6), torch.float64, log_target=False)
    torch.testing.assert_close(
        kl_div(log_q, target, None, None, "sum"), _torch_kl_div(log_q, target, "sum", False)
    )
    log_p = target.log()
    torch.testing.assert_close(
        kl_div(log_q, log_p, None, None, "batchmean", True),
        _torch_kl_div(log_q, log_p, "batchmean", log_target=True),
    )
    with pytest.warns(UserWarning, match="please use reduction='sum' instead"):
        value = kl_div(log_q, target, False)
    torch.testing.assert_close(value, _torch_kl_div(log_q, target, "sum", False))
    with pytest.raises(TypeError):
        kl_div(log_q, target, None, None, "sum", False, "logits")  # type: ignore[misc]


def test_zero_targets_give_finite_target_gradients() -> None:
    log_q = torch.tensor([[-1.0, -0.5, -2.0]], dtype=torch.float64).log_softmax(-1)
    target = torch.tensor([[0.0, 0.25, 0.75]], dtype=torch.float64, requires_grad=True)
    reference_target = target.detach().clone().requires_grad_()
    kl_div(log_q, target, reduction="sum").backward()
    _torch_kl_div(log_q, reference_target, "sum", log_target=False).backward()
    assert target.grad is not None
    assert reference_target.grad is not None
    assert torch.isnan(reference_target.grad[0, 0])  # torch's pitfall
    assert target.grad[0, 0] == 0.0
    # Where the target is positive the gradient is torch's: log p + 1 − log q.
    torch.testing.assert_close(target.grad[0, 1:], reference_target.grad[0, 1:])
