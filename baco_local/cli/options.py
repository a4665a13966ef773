"""Option definitions shared by the generating commands (gen, chat, sweep).

Each option is declared once here as an ``Annotated`` type; commands use them as parameter
annotations, so names, help texts and defaults never drift apart (README's tables are tested
against them). Flag names follow llama.cpp (``--temp``, ``--top-k``, ``--top-p``, ``--min-p``,
``--xtc-probability``, ``--xtc-threshold``, ``--top-nsigma``, ``--dry-*``,
``-c``, ``-ngl``, ``-t``, ``-p``, ``--n-predict``, ``-s -1``, ``--no-escape``, ``-v``), except that
``-n`` is the number of samples, as in the OpenAI API and NoveltyBench.
"""

from __future__ import annotations

import copy
import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Mapping, Optional, get_args

import typer

from ..engine.routers import DEFAULT_ENTROPY_GAMMA, DEFAULT_GAMMA, DEFAULT_ROUTER, ROUTERS
from ..engine.sampling import SamplingParams
from ..errors import UsageError
from .console import set_verbosity

_DEFAULTS = SamplingParams()
PROMPTS = "Prompts"
MODEL = "Models"
ROUTING = "Routing"
SAMPLING = "Sampling"
RUNTIME = "Runtime"
RAY = "Ray cluster"  # gen --ray
GRID = "Grid"  # sweep's knob lists, in place of the routing options
EVALUATION = "Evaluation"
# The order of the help panels (after typer's own "Options" first).
PANELS = (PROMPTS, MODEL, ROUTING, GRID, SAMPLING, RUNTIME, RAY, EVALUATION)
RANDOM_SEED = -1  # llama.cpp's "-s -1": a random seed, recorded in the output

PromptFileOpt = Annotated[Optional[Path], typer.Option(
    "--prompt-file", "-f", help="Prompts: .txt (one per line) or .jsonl ({\"id\", \"prompt\"}); '-' reads them "
    "from standard input (JSONL when the lines are JSON objects).", rich_help_panel=PROMPTS)]
SystemOpt = Annotated[Optional[str], typer.Option("--system", help="System prompt for every prompt.",
                                                  rich_help_panel=PROMPTS)]
BaseOpt = Annotated[Optional[Path], typer.Option("--base", help="Base (pretrained) model GGUF.",
                                                 rich_help_panel=MODEL)]
AlignedOpt = Annotated[Optional[Path], typer.Option("--aligned", help="Aligned (instruct) model GGUF.",
                                                    rich_help_panel=MODEL)]
PairOpt = Annotated[Optional[str], typer.Option("--pair", help="A pair from models.toml (see `baco models list`).",
                                                rich_help_panel=MODEL)]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Download a pair's missing files without asking.",
                                      rich_help_panel=MODEL)]
ChatTemplateOpt = Annotated[Optional[Path], typer.Option(
    "--chat-template-file", help="Jinja chat template for the aligned model (default: the one in its GGUF).",
    rich_help_panel=PROMPTS)]
BaseTemplateOpt = Annotated[Optional[str], typer.Option(
    "--base-template", help="Plain prompt template for the base model, with {prompt} "
    "(default: the pair's, else 'User: {prompt}\\nAssistant:\\n').", rich_help_panel=PROMPTS)]
NoEscapeOpt = Annotated[bool, typer.Option(
    "--no-escape", help="Take --stop, --system and --base-template literally (by default \\n, \\t, \\\\, \\\", "
    "\\' and \\xNN are replaced, as in llama.cpp).", rich_help_panel=PROMPTS)]

RouterOpt = Annotated[Optional[str], typer.Option(
    "--router", "-r", help=f"Router: {', '.join(ROUTERS)} (default: the pair's, else {DEFAULT_ROUTER}).",
    rich_help_panel=ROUTING)]
GammaOpt = Annotated[Optional[float], typer.Option(
    "--gamma", "-g", help="Router threshold γ: a probability for p/p-punc/p-fc/nudging/random (default: the "
    f"pair's gamma, else {DEFAULT_GAMMA}), nats for h/h-punc (default: the pair's entropy_gamma, else "
    f"{DEFAULT_ENTROPY_GAMMA}).", rich_help_panel=ROUTING)]

