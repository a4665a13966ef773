"""Finding and fetching a pair's GGUF files.

A :class:`~baco_local.catalog.registry.ModelSource` resolves, without touching the network, to the first
of: its local ``path``; the file in the standard Hugging Face cache (``HF_HUB_CACHE``, ``HF_HOME``;
``huggingface_hub`` decides where); the file a Python package ships (``package``, e.g. the
``baco-local[demo]`` extra, assembled once into ``$XDG_CACHE_HOME/baco/packages``). Only
:func:`download` (``baco models pull``) goes online, through ``huggingface_hub.hf_hub_download``,
which honours ``HF_ENDPOINT``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE``, shows a progress bar and
resumes a transfer that breaks off mid-file (HTTP range requests, up to five times per file). A
run that is itself interrupted starts that file again next time: huggingface_hub >= 1.0 deletes
partial downloads. Every downloaded file is checked to be a GGUF before anything uses it.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import huggingface_hub
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import tqdm as hf_tqdm

from ..errors import DownloadError, ModelFileError
from ..models.gguf_file import read_gguf
from .registry import ModelSource, PairEntry, Registry, load_registry

How = Literal["path", "cache", "package", "missing"]
Confirm = Callable[[str], bool]


@dataclass(frozen=True)
class Located:
    """Where a source's file is on this machine, if anywhere."""

    source: ModelSource
    how: How
    path: Path | None = None

    @property
    def present(self) -> bool:
        """True when the file is here and needs no download."""
        return self.path is not None

    @property
    def size(self) -> int | None:
        """Bytes on disk, when present."""
        return self.path.stat().st_size if self.path is not None else None


@dataclass(frozen=True)
class ResolvedPair:
    """A registry pair whose two files are on disk: what ``gen``/``chat`` load."""

    name: str
    base_path: Path
    aligned_path: Path
    base_template: str
    default_router: str
    default_gamma: float
    entry: PairEntry


