"""Stop strings that cross token boundaries, picked from a generated sample, and the checks a cut sample must pass."""

from __future__ import annotations

from baco_local.engine.loop import Sample


def boundary_stop(sample: Sample, min_index: int = 2) -> str:
    """A stop string that begins inside one token and ends inside the next, found first exactly there.

    It takes the last two characters of token i and the first two of token i+1, so no single token
    holds it and it cannot match at a token start."""
    starts = [sum(len(p) for p in sample.pieces[:i]) for i in range(len(sample.pieces))]
    for i in range(min_index, len(sample.pieces) - 1):
        here, after = sample.pieces[i], sample.pieces[i + 1]
        if len(here) >= 3 and len(after) >= 3:
            stop = here[-2:] + after[:2]
            if sample.text.find(stop) == starts[i] + len(here) - 2:
                return stop
    raise AssertionError(f"no token-crossing stop string in {sample.pieces}")


def assert_cut_like(cut: Sample, full: Sample, stop: str) -> bool:
    """``cut`` (run with ``stop``) is ``full`` (run without) ended just before the first ``stop``.

    Returns whether the stop string was found (and the sample cut)."""
    where = full.text.find(stop)
    if where < 0:
        assert (cut.text, cut.tokens, cut.sources, cut.finish_reason) == (
            full.text, full.tokens, full.sources, full.finish_reason)
        return False
    starts = [sum(len(p) for p in full.pieces[:i]) for i in range(len(full.pieces))]
    kept = sum(1 for start in starts if start < where)  # tokens whose text begins before the stop string
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[:where] and stop not in cut.text
    assert "".join(cut.pieces) == cut.text
    assert (cut.tokens, cut.sources) == (full.tokens[:kept], full.sources[:kept])
    return True