TempOpt = Annotated[float, typer.Option("--temp", help="Temperature (0 = greedy).", rich_help_panel=SAMPLING)]
TopKOpt = Annotated[int, typer.Option("--top-k", help="Top-k (0 = off).", rich_help_panel=SAMPLING)]
TopPOpt = Annotated[float, typer.Option("--top-p", help="Top-p (1 = off).", rich_help_panel=SAMPLING)]
MinPOpt = Annotated[float, typer.Option("--min-p", help="Min-p (0 = off).", rich_help_panel=SAMPLING)]
XtcProbabilityOpt = Annotated[float, typer.Option(
    "--xtc-probability", help="XTC: chance per token of removing all but the least likely of the tokens at least "
    "--xtc-threshold likely (0 = off).", rich_help_panel=SAMPLING)]
XtcThresholdOpt = Annotated[float, typer.Option(
    "--xtc-threshold", help="XTC's probability threshold (above 0.5 XTC never acts).", rich_help_panel=SAMPLING)]
TopNSigmaOpt = Annotated[float, typer.Option(
    "--top-nsigma", help="Top-n-sigma: keep logits within n standard deviations of the largest (-1 = off; any "
    "value <= 0 is off).", rich_help_panel=SAMPLING)]
DryMultiplierOpt = Annotated[float, typer.Option(
    "--dry-multiplier", help="DRY: penalty on tokens that continue a repeat of earlier text (0 = off).",
    rich_help_panel=SAMPLING)]
DryBaseOpt = Annotated[float, typer.Option("--dry-base", help="DRY's penalty base, per token of repeat beyond "
                                           "--dry-allowed-length (>= 1).", rich_help_panel=SAMPLING)]
DryAllowedLengthOpt = Annotated[int, typer.Option("--dry-allowed-length", help="DRY: repeats this long go "
                                                  "unpenalised.", rich_help_panel=SAMPLING)]
DryPenaltyLastNOpt = Annotated[int, typer.Option("--dry-penalty-last-n", help="DRY: how many of the last tokens "
                                                 "(prompt included) to scan (-1 = the whole context, 0 = off).",
                                                 rich_help_panel=SAMPLING)]
DrySequenceBreakerOpt = Annotated[Optional[list[str]], typer.Option(
    "--dry-sequence-breaker", help="DRY sequence breaker (repeatable; replaces the defaults \\n : \" *; 'none' "
    "for no breakers; escapes as for --stop).", metavar="<str>", rich_help_panel=SAMPLING)]
SeedOpt = Annotated[int, typer.Option("--seed", "-s", help="Random seed (-1 = random, recorded in the output); "
                                      "sample i of a prompt uses a hash of seed, prompt id and i.", rich_help_panel=SAMPLING)]
MaxTokensOpt = Annotated[int, typer.Option("--max-tokens", "--n-predict", help="Most tokens generated per sample.",
                                           rich_help_panel=SAMPLING)]
StopOpt = Annotated[Optional[list[str]], typer.Option("--stop", help="Stop string (repeatable; \\n and other "
                                                      "escapes as --no-escape says).", metavar="<str>",
                                                      rich_help_panel=SAMPLING)]

DraftOpt = Annotated[Optional[int], typer.Option(
    "--draft", help="Fixed draft length K for draft-and-verify, one prompt at a time (default: adaptive "
    "1..16 for a lone sequence, else the step loop).", rich_help_panel=RUNTIME)]
NoDraftOpt = Annotated[bool, typer.Option(
    "--no-draft", help="Use the plain step-by-step loop (same output, slower).", rich_help_panel=RUNTIME)]
IgnoreMemoryOpt = Annotated[bool, typer.Option(
    "--ignore-memory", help="Start even if the estimated memory exceeds what is available.", rich_help_panel=RUNTIME)]
CtxSizeOpt = Annotated[Optional[int], typer.Option(
    "--ctx-size", "-c", help="Context window per sample (prompt + output; default: 4096, or what the models were "
    "trained for if less).", show_default=False, rich_help_panel=RUNTIME)]
GpuLayersOpt = Annotated[int, typer.Option("--gpu-layers", "-ngl", help="Layers to offload to the GPU "
                                           "per model (-1 = all; needs a Metal/CUDA build).", rich_help_panel=RUNTIME)]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", "-t", help="CPU threads (default: all, at most 8).",
                                                   rich_help_panel=RUNTIME)]
