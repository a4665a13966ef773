"""The model-pair registry: ``models.toml`` files turned into :class:`PairEntry` records.

Two files are read: the one shipped with the package (``baco_local/models.toml``) and, if present,
the user's (``$BACO_MODELS``, else ``$XDG_CONFIG_HOME/baco/models.toml``). A pair in the user file
with a new name is added; one with a known name is merged over the shipped entry key by key (a
``base`` or ``aligned`` table given in the user file replaces the shipped one whole).

Schema (see the shipped ``models.toml`` for real entries)::

    [pairs.NAME]
    description = "..."                      # optional
    base_template = "User: {prompt}\\nAssistant:\\n"  # optional, must contain {prompt}
    router = "p-punc"                         # optional, a router name
    gamma = 0.3                               # optional, γ of the probability routers (p, p-punc, ...)
    entropy_gamma = 3.0                       # optional, γ in nats of the entropy routers (h, h-punc)
    licence = "..."                           # optional
    note = "..."                              # optional
    [pairs.NAME.base]                         # required; so is [pairs.NAME.aligned]
    repo = "owner/name"                       # a Hugging Face repo and file ...
    file = "model-Q4_K_M.gguf"
    revision = "main"                         # optional
    size_mb = 105                             # optional, approximate download size
    path = "~/models/base.gguf"               # ... or a local path instead of repo/file
    package = "module_name"                   # optional: a Python package that ships the file

Every error names the file, the line and the field. This module reads no model files and never
touches the network (see :mod:`baco_local.catalog.hub` for that).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import RegistryError, UsageError
from ..engine.prompts import DEFAULT_BASE_TEMPLATE, check_base_template
from ..engine.routers import DEFAULT_ENTROPY_GAMMA, DEFAULT_GAMMA, DEFAULT_ROUTER, get_router

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ENV_VAR = "BACO_MODELS"

_PAIR_KEYS = {"description", "base", "aligned", "base_template", "router", "gamma", "entropy_gamma", "licence", "note"}
_SOURCE_KEYS = {"repo", "file", "revision", "path", "size_mb", "package"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


@dataclass(frozen=True)
class ModelSource:
    """Where one model's GGUF comes from: a Hugging Face repo/file, or a local path."""

    repo: str | None = None
    file: str | None = None
    revision: str | None = None
    path: Path | None = None
    size_mb: float | None = None
    package: str | None = None  # a Python package with ``assemble() -> Path`` (e.g. the demo extra)

    def describe(self) -> str:
        """``owner/name/file`` or the local path, for messages and tables."""
        return str(self.path) if self.path is not None else f"{self.repo}/{self.file}"

    def repo_file(self) -> tuple[str, str]:
        """``(repo, file)`` of a hub source; RegistryError for a local-path source."""
        if self.repo is None or self.file is None:
            raise RegistryError(f"{self.describe()} is a local file, not a Hugging Face repo/file")
        return self.repo, self.file


@dataclass(frozen=True)
class PairEntry:
    """One base/aligned pair from the registry."""

    name: str
    base: ModelSource
    aligned: ModelSource
    base_template: str = DEFAULT_BASE_TEMPLATE
    router: str = DEFAULT_ROUTER
    gamma: float = DEFAULT_GAMMA  # the probability routers' default γ
    entropy_gamma: float = DEFAULT_ENTROPY_GAMMA  # the entropy routers' default γ, in nats
    description: str = ""
    licence: str = ""
    note: str = ""
    origin: str = ""  # "file:line" where the entry (or its last override) was defined


@dataclass(frozen=True)
class Registry:
    """All known pairs, by name, and the files they were read from."""

    pairs: dict[str, PairEntry]
    files: tuple[Path, ...]

    def get(self, name: str) -> PairEntry:
        """The pair called ``name``; an unknown name lists the known ones."""
        entry = self.pairs.get(name)
        if entry is None:
            known = ", ".join(sorted(self.pairs)) or "none"
            raise RegistryError(f"unknown model pair '{name}'; known pairs: {known} (see `baco models list`)")
        return entry


