"""One exception tree for the whole library.

The library raises these; only the CLI prints them (as a single ``Error: ...`` line on stderr)
and turns them into an exit code. Every message is one actionable line.
"""

from __future__ import annotations


class BacoError(Exception):
    """Base class: anything a user can fix by changing their input or environment."""

    exit_code: int = 2


class ModelFileError(BacoError):
    """A GGUF file is missing, unreadable, not a GGUF, truncated or malformed."""


class IncompatiblePairError(BacoError):
    """The base and aligned models do not share a tokenizer."""


class UsageError(BacoError):
    """A bad option value: unknown router, gamma out of range, bad sampling value."""


class PromptFileError(BacoError):
    """A prompt file is missing, empty, not UTF-8 or has a malformed line."""


class OutputFileError(BacoError):
    """The output file cannot be written, or holds lines from a different run."""


class ChatTemplateError(BacoError):
    """A chat template cannot be read or rendered."""


class ContextOverflowError(BacoError):
    """A prompt does not fit in the context window."""


class DecodeError(BacoError):
    """llama.cpp refused a batch (no KV slot, aborted, or a fatal error)."""


class RegistryError(BacoError):
    """models.toml is malformed, or a pair name is unknown or incomplete."""


class DownloadError(BacoError):
    """A model file could not be downloaded (offline, not found, interrupted)."""


class MemoryBudgetError(BacoError):
    """The models and their KV caches would not fit in available memory."""


class ClusterError(BacoError):
    """A Ray cluster cannot be reached, or one of its nodes cannot run its part (``gen --ray``)."""
