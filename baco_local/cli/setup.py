"""From command-line values to a loaded engine: shared by gen, chat and sweep."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ChatTemplateError, UsageError
from ..loop import DraftPolicy, Engine, GenerationSettings
from ..gguf_file import read_gguf
from ..memory import effective_context, kv_cells
from ..model_identity import model_identity
from ..pair import ModelPair, PairSpec
from ..prompts import DEFAULT_BASE_TEMPLATE
from ..routers import DEFAULT_GAMMA, DEFAULT_ROUTER, get_router
from .options import RunOptions
from ..sampling import SamplingParams


@dataclass(frozen=True)
class ModelChoice:
    """Which models to load, as the user named them."""

    base: Path | None
    aligned: Path | None
    pair: str | None
    chat_template_file: Path | None
    base_template: str | None
    gpu_layers: int
    assume_yes: bool = False


@dataclass(frozen=True)
class ResolvedChoice:
    """The files and defaults a ModelChoice resolves to."""

    spec: PairSpec
    default_router: str
    default_gamma: float
    label: str  # a short model name for records, e.g. "gemma-3-270m" or "base+aligned"


def _read_chat_template(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ChatTemplateError(f"cannot read chat template {path}: {exc}") from None


def resolve_models(choice: ModelChoice) -> ResolvedChoice:
    """Turn --pair or --base/--aligned into a PairSpec (downloads nothing without consent)."""
    chat_template = _read_chat_template(choice.chat_template_file)
    if choice.pair is not None:
        if choice.base is not None or choice.aligned is not None:
            raise UsageError("give either --pair or --base/--aligned, not both")
        from .models_cmd import resolve_pair_for_cli  # the registry is only needed with --pair

        resolved = resolve_pair_for_cli(choice.pair, assume_yes=choice.assume_yes)
        spec = PairSpec(resolved.base_path, resolved.aligned_path,
                        base_template=choice.base_template or resolved.base_template,
                        chat_template=chat_template, base_gpu_layers=choice.gpu_layers,
                        aligned_gpu_layers=choice.gpu_layers)
        return ResolvedChoice(spec, resolved.default_router, resolved.default_gamma, choice.pair)
    if choice.base is None or choice.aligned is None:
        raise UsageError("name the models: --base BASE.gguf --aligned ALIGNED.gguf, or --pair NAME")
    spec = PairSpec(choice.base, choice.aligned, base_template=choice.base_template or DEFAULT_BASE_TEMPLATE,
                    chat_template=chat_template, base_gpu_layers=choice.gpu_layers,
                    aligned_gpu_layers=choice.gpu_layers)
    return ResolvedChoice(spec, DEFAULT_ROUTER, DEFAULT_GAMMA, f"{choice.base.stem}+{choice.aligned.stem}")


def prepare_run(run: RunOptions) -> tuple[ResolvedChoice, GenerationSettings]:
    """Resolve the models and validate routing and sampling values (before any model is loaded)."""
    resolved = resolve_models(ModelChoice(run.base, run.aligned, run.pair, run.chat_template_file,
                                          run.base_template, run.gpu_layers, run.yes))
    if run.draft is not None and run.no_draft:
        raise UsageError("give --draft K or --no-draft, not both")
    settings = GenerationSettings(
        router=get_router(run.router or resolved.default_router),
        gamma=resolved.default_gamma if run.gamma is None else run.gamma,
        sampling=SamplingParams(temperature=run.temp, top_k=run.top_k, top_p=run.top_p, min_p=run.min_p),
        max_tokens=run.max_tokens,
        stop=tuple(run.stop or ()),
        seed=run.seed,
        draft=DraftPolicy(enabled=not run.no_draft, fixed_k=run.draft),
    )
    return resolved, settings


def model_files(spec: PairSpec) -> dict[str, dict[str, Any]]:
    """What identifies the two model files (size and fingerprint), as recorded in output settings."""
    return {"base": model_identity(spec.base_path), "aligned": model_identity(spec.aligned_path)}


def settings_record(settings: GenerationSettings, resolved: ResolvedChoice, n: int, ctx_size: int,
                    system: str | None = None, *, files: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The run's settings as written into every output record (``files``: :func:`model_files`, if known)."""
    spec = resolved.spec
    template = spec.chat_template
    return {
        "model": f"baco:{settings.router.name}@{settings.gamma:g}:{resolved.label}",
        "base": str(spec.base_path),
        "aligned": str(spec.aligned_path),
        "model_files": files if files is not None else model_files(spec),
        "router": settings.router.name,
        "gamma": settings.gamma,
        "n": n,
        "sampling": settings.sampling.as_dict(),
        "max_tokens": settings.max_tokens,
        "stop": list(settings.stop),
        "seed": settings.seed,
        "draft": settings.draft.describe(),
        "ctx_size": ctx_size,
        "base_template": spec.base_template,
        "chat_template": "gguf" if template is None else hashlib.sha256(template.encode()).hexdigest()[:16],
        "system": system,
    }


def open_engine(resolved: ResolvedChoice, run: RunOptions, n_seq: int) -> Engine:
    """Print the memory estimate, refuse a run that cannot fit, then load the pair and make its engine.

    With GPU offload the limit that matters is the GPU's, which this check does not know: it only
    prints the estimate then.
    """
    from .models_cmd import check_memory_for_run

    spec = resolved.spec
    offloaded = spec.base_gpu_layers != 0 or spec.aligned_gpu_layers != 0
    effective_ctx = effective_context(run.ctx_size, read_gguf(spec.base_path), read_gguf(spec.aligned_path))
    check_memory_for_run(spec.base_path, spec.aligned_path, n_cells=kv_cells(effective_ctx, n_seq, run.max_tokens),
                         n_seq=n_seq, ignore_limit=run.ignore_memory or offloaded)
    return Engine(ModelPair(spec), ctx_size=run.ctx_size, threads=run.threads)