RunThreadsOpt = Annotated[Optional[str], typer.Option(
    "--threads", "-t", metavar="N|A,B", help="CPU threads (default: all, at most 8); A,B gives the base model A "
    "and the aligned model B (as --threads-base A --threads-aligned B).", show_default=False,
    rich_help_panel=RUNTIME)]
ConcurrencyOpt = Annotated[str, typer.Option(
    "--concurrency", help="Decode the two models of a step at the same time: on, off, or auto (measure both "
    "once per model files and threads, remembered in baco's cache folder). Never changes the tokens.",
    rich_help_panel=RUNTIME)]
ThreadsBaseOpt = Annotated[Optional[int], typer.Option(
    "--threads-base", help="CPU threads of the base model's context (default: --threads one at a time, half "
    "of it when both decode at once).", show_default=False, rich_help_panel=RUNTIME)]
ThreadsAlignedOpt = Annotated[Optional[int], typer.Option(
    "--threads-aligned", help="CPU threads of the aligned model's context (default: as --threads-base).",
    show_default=False, rich_help_panel=RUNTIME)]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show llama.cpp's own log on stderr.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No memory estimate, notes or progress bars on stderr.")]

DEFAULT_TEMP = _DEFAULTS.temperature
DEFAULT_TOP_K = _DEFAULTS.top_k
DEFAULT_TOP_P = _DEFAULTS.top_p
DEFAULT_MIN_P = _DEFAULTS.min_p
DEFAULT_XTC_THRESHOLD = _DEFAULTS.xtc_threshold
DEFAULT_CTX = 4096


@dataclass(frozen=True)
class RunOptions:
    """The options every generating command shares, bundled by :func:`with_run_options`."""

    base: Path | None
    aligned: Path | None
    pair: str | None
    yes: bool
    chat_template_file: Path | None
    base_template: str | None
    no_escape: bool
    temp: float
    top_k: int
    top_p: float
    min_p: float
    seed: int
    max_tokens: int
    stop: list[str] | None
    draft: int | None
    no_draft: bool
    ctx_size: int | None  # None: DEFAULT_CTX, capped by the models without a word
    gpu_layers: int
    threads: int | None
    ignore_memory: bool
    verbose: bool
    quiet: bool
    concurrency: str = "auto"
    threads_base: int | None = None
    threads_aligned: int | None = None
    router: str | None = None  # not offered by sweep, which sweeps routers itself
    gamma: float | None = None
    xtc_probability: float = _DEFAULTS.xtc_probability
    xtc_threshold: float = _DEFAULTS.xtc_threshold
    top_nsigma: float = _DEFAULTS.top_nsigma
    dry_multiplier: float = _DEFAULTS.dry_multiplier
    dry_base: float = _DEFAULTS.dry_base
    dry_allowed_length: int = _DEFAULTS.dry_allowed_length
    dry_penalty_last_n: int = _DEFAULTS.dry_penalty_last_n
    dry_sequence_breaker: list[str] | None = None  # None: llama.cpp's defaults


_MODEL_OPTIONS = [("base", BaseOpt, None), ("aligned", AlignedOpt, None), ("pair", PairOpt, None),
                  ("yes", YesOpt, False), ("chat_template_file", ChatTemplateOpt, None),
                  ("base_template", BaseTemplateOpt, None), ("no_escape", NoEscapeOpt, False)]
_ROUTING_OPTIONS = [("router", RouterOpt, None), ("gamma", GammaOpt, None)]
_SAMPLING_OPTIONS = [("temp", TempOpt, DEFAULT_TEMP), ("top_k", TopKOpt, DEFAULT_TOP_K), ("top_p", TopPOpt, DEFAULT_TOP_P),
                     ("min_p", MinPOpt, DEFAULT_MIN_P), ("xtc_probability", XtcProbabilityOpt, _DEFAULTS.xtc_probability),
                     ("xtc_threshold", XtcThresholdOpt, _DEFAULTS.xtc_threshold),
                     ("top_nsigma", TopNSigmaOpt, _DEFAULTS.top_nsigma),
                     ("dry_multiplier", DryMultiplierOpt, _DEFAULTS.dry_multiplier),
                     ("dry_base", DryBaseOpt, _DEFAULTS.dry_base),
                     ("dry_allowed_length", DryAllowedLengthOpt, _DEFAULTS.dry_allowed_length),
                     ("dry_penalty_last_n", DryPenaltyLastNOpt, _DEFAULTS.dry_penalty_last_n),
                     ("dry_sequence_breaker", DrySequenceBreakerOpt, None), ("seed", SeedOpt, 0), ("max_tokens", MaxTokensOpt, 256),
                     ("stop", StopOpt, None)]
