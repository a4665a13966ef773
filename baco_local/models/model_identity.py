"""What identifies a model file when a run is resumed: its size and a fingerprint of its content.

A path or a file name says nothing about what is in the file (another quantisation, a newer
download, another model under the same name). The fingerprint is a SHA-256 of the file's size,
its first MiB (the GGUF header and the start of its metadata) and its last MiB (tensor data), so
it costs two small reads even for a file of many GiB, and a moved or renamed copy keeps it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import ModelFileError

CHUNK = 1 << 20


def model_identity(path: Path) -> dict[str, Any]:
    """``{"size": bytes, "fingerprint": 16 hex digits}`` of a model file."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            digest = hashlib.sha256(str(size).encode())
            handle.seek(0)
            digest.update(handle.read(CHUNK))
            handle.seek(max(0, size - CHUNK))
            digest.update(handle.read(CHUNK))
    except FileNotFoundError:
        raise ModelFileError(f"model file {path} does not exist") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    return {"size": size, "fingerprint": digest.hexdigest()[:16]}


def describe_identity(identity: Any) -> str:
    """A model identity in a few words, for messages."""
    if not isinstance(identity, dict):
        return repr(identity)
    return f"{identity.get('size')} bytes, fingerprint {identity.get('fingerprint')}"