def cache_dir() -> Path:
    """The Hugging Face hub cache in use (``HF_HUB_CACHE``, else ``$HF_HOME/hub``)."""
    return Path(hf_constants.HF_HUB_CACHE)


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` forbids network access."""
    return bool(hf_constants.HF_HUB_OFFLINE)


def locate(source: ModelSource, *, assemble: bool = False) -> Located:
    """Find a source's file without network access (``assemble``: let a package build its file)."""
    if source.path is not None:
        return Located(source, "path", source.path) if source.path.is_file() else Located(source, "missing")
    repo, name = source.repo_file()
    cached = huggingface_hub.try_to_load_from_cache(repo, name, revision=source.revision)
    if isinstance(cached, str) and Path(cached).is_file():
        return Located(source, "cache", Path(cached))
    if source.package is not None:
        shipped = package_file(source.package, assemble=assemble)
        if shipped is not None:
            return Located(source, "package", shipped)
    return Located(source, "missing")


def package_file(module_name: str, *, assemble: bool) -> Path | None:
    """The GGUF a package ships (``MODEL_NAME`` and ``assemble(output_path)``), assembled once.

    Returns None when the package is not installed, or when it is but its file is not assembled
    yet and ``assemble`` is False.
    """
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    target = _baco_cache() / "packages" / module.MODEL_NAME
    if target.is_file() or not assemble:
        return target if target.is_file() else None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        module.assemble(output_path=partial, overwrite=True)
        os.replace(partial, target)
    except (OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise ModelFileError(f"cannot assemble the model file from package {module_name}: {exc}") from None
    return target


def baco_cache_dir() -> Path:
    """baco's own cache folder (``$XDG_CACHE_HOME/baco``, else ``~/.cache/baco``)."""
    return _baco_cache()


def _baco_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "baco"


def package_installed(source: ModelSource) -> bool:
    """True when the source's package can be imported (its file can be assembled offline)."""
    if source.package is None:
        return False
    try:
        importlib.import_module(source.package)
    except ImportError:
        return False
    return True


def download(source: ModelSource, *, pair_name: str | None = None, progress: bool = True) -> Path:
    """Download a repo/file source into the Hugging Face cache and check it is a GGUF."""
    if source.path is not None:
        raise DownloadError(f"{source.path} is a local file and cannot be downloaded; check the path")
    if is_offline():
        raise offline_error(source, pair_name)
    repo, name = source.repo_file()
    try:
        # One quick HEAD first: an unreachable hub fails here at once, where hf_hub_download would
        # retry for ~20 s; a wrong repo or file name fails before anything is written.
        huggingface_hub.get_hf_file_metadata(huggingface_hub.hf_hub_url(repo, name, revision=source.revision))
        path = Path(huggingface_hub.hf_hub_download(
            repo, name, revision=source.revision, tqdm_class=None if progress else _Silent))
    except Exception as exc:  # noqa: BLE001 - every failure becomes one actionable line
        raise _download_error(exc, source, pair_name) from None
    _verify_download(path, source)
    return path


class _Silent(hf_tqdm):  # type: ignore[misc]
    """A progress bar that never shows (``progress=False``)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


def _verify_download(path: Path, source: ModelSource) -> None:
    """Refuse a downloaded file that is not a valid GGUF, and drop it from the cache."""
    try:
        read_gguf(path)
    except ModelFileError as exc:
        blob = path.resolve()
        path.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
        raise DownloadError(
            f"{source.describe()} downloaded but is not a usable GGUF ({exc}); removed it from the cache. "
            "Check the repo and file names in models.toml") from None


def _download_error(exc: Exception, source: ModelSource, pair_name: str | None) -> DownloadError:
    """Turn a huggingface_hub/HTTP failure into one line saying what to do."""
    what = source.describe()
    if isinstance(exc, GatedRepoError):
        return DownloadError(f"{source.repo} is gated: accept its licence on the Hugging Face website and set "
                             "HF_TOKEN (or run `hf auth login`), then retry")
    if isinstance(exc, RepositoryNotFoundError):
        return DownloadError(f"repository {source.repo} not found (or private: set HF_TOKEN); "
                             "check the repo name in models.toml")
    if isinstance(exc, RevisionNotFoundError):
        return DownloadError(f"revision {source.revision!r} not found in {source.repo}; check models.toml")
    if isinstance(exc, EntryNotFoundError) and not isinstance(exc, LocalEntryNotFoundError):
        return DownloadError(f"file {source.file} not found in {source.repo}; check the file name in models.toml")
    if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled)) or _is_network_error(exc):
        return offline_error(source, pair_name)
    if isinstance(exc, HfHubHTTPError):
        return DownloadError(f"cannot download {what}: {str(exc).splitlines()[0]}")
    if isinstance(exc, OSError):
        return DownloadError(f"cannot download {what}: {exc}")
    return DownloadError(f"cannot download {what}: {type(exc).__name__}: {exc}")


def _is_network_error(exc: BaseException) -> bool:
    """A transport failure of huggingface_hub's HTTP client (httpx2, httpx or requests)."""
    return any(cls.__name__ in {"TransportError", "ConnectionError", "RequestException"}
               and cls.__module__.split(".")[0] in {"httpx2", "httpx", "requests"}
               for cls in type(exc).__mro__)


def offline_error(source: ModelSource, pair_name: str | None) -> DownloadError:
    """The one-line 'no network' message, with how to fetch the file elsewhere."""
    reason = "HF_HUB_OFFLINE is set" if is_offline() else f"cannot reach {hf_constants.ENDPOINT}"
    fetch = f"`baco models pull {pair_name}`" if pair_name else f"`hf download {source.repo} {source.file}`"
    return DownloadError(
        f"cannot download {source.describe()}: {reason}. On a machine with network access run {fetch}, "
        f"then copy its Hugging Face cache into {cache_dir()} (or set a local path in models.toml)")


# --- pairs -----------------------------------------------------------------------------------

def locate_pair(entry: PairEntry, *, assemble: bool = False) -> tuple[Located, Located]:
    """Where the base and aligned files of a pair are, without network access."""
    return locate(entry.base, assemble=assemble), locate(entry.aligned, assemble=assemble)


def check_local_paths(entry: PairEntry) -> None:
    """Refuse a pair whose local ``path`` (base or aligned) names no file: nothing to download."""
    for side, source in (("base", entry.base), ("aligned", entry.aligned)):
        if source.path is not None and not source.path.is_file():
            raise ModelFileError(f"pair '{entry.name}': the {side} model's path {source.path} does not exist "
                                 f"(set at {entry.origin}); correct it in models.toml")


def pull_pair(entry: PairEntry, *, progress: bool = True) -> tuple[Path, Path]:
    """Make both files of a pair present: assemble shipped ones, download the rest."""
    base, aligned = (found.path or download(found.source, pair_name=entry.name, progress=progress)
                     for found in locate_pair(entry, assemble=True))
    return base, aligned


def resolve_pair(name: str, *, allow_download: bool = False, confirm: Confirm | None = None,
                 registry: Registry | None = None, progress: bool = True) -> ResolvedPair:
    """The two files of a registry pair, downloading missing ones only if allowed.

    ``allow_download`` is ``--yes``; otherwise ``confirm`` (the CLI passes a terminal prompt when
    stdin is a terminal, None when not) is asked once. Refused or not interactive: DownloadError
    naming the exact ``baco models pull`` command.
    """
    entry = (registry or load_registry()).get(name)
    check_local_paths(entry)
    # Nothing is written (no package file assembled) until both sides are known to be available.
    missing = [f.source for f in locate_pair(entry) if not f.present and not package_installed(f.source)]
    if missing:
        if is_offline():
            raise offline_error(missing[0], name)
        question = (f"Pair '{name}' needs {_describe_missing(missing)} "
                    f"downloaded into {cache_dir()}. Download now?")
        if not (allow_download or (confirm is not None and confirm(question))):
            raise DownloadError(f"model files for pair '{name}' are not downloaded ({_describe_missing(missing)}); "
                                f"run `baco models pull {name}` first, or pass --yes to download them now")
    base, aligned = pull_pair(entry, progress=progress)  # downloads only what is missing
    return ResolvedPair(name, base, aligned, entry.base_template, entry.router, entry.gamma, entry)


def _describe_missing(sources: list[ModelSource]) -> str:
    sizes = [s.size_mb for s in sources if s.size_mb is not None]
    total = f", about {sum(sizes):.0f} MB" if len(sizes) == len(sources) else ""
    return f"{len(sources)} file{'s' if len(sources) > 1 else ''}{total}"
