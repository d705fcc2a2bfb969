"""register_kl dispatch, the result object, and every error path of kldiv.distributions."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats as st

from kldiv.distributions import (
    Categorical,
    Gamma,
    KLResult,
    LogNormal,
    Mixture,
    MultivariateNormal,
    Normal,
    kl,
    register_kl,
    registered_pairs,
)


class Animal:
    pass


class Dog(Animal):
    pass


class Puppy(Dog):
    pass


@register_kl(Animal, Animal)
def _kl_animal(p: Animal, q: Animal) -> np.ndarray:
    return np.asarray(1.0)


@register_kl(Dog, Dog)
def _kl_dog(p: Dog, q: Dog) -> np.ndarray:
    return np.asarray(2.0)


def test_most_specific_registered_pair_wins() -> None:
    assert float(kl(Animal(), Animal())) == 1.0
    assert float(kl(Dog(), Dog())) == 2.0
    assert float(kl(Puppy(), Puppy())) == 2.0  # nearest bases in both arguments
    assert float(kl(Puppy(), Animal())) == 1.0
    assert (Dog, Dog) in registered_pairs(Puppy, None)


def test_ambiguous_registration_warns() -> None:
    class Left:
        pass

    class Right:
        pass

    class Both(Left, Right):
        pass

    register_kl(Left, Both)(lambda p, q: np.asarray(1.0))
    register_kl(Both, Right)(lambda p, q: np.asarray(2.0))
    with pytest.warns(UserWarning, match="equally"):
        kl(Both(), Both())


def test_register_kl_needs_classes() -> None:
    with pytest.raises(TypeError, match="takes two classes"):
        register_kl(Normal(0, 1), Normal)  # type: ignore[arg-type]


def test_exact_without_closed_form_lists_registered_pairs() -> None:
    with pytest.raises(
        TypeError,
        match=r"no closed form is registered for KL\(Normal‖scipy\.stats\.t\).*\(Normal, Normal\).*method='auto'",
    ):
        kl(st.norm(0, 1), st.t(3), method="exact")


def test_exact_error_names_the_pair_for_kldiv_types() -> None:
    with pytest.raises(
        TypeError, match=r"KL\(Gamma‖LogNormal\).*pairs registered.*\(Gamma, Gamma\)"
    ):
        kl(Gamma(2.0, 1.0), LogNormal(0.0, 1.0), method="exact")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: kl(st.norm(), st.norm(), method="fast"), ValueError, "method must be one of"),
        (
            lambda: kl(st.norm(), st.norm(), n_samples=1),
            ValueError,
            "n_samples must be an integer >= 2",
        ),
        (lambda: kl("normal", st.norm()), TypeError, "p is a str; kl takes frozen scipy.stats"),
        (lambda: kl(st.norm(), 3.0), TypeError, "q is a float"),
        (
            lambda: kl(st.norm(), st.norm(), method="bound"),
            ValueError,
            "applies to Mixture arguments only",
        ),
        (
            lambda: kl(
                MultivariateNormal([0.0], np.eye(1)),
                MultivariateNormal([1.0], np.eye(1)),
                method="quadrature",
            ),
            ValueError,
            "method='quadrature' needs univariate P and Q",
        ),
        (
            lambda: Normal(0.0, -1.0),
            ValueError,
            "parameter scale has the entry -1.0; it must be > 0",
        ),
        (lambda: Normal(np.nan, 1.0), ValueError, "parameter loc contains NaN"),
        (lambda: Categorical([0.5, 0.6]), ValueError, "row summing to 1.1"),
        (lambda: Categorical([-0.5, 1.5]), ValueError, "negative entry -0.5"),
        (
            lambda: kl(Categorical([0.5, 0.5]), Categorical([0.2, 0.3, 0.5])),
            ValueError,
            "P has 2 categories and Q has 3",
        ),
        (
            lambda: MultivariateNormal([0.0, 0.0], [[1.0, 0.0, 0.0]]),
            ValueError,
            "does not match loc of shape",
        ),
        (
            lambda: kl(
                MultivariateNormal([0.0, 0.0], np.eye(2)),
                MultivariateNormal([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]]),
            ),
            ValueError,
            "covariance of Q is not positive definite",
        ),
        (
            lambda: kl(
                MultivariateNormal([0.0, 0.0], np.eye(2)), MultivariateNormal([0.0], np.eye(1))
            ),
            ValueError,
            "P has dimension 2 and Q has dimension 1",
        ),
        (lambda: Mixture([0.5, 0.6], [st.norm(), st.norm()]), ValueError, "sum to 1.1"),
        (lambda: Mixture([0.5], [st.norm(), st.norm()]), ValueError, "one weight per component"),
        (lambda: Mixture([1.5, -0.5], [st.norm(), st.norm()]), ValueError, "must be >= 0"),
        (
            lambda: Mixture([0.5, 0.5], [st.norm(), st.poisson(1)]),
            ValueError,
            "all discrete or all continuous",
        ),
        (
            lambda: Mixture([0.5, 0.5], [st.norm([0.0, 1.0]), st.norm()]),
            ValueError,
            r"component 0 is a batch of shape \(2,\)",
        ),
        (
            lambda: kl(Mixture([1.0], [st.norm()]), st.norm(), method="exact"),
            TypeError,
            "mixtures has no closed form",
        ),
        (
            lambda: kl(Mixture([1.0], [st.t(3)]), Mixture([1.0], [st.norm()]), method="bound"),
            TypeError,
            "no closed form",
        ),
    ],
)
def test_error_messages(call: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()  # type: ignore[operator]


def test_result_converts_and_serializes() -> None:
    result = kl(st.norm(0, 1), st.norm(1, 2))
    assert isinstance(result, KLResult)
    assert float(result) == pytest.approx(np.log(2) + 2 / 8 - 0.5, rel=1e-14)
    assert np.asarray(result).shape == ()
    assert result.units == "nats"
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["method"] == "exact"
    assert payload["stderr"] == 0.0
    assert "nats (exact)" in str(result)
    batch = kl(st.norm([0.0, 1.0], 1.0), st.norm(0.0, 1.0))
    with pytest.raises(TypeError, match=r"float\(\) needs a single value.*shape \(2,\)"):
        float(batch)
    assert json.loads(json.dumps(batch.to_dict()))["value"] == [0.0, 0.5]


def test_import_does_not_load_torch_jax_or_dask() -> None:
    code = (
        "import sys, kldiv.distributions, kldiv.estimate, scipy.stats as st\n"
        "kldiv.distributions.kl(st.norm(), st.norm(1))\n"
        "print(sorted(m for m in ('torch', 'jax', 'dask') if m in sys.modules))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "[]"