def builtin_path() -> Path:
    """The ``models.toml`` shipped inside the package (where it is installed, even when a source
    checkout makes it a symbolic link)."""
    return Path(str(files("baco_local").joinpath("models.toml"))).absolute()


def user_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The user's registry file: ``$BACO_MODELS`` (must exist) or ``$XDG_CONFIG_HOME/baco/models.toml``."""
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR):
        path = Path(env[ENV_VAR]).expanduser()
        if not path.is_file():
            raise RegistryError(f"{ENV_VAR} points to {path}, which is not a file")
        return path
    config_home = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config").expanduser()
    path = config_home / "baco" / "models.toml"
    return path if path.is_file() else None


def load_registry(user_file: Path | None = None, *, environ: Mapping[str, str] | None = None) -> Registry:
    """Read the shipped registry, then merge the user's file (``user_file`` or :func:`user_path`)."""
    sources = [builtin_path()]
    extra = user_file if user_file is not None else user_path(environ)
    if extra is not None:
        sources.append(extra)
    raw: dict[str, tuple[dict[str, Any], _Where]] = {}
    for path in sources:
        for name, (table, where) in _read_pairs(path).items():
            if name in raw:
                merged = {**raw[name][0], **table}
                raw[name] = (merged, where)
            else:
                raw[name] = (table, where)
    pairs = {name: _build_entry(name, table, where) for name, (table, where) in raw.items()}
    return Registry(pairs, tuple(sources))


# --- reading and checking --------------------------------------------------------------------

@dataclass(frozen=True)
class _Where:
    """A registry file and its text, to point errors at a line."""

    path: Path
    text: str
    pair: str

    def error(self, message: str, *, table: str | None = None, key: str | None = None) -> RegistryError:
        line = _find_line(self.text, self.pair, table, key)
        return RegistryError(f"{self.path}:{line}: pair '{self.pair}': {message}")

    @property
    def origin(self) -> str:
        return f"{self.path}:{_find_line(self.text, self.pair, None, None)}"


