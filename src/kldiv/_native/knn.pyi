from typing_extensions import Buffer

def neighbour_distances(
    x: Buffer,
    y: Buffer,
    d: int,
    k: int,
    threads: int,
    rho: Buffer,
    nu: Buffer,
    copies: Buffer,
    within: Buffer | None = None,
    chebyshev: bool = False,
    /,
) -> None: ...
