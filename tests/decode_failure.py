"""Run the baco CLI with one model's decode failing at its Nth call (tests of concurrent steps).

    python tests/decode_failure.py MODEL.gguf raise|position N baco-args...

``raise``: the decode raises DecodeError before llama.cpp sees the batch (the backend seam);
``position``: the batch goes to llama.cpp with positions past the context, which llama.cpp itself
refuses. Only that model's context counts calls; the other decodes normally.
"""

from __future__ import annotations

import sys
from pathlib import Path

from baco_local.cli.app import main
from baco_local.engine import backend
from baco_local.errors import DecodeError


def install(model: Path, kind: str, at: int) -> None:
    """Patch SequenceContext.decode so that ``model``'s context fails at its ``at``-th call."""
    real = backend.SequenceContext.decode
    calls = {"n": 0}

    def decode(self, tokens, positions, seqs, want_logits):
        if self.model.path.resolve() == model.resolve():
            calls["n"] += 1
            if calls["n"] == at:
                if kind == "raise":
                    raise DecodeError(f"injected failure in {model.name}")
                positions = [p + 100_000 for p in positions]
        return real(self, tokens, positions, seqs, want_logits)

    backend.SequenceContext.decode = decode


if __name__ == "__main__":
    install(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
    main(sys.argv[4:])