def _read_pairs(path: Path) -> dict[str, tuple[dict[str, Any], _Where]]:
    """Parse one file into raw pair tables (checked later, after merging)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"cannot read model registry {path}: {exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = match.group(1) if match else "?"
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc)) or "invalid TOML"
        raise RegistryError(f"{path}:{line}: malformed TOML: {reason}") from None
    unknown = sorted(set(document) - {"pairs"})
    if unknown:
        line = _find_key_line(text, unknown[0])
        raise RegistryError(f"{path}:{line}: unknown top-level field '{unknown[0]}' (expected [pairs.NAME] tables)")
    pairs = document.get("pairs", {})
    if not isinstance(pairs, dict):
        raise RegistryError(f"{path}:{_find_key_line(text, 'pairs')}: field 'pairs' must be a table")
    out: dict[str, tuple[dict[str, Any], _Where]] = {}
    for name, table in pairs.items():
        where = _Where(path, text, name)
        if not _NAME.match(name):
            raise where.error("a pair name may use letters, digits, '.', '_' and '-' only")
        if not isinstance(table, dict):
            raise where.error("must be a table ([pairs.NAME])")
        for key in table:
            if key not in _PAIR_KEYS:
                raise where.error(f"unknown field '{key}' (known: {', '.join(sorted(_PAIR_KEYS))})", key=key)
        out[name] = (dict(table), where)
    return out


def _build_entry(name: str, table: dict[str, Any], where: _Where) -> PairEntry:
    """Check one merged pair table and turn it into a :class:`PairEntry`."""
    for side in ("base", "aligned"):
        if side not in table:
            raise where.error(f"missing field '{side}' (a [pairs.{name}.{side}] table)")
    template = _typed(table, "base_template", str, where, DEFAULT_BASE_TEMPLATE)
    router = _typed(table, "router", str, where, DEFAULT_ROUTER)
    gamma = _typed(table, "gamma", (int, float), where, DEFAULT_GAMMA)
    entropy_gamma = _typed(table, "entropy_gamma", (int, float), where, DEFAULT_ENTROPY_GAMMA)
    _check(where, "base_template", check_base_template, template)
    _check(where, "router", get_router, router)
    if not 0 <= gamma <= 1:
        raise where.error(f"field 'gamma': the probability routers' γ is in [0, 1], got {gamma} "
                          "(an entropy router's γ in nats goes in 'entropy_gamma')", key="gamma")
    if not entropy_gamma >= 0:
        raise where.error(f"field 'entropy_gamma': the entropy routers' γ is in nats (>= 0), got {entropy_gamma}",
                          key="entropy_gamma")
    return PairEntry(
        name=name,
        base=_build_source(table["base"], "base", where),
        aligned=_build_source(table["aligned"], "aligned", where),
        base_template=template,
        router=router.lower(),
        gamma=float(gamma),
        entropy_gamma=float(entropy_gamma),
        description=_typed(table, "description", str, where, ""),
        licence=_typed(table, "licence", str, where, ""),
        note=_typed(table, "note", str, where, ""),
        origin=where.origin,
    )


def _build_source(table: Any, side: str, where: _Where) -> ModelSource:
    """Check a ``base``/``aligned`` table: repo and file, or path."""
    if not isinstance(table, dict):
        raise where.error(f"field '{side}' must be a table with repo/file or path", key=side)
    for key in table:
        if key not in _SOURCE_KEYS:
            raise where.error(f"unknown field '{side}.{key}' (known: {', '.join(sorted(_SOURCE_KEYS))})",
                              table=side, key=key)
    values = {key: _typed(table, key, (int, float) if key == "size_mb" else str, where, None, side)
              for key in _SOURCE_KEYS}
    if values["path"] is None:
        for key in ("repo", "file"):
            if values[key] is None:
                raise where.error(f"missing field '{side}.{key}' (or give '{side}.path')", table=side)
        if not _REPO.match(values["repo"]):
            raise where.error(f"field '{side}.repo' must look like 'owner/name', got {values['repo']!r}",
                              table=side, key="repo")
    path = values["path"]
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_absolute():
            path = where.path.parent / path
    return ModelSource(repo=values["repo"], file=values["file"], revision=values["revision"], path=path,
                       size_mb=values["size_mb"], package=values["package"])


def _check(where: _Where, key: str, check: Callable[[Any], Any], value: Any) -> Any:
    """Run a validator from another module; its UsageError becomes a located RegistryError."""
    try:
        return check(value)
    except UsageError as exc:
        raise where.error(f"field '{key}': {exc}", key=key) from None


def _typed(table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: _Where,
           default: Any, side: str | None = None) -> Any:
    """``table[key]`` checked against ``kind`` (bools are not numbers), or ``default``."""
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        label = f"{side}.{key}" if side else key
        wanted = "a number" if kind == (int, float) else "a string"
        raise where.error(f"field '{label}' must be {wanted}, got {value!r}", table=side, key=key)
    return value


# --- pointing at lines -----------------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?$")


def _split_key(dotted: str) -> tuple[str, ...]:
    """``pairs."a.b".base`` -> ("pairs", "a.b", "base")."""
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([^.\s]+)', dotted)
    return tuple(next(p for p in groups if p) for groups in parts)


def _find_line(text: str, pair: str, table: str | None, key: str | None) -> int:
    """The 1-based line of ``[pairs.PAIR(.TABLE)]`` (or of ``key`` inside it); best effort."""
    wanted = ("pairs", pair) + ((table,) if table else ())
    lines = text.splitlines()
    start = None
    for number, line in enumerate(lines, 1):
        header = _HEADER.match(line)
        if header and _split_key(header.group(1)) == wanted:
            start = number
            continue
        if start is not None and header:
            break
        if start is not None and key and re.match(rf"^\s*{re.escape(key)}\s*=", line):
            return number
    if start is not None:
        return start
    if table:  # an inline table on the pair's own line, e.g. base = { ... }
        return _find_line(text, pair, None, table)
    return _find_key_line(text, pair)


def _find_key_line(text: str, word: str) -> int:
    """The first line mentioning ``word``, or 1."""
    for number, line in enumerate(text.splitlines(), 1):
        if word in line:
            return number
    return 1
