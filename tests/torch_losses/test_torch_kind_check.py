"""A wrong kind on a loss module's first call: log-probabilities that do not normalize raise,
probabilities declared as logits warn; later calls and compiled calls read no values."""

from __future__ import annotations

import re
import warnings

import pytest
import torch

from kldiv.torch import JSDLoss, KLDivLoss, js_div, kl_div


def _logits() -> torch.Tensor:
    return torch.tensor([[2.0, 1.0, -1.0], [0.5, 3.0, 0.0]])


def test_raw_logits_as_log_probs_raise_on_the_first_call() -> None:
    loss = KLDivLoss()
    target = torch.softmax(torch.randn(2, 3), -1)
    expected = float(torch.logsumexp(_logits()[0], -1).exp())
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"input was declared input_kind='log_probs', but the exponentials of row 0 sum to {expected:.6g}"
        )
        + r".*pass input_kind='logits'",
    ):
        loss(_logits(), target)
    # The fix the message suggests gives torch's value of the KL of the softmax.
    fixed = KLDivLoss(input_kind="logits")(_logits(), target)
    reference = torch.nn.functional.kl_div(_logits().log_softmax(-1), target, reduction="batchmean")
    torch.testing.assert_close(fixed, reference)


def test_target_log_probs_are_checked_and_masked_rows_are_not() -> None:
    log_q = torch.randn(2, 3).log_softmax(-1)
    with pytest.raises(ValueError, match=r"target was declared target_kind='log_probs'.* row 1 "):
        KLDivLoss(log_target=True)(log_q, torch.cat([log_q[:1], _logits()[1:]]))
    # Position 1 is padding: its garbage is not looked at.
    labels = torch.tensor([3, -100])
    KLDivLoss(log_target=True, reduction="token_mean")(
        log_q, torch.cat([log_q[:1], _logits()[1:]]), labels
    )


def test_only_the_first_call_is_checked() -> None:
    loss = KLDivLoss()
    log_q, target = torch.randn(2, 3).log_softmax(-1), torch.softmax(torch.randn(2, 3), -1)
    loss(log_q, target)
    assert loss.kinds_checked
    loss(_logits(), target)  # not looked at any more: no host synchronization on later calls


def test_functional_forms_read_no_values() -> None:
    target = torch.softmax(torch.randn(2, 3), -1)
    kl_div(_logits(), target)  # no error: the functional form checks shapes and options only
    js_div(_logits(), target)


def test_probabilities_declared_as_logits_warn() -> None:
    student = torch.randn(2, 3)
    teacher = torch.softmax(torch.randn(2, 3), -1)
    with pytest.warns(
        UserWarning, match="target_kind='logits', but its rows are in \\[0, 1\\]"
    ) as record:
        JSDLoss()(student, teacher)
    assert record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        JSDLoss(target_kind="probs")(student, teacher)


@pytest.mark.parametrize("target_kind", ["probs", "log_probs"])
@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 1.0])
def test_jsdloss_kinds_give_the_jsd_of_the_same_distributions(
    target_kind: str, beta: float
) -> None:
    student_logits = torch.randn(4, 7, dtype=torch.float64)
    teacher_logits = torch.randn(4, 7, dtype=torch.float64)
    teacher = (
        teacher_logits.softmax(-1) if target_kind == "probs" else teacher_logits.log_softmax(-1)
    )
    s1 = student_logits.clone().requires_grad_()
    s2 = student_logits.log_softmax(-1).detach().requires_grad_()
    by_logits = JSDLoss(beta=beta)(s1, teacher_logits)
    by_kind = JSDLoss(beta=beta, input_kind="log_probs", target_kind=target_kind)(s2, teacher)
    torch.testing.assert_close(by_kind, by_logits, rtol=1e-12, atol=1e-14)
    # Gradients: through log_softmax by hand for the log_probs input.
    by_logits.backward()
    by_kind.backward()
    assert s1.grad is not None
    assert s2.grad is not None
    probs = student_logits.softmax(-1)
    chained = s2.grad - probs * s2.grad.sum(-1, keepdim=True)
    torch.testing.assert_close(chained, s1.grad, rtol=1e-10, atol=1e-12)


def test_jsdloss_bad_kinds() -> None:
    with pytest.raises(ValueError, match="unknown input_kind 'probs'"):
        JSDLoss(input_kind="probs")
    with pytest.raises(ValueError, match=r"temperature=2\.0 divides logits"):
        JSDLoss(temperature=2.0, target_kind="probs")


def test_compiled_module_reads_no_values() -> None:
    loss = torch.compile(KLDivLoss(), backend="eager", fullgraph=False)
    target = torch.softmax(torch.randn(2, 3), -1)
    loss(torch.randn(2, 3).log_softmax(-1), target)


def test_check_reads_the_first_kept_positions_and_names_their_index() -> None:
    """Only a few rows are read (a wrong kind shows in every row); the message names the
    position in the flattened batch, after positions left out by ``labels``."""
    from kldiv.torch._kind_check import CHECKED_ROWS

    torch.manual_seed(0)
    logits = 3 * torch.randn(2, 80, 11)
    log_probs = torch.log_softmax(logits, dim=-1)
    labels = torch.zeros(2, 80, dtype=torch.long)
    labels[0, :70] = -100  # the first 70 positions are left out
    student = log_probs.clone()
    student[0, 70] = logits[0, 70]  # raw logits at the first kept position
    with pytest.raises(ValueError, match=r"exponentials of row 70 sum to"):
        KLDivLoss()(student, log_probs.exp(), labels=labels)
    # Beyond the first CHECKED_ROWS kept positions nothing is read.
    late = log_probs.clone()
    late[1, 79] = logits[1, 79]
    assert CHECKED_ROWS < 10 + 80
    KLDivLoss()(late, log_probs.exp(), labels=labels)
