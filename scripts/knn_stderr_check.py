"""How the standard error that ``kldiv.estimate.knn`` reports compares with the estimate's spread.

For each (d, k), draws ``--repeats`` independent pairs of samples x ~ N(0, I), y ~ N(0.5, I)
of ``--n`` points each, and prints the standard deviation of the estimates next to the mean
reported standard error. The figures quoted in docs/estimators.md come from

    python scripts/knn_stderr_check.py --n 2000 --repeats 300
"""

from __future__ import annotations

import argparse

import numpy as np

from kldiv.estimate import knn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"n = m = {args.n}, {args.repeats} repetitions per row")
    print("  d   k   sd of estimates   mean reported stderr   ratio")
    for d, k in [(1, 1), (1, 5), (5, 1), (5, 5)]:
        rng = np.random.default_rng(args.seed)
        values, errors = [], []
        for _ in range(args.repeats):
            x = rng.standard_normal((args.n, d))
            y = rng.standard_normal((args.n, d)) + 0.5
            result = knn(x, y, k=k)
            values.append(float(result))
            errors.append(result.stderr)
        spread, reported = float(np.std(values, ddof=1)), float(np.mean(errors))
        print(f"{d:3d} {k:3d}   {spread:15.4f}   {reported:20.4f}   {spread / reported:5.2f}")


if __name__ == "__main__":
    main()