_RUNTIME_OPTIONS = [("draft", DraftOpt, None), ("no_draft", NoDraftOpt, False), ("ctx_size", CtxSizeOpt, None),
                    ("gpu_layers", GpuLayersOpt, 0), ("threads", RunThreadsOpt, None),
                    ("threads_base", ThreadsBaseOpt, None), ("threads_aligned", ThreadsAlignedOpt, None),
                    ("concurrency", ConcurrencyOpt, "auto"),
                    ("ignore_memory", IgnoreMemoryOpt, False)]
_OUTPUT_OPTIONS = [("verbose", VerboseOpt, False), ("quiet", QuietOpt, False)]


def split_threads(values: dict[str, Any]) -> dict[str, Any]:
    """``-t N`` as a number; ``-t A,B`` as ``--threads-base A --threads-aligned B`` (A + B threads in all)."""
    text = values.get("threads")
    if text is None:
        return values
    parts = text.split(",")
    if not all(part.strip().isdigit() for part in parts) or len(parts) > 2:
        raise UsageError(f"-t/--threads takes N or A,B (base and aligned threads), got {text!r}")
    numbers = [int(part) for part in parts]
    if min(numbers) < 1:
        raise UsageError(f"-t/--threads needs at least 1 thread (for each model with A,B), got {text!r}")
    if len(numbers) == 1:
        return {**values, "threads": numbers[0]}
    if values.get("threads_base") is not None or values.get("threads_aligned") is not None:
        raise UsageError("give -t A,B or --threads-base/--threads-aligned, not both")
    return {**values, "threads": sum(numbers), "threads_base": numbers[0], "threads_aligned": numbers[1]}


def _panel_rank(parameter: inspect.Parameter) -> int:
    """Where a parameter's help panel comes in :data:`PANELS` (-1: typer's default panel)."""
    extras = get_args(parameter.annotation)[1:]
    panel = next((getattr(e, "rich_help_panel", None) for e in extras if hasattr(e, "rich_help_panel")), None)
    return PANELS.index(panel) if panel in PANELS else -1


def with_help(annotation: Any, help_text: str) -> Any:
    """The same option with another help text (for a command where the shared one does not apply)."""
    value_type, info = get_args(annotation)
    info = copy.copy(info)
    info.help = help_text
    return Annotated[value_type, info]


def with_run_options(*, routing: bool = True, max_tokens: int = 256, seed: int = 0,
                     helps: Mapping[str, str] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a typer command the shared model, routing, sampling, runtime and output options.

    The command declares its own options plus a ``run: RunOptions`` parameter; the decorated
    command's signature (what typer reads) has the command's own options and the shared ones,
    grouped by help panel in the order of :data:`PANELS`, and calls the command with the shared
    ones bundled into ``run`` (after applying -v/-q). ``max_tokens`` and ``seed`` are the command's
    defaults of those options; ``helps`` replaces the help text of shared options by name, where the
    shared one does not apply.
    """
    shared = [(name, with_help(annotation, helps[name]) if helps and name in helps else annotation, default)
              for name, annotation, default in [*_MODEL_OPTIONS, *(_ROUTING_OPTIONS if routing else []),
                                                *_SAMPLING_OPTIONS, *_RUNTIME_OPTIONS, *_OUTPUT_OPTIONS]]
    defaults = {"max_tokens": max_tokens, "seed": seed}

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for name, p in signature.parameters.items()
               if name != "run"]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                   default=defaults.get(name, default)) for name, annotation, default in shared]
        ordered = sorted([*own, *added], key=_panel_rank)  # typer shows panels in order of first use

        @functools.wraps(command)
        def wrapper(**values: Any) -> Any:
            run = RunOptions(**split_threads({name: values.pop(name) for name, _, _ in shared}))
            set_verbosity(verbose=run.verbose, quiet=run.quiet)
            return command(run=run, **values)

        wrapper.__signature__ = signature.replace(parameters=ordered)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**{p.name: p.annotation for p in own}, **{n: a for n, a, _ in shared}}
        return wrapper

    return decorate
