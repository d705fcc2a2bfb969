from typing_extensions import Buffer

def logits(
    base: Buffer,
    test: Buffer,
    vocab: int,
    dtype: int,
    labels: Buffer | None,
    threads: int,
    kld: Buffer,
    reverse: Buffer,
    jsd: Buffer,
    agree: Buffer,
    label_base: Buffer,
    label_test: Buffer,
    exact: Buffer,
    log_totals: Buffer,
    /,
) -> None: ...
