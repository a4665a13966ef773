"""From command-line values to a loaded engine: shared by gen, chat and sweep, in three steps,
cheapest first so that a bad value never waits for a model (or a download):

1. :func:`prepare_run` checks every value that needs no model file and builds the settings;
2. :func:`resolve_run` finds (or, with consent, downloads) the files and caps the context;
3. :func:`open_engine` prints the memory estimate, refuses what cannot fit, and loads the pair.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, overload

from ..errors import ChatTemplateError, UsageError
from .escapes import process_escapes
from ..engine.concurrent import ChoiceCache, ThreadPlan, check_mode
from ..engine.loop import DraftPolicy, Engine, GenerationSettings
from ..models.memory import check_ctx_size, kv_cells
from ..models.model_identity import model_identity
from ..engine.pair import ModelPair, PairSpec
from ..engine.prompts import DEFAULT_BASE_TEMPLATE, check_base_template, compile_chat_template
from ..catalog.registry import load_registry
from ..engine.routers import DEFAULT_ENTROPY_GAMMA, DEFAULT_GAMMA, DEFAULT_ROUTER, get_router
from .console import note
from .options import DEFAULT_CTX, RANDOM_SEED, RunOptions
from ..engine.sampling import SamplingParams


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
class ModelPlan:
    """What a ModelChoice means before any model file is looked for: prompt templates, the default
    router and γ (the pair's), and a short model name for records."""

    choice: ModelChoice
    base_template: str
    chat_template: str | None
    default_router: str
    default_gamma: float  # the probability routers'
    label: str  # e.g. "gemma-3-270m" or "base+aligned"
    default_entropy_gamma: float = DEFAULT_ENTROPY_GAMMA  # the entropy routers' (h, h-punc), in nats


@dataclass(frozen=True)
class ResolvedChoice:
    """The files and defaults a ModelChoice resolves to."""

    spec: PairSpec
    default_router: str
    default_gamma: float
    label: str  # a short model name for records, e.g. "gemma-3-270m" or "base+aligned"
    ctx_size: int | None = None  # the context a run gets: -c, capped by the models' training lengths


def _read_chat_template(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ChatTemplateError(f"cannot read chat template {path}: {exc}") from None
    compile_chat_template(source)  # a syntax error shows now, not after loading the models
    return source


def plan_models(choice: ModelChoice) -> ModelPlan:
    """Check --pair or --base/--aligned and the templates, without looking for any model file."""
    chat_template = _read_chat_template(choice.chat_template_file)
    if choice.pair is not None:
        if choice.base is not None or choice.aligned is not None:
            raise UsageError("give either --pair or --base/--aligned, not both")
        entry = load_registry().get(choice.pair)
        template = check_base_template(choice.base_template or entry.base_template)
        return ModelPlan(choice, template, chat_template, entry.router, entry.gamma, choice.pair,
                         entry.entropy_gamma)
    if choice.base is None or choice.aligned is None:
        raise UsageError("name the models: --base BASE.gguf --aligned ALIGNED.gguf, or --pair NAME")
    template = check_base_template(choice.base_template or DEFAULT_BASE_TEMPLATE)
    return ModelPlan(choice, template, chat_template, DEFAULT_ROUTER, DEFAULT_GAMMA,
                     f"{choice.base.stem}+{choice.aligned.stem}")


def locate_models(plan: ModelPlan) -> ResolvedChoice:
    """The files of a plan: --base/--aligned as given, or a pair's (asking before a download)."""
    choice = plan.choice
    if choice.pair is not None:
        from .models_cmd import resolve_pair_for_cli  # the hub is only needed with --pair

        found = resolve_pair_for_cli(choice.pair, assume_yes=choice.assume_yes)
        base, aligned = found.base_path, found.aligned_path
    else:
        assert choice.base is not None and choice.aligned is not None  # plan_models checked
        base, aligned = choice.base, choice.aligned
    spec = PairSpec(base, aligned, base_template=plan.base_template, chat_template=plan.chat_template,
                    base_gpu_layers=choice.gpu_layers, aligned_gpu_layers=choice.gpu_layers)
    return ResolvedChoice(spec, plan.default_router, plan.default_gamma, plan.label)


def resolve_models(choice: ModelChoice) -> ResolvedChoice:
    """Turn --pair or --base/--aligned into a PairSpec (downloads nothing without consent)."""
    return locate_models(plan_models(choice))


def resolve_run(plan: ModelPlan, run: RunOptions) -> ResolvedChoice:
    """The run's files, and the context it gets (saying so on stderr when -c was capped)."""
    from .models_cmd import context_for

    resolved = locate_models(plan)
    ctx_size = context_for(run.ctx_size, (resolved.spec.base_path, resolved.spec.aligned_path))
    return dataclasses.replace(resolved, ctx_size=ctx_size)


@overload
def option_text(run: RunOptions, text: str, option: str) -> str: ...
@overload
def option_text(run: RunOptions, text: None, option: str) -> None: ...
def option_text(run: RunOptions, text: str | None, option: str) -> str | None:
    """A text option as the run uses it: escapes processed (as llama.cpp does) unless --no-escape."""
    if text is None or run.no_escape:
        return text
    return process_escapes(text, option)


def choose_seed(requested: int) -> int:
    """``--seed``: as given, or a random one for -1 (any other negative value is refused)."""
    if requested == RANDOM_SEED:
        return secrets.randbelow(2 ** 32)
    if requested < 0:
        raise UsageError(f"--seed must be >= 0, or -1 for a random seed; got {requested}")
    return requested


def settle_seed(settings: GenerationSettings, run: RunOptions, recorded_settings: Mapping[str, Any] | None = None,
                where: Path | None = None) -> GenerationSettings:
    """With ``--seed -1``: the seed an existing output (``where``) records, so that a rerun of the
    same command resumes it; else the random one drawn, told on stderr so the run can be repeated."""
    if run.seed != RANDOM_SEED:
        return settings
    recorded = (recorded_settings or {}).get("seed")
    if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded >= 0:
        note(f"--seed -1: continuing with the seed {recorded} recorded in {where}")
        return dataclasses.replace(settings, seed=recorded)
    note(f"--seed -1: random seed {settings.seed} (--seed {settings.seed} repeats this run)")
    return settings


def sampling_params(run: RunOptions) -> SamplingParams:
    """The sampler settings the options give (refused out of range with one line: UsageError)."""
    breakers = run.dry_sequence_breaker
    if breakers is None:
        chosen = SamplingParams().dry_sequence_breakers
    else:
        chosen = tuple(option_text(run, b, "--dry-sequence-breaker") for b in breakers if b != "none")
    return SamplingParams(temperature=run.temp, top_k=run.top_k, top_p=run.top_p, min_p=run.min_p,
                          xtc_probability=run.xtc_probability, xtc_threshold=run.xtc_threshold,
                          top_nsigma=run.top_nsigma, dry_multiplier=run.dry_multiplier, dry_base=run.dry_base,
                          dry_allowed_length=run.dry_allowed_length, dry_penalty_last_n=run.dry_penalty_last_n,
                          dry_sequence_breakers=chosen)


def prepare_run(run: RunOptions) -> tuple[ModelPlan, GenerationSettings]:
    """Check every model-independent value (templates, ranges, seed, the pair's name) and build the
    settings, before any model file is looked for or downloaded."""
    if run.draft is not None and run.no_draft:
        raise UsageError("give --draft K or --no-draft, not both")
    if run.ctx_size is not None:
        check_ctx_size(run.ctx_size)
    check_mode(run.concurrency)
    ThreadPlan.from_options(run.threads or 1, run.threads_base, run.threads_aligned)  # checks the counts
    plan = plan_models(ModelChoice(run.base, run.aligned, run.pair, run.chat_template_file,
                                   option_text(run, run.base_template, "--base-template"), run.gpu_layers, run.yes))
    router = get_router(run.router or plan.default_router)
    settings = GenerationSettings(
        router=router,
        gamma=router.default_gamma(plan.default_gamma, plan.default_entropy_gamma) if run.gamma is None else run.gamma,
        sampling=sampling_params(run),
        max_tokens=run.max_tokens,
        stop=tuple(option_text(run, stop, "--stop") for stop in run.stop or ()),
        seed=choose_seed(run.seed),
        draft=DraftPolicy(enabled=not run.no_draft, fixed_k=run.draft),
    )
    return plan, settings


def model_files(spec: PairSpec) -> dict[str, dict[str, Any]]:
    """What identifies the two model files (size and fingerprint), as recorded in output settings."""
    return {"base": model_identity(spec.base_path), "aligned": model_identity(spec.aligned_path)}


def settings_record(settings: GenerationSettings, resolved: ResolvedChoice, n: int,
                    system: str | None = None, *, files: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The run's settings as written into every output record: what ran (the seed drawn for -1,
    the context after the models' cap, the loop that ran for ``n`` samples; ``files``:
    :func:`model_files`, if known)."""
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
        "draft": settings.draft.describe() if settings.draft.applies_to(n) else "off",
        "ctx_size": resolved.ctx_size,
        "base_template": spec.base_template,
        "chat_template": "gguf" if template is None else hashlib.sha256(template.encode()).hexdigest()[:16],
        "system": system,
    }


def open_engine(resolved: ResolvedChoice, run: RunOptions, n_seq: int) -> Engine:
    """Print the memory estimate, refuse a run that cannot fit, then load the pair and make its engine.

    With GPU offload the limit that matters is the GPU's, which this check does not know: it only
    prints the estimate then.
    """
    from ..catalog.hub import baco_cache_dir
    from .models_cmd import check_memory_for_run

    spec = resolved.spec
    ctx_size = resolved.ctx_size or run.ctx_size or DEFAULT_CTX
    offloaded = spec.base_gpu_layers != 0 or spec.aligned_gpu_layers != 0
    check_memory_for_run(spec.base_path, spec.aligned_path, n_cells=kv_cells(ctx_size, n_seq, run.max_tokens),
                         n_seq=n_seq, ignore_limit=run.ignore_memory or offloaded)
    return Engine(ModelPair(spec), ctx_size=ctx_size, threads=run.threads, concurrency=run.concurrency,
                  threads_base=run.threads_base, threads_aligned=run.threads_aligned,
                  choice_cache=ChoiceCache(baco_cache_dir() / "concurrency.json"))
