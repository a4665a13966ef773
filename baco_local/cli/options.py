"""Option definitions shared by the generating commands (gen, chat, sweep).

Each option is declared once here as an ``Annotated`` type; commands use them as parameter
annotations, so names, help texts and defaults never drift apart. Flag names follow llama.cpp
(``--temp``, ``--top-k``, ``--top-p``, ``--min-p``, ``-c``, ``-ngl``, ``-t``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..routers import DEFAULT_GAMMA, DEFAULT_ROUTER, ROUTERS
from ..sampling import SamplingParams

_DEFAULTS = SamplingParams()
MODEL = "Models"
ROUTING = "Routing"
SAMPLING = "Sampling"
RUNTIME = "Runtime"

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
    rich_help_panel=MODEL)]
BaseTemplateOpt = Annotated[Optional[str], typer.Option(
    "--base-template", help="Plain prompt template for the base model, with {prompt} "
    "(default: the pair's, else 'User: {prompt}\\nAssistant:\\n').", rich_help_panel=MODEL)]

RouterOpt = Annotated[Optional[str], typer.Option(
    "--router", "-r", help=f"Router: {', '.join(ROUTERS)} (default: the pair's, else {DEFAULT_ROUTER}).",
    rich_help_panel=ROUTING)]
GammaOpt = Annotated[Optional[float], typer.Option(
    "--gamma", "-g", help="Router threshold γ: a probability for p/p-punc/p-fc/nudging/random, nats for "
    "h/h-punc (default: the pair's, else {DEFAULT_GAMMA}).", rich_help_panel=ROUTING)]

TempOpt = Annotated[float, typer.Option("--temp", help="Temperature (0 = greedy).", rich_help_panel=SAMPLING)]
TopKOpt = Annotated[int, typer.Option("--top-k", help="Top-k (0 = off).", rich_help_panel=SAMPLING)]
TopPOpt = Annotated[float, typer.Option("--top-p", help="Top-p (1 = off).", rich_help_panel=SAMPLING)]
MinPOpt = Annotated[float, typer.Option("--min-p", help="Min-p (0 = off).", rich_help_panel=SAMPLING)]
SeedOpt = Annotated[int, typer.Option("--seed", "-s", help="Random seed; sample i uses seed + i.",
                                      rich_help_panel=SAMPLING)]
MaxTokensOpt = Annotated[int, typer.Option("--max-tokens", help="Most tokens generated per sample.",
                                           rich_help_panel=SAMPLING)]
StopOpt = Annotated[Optional[list[str]], typer.Option("--stop", help="Stop string (repeatable).",
                                                      rich_help_panel=SAMPLING)]

DraftOpt = Annotated[Optional[int], typer.Option(
    "--draft", help="Fixed draft length K for draft-and-verify (default: adaptive 1..16 when -n is 1, "
    "else the step loop).", rich_help_panel=RUNTIME)]
NoDraftOpt = Annotated[bool, typer.Option(
    "--no-draft", help="Use the plain step-by-step loop (same output, slower).", rich_help_panel=RUNTIME)]
IgnoreMemoryOpt = Annotated[bool, typer.Option(
    "--ignore-memory", help="Start even if the estimated memory exceeds what is available.", rich_help_panel=RUNTIME)]
CtxSizeOpt = Annotated[int, typer.Option("--ctx-size", "-c", help="Context window per sample (prompt + output).",
                                         rich_help_panel=RUNTIME)]
GpuLayersOpt = Annotated[int, typer.Option("--gpu-layers", "-ngl", help="Layers to offload to the GPU "
                                           "per model (-1 = all; needs a Metal/CUDA build).", rich_help_panel=RUNTIME)]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", "-t", help="CPU threads (default: all, at most 8).",
                                                   rich_help_panel=RUNTIME)]

DEFAULT_TEMP = _DEFAULTS.temperature
DEFAULT_TOP_K = _DEFAULTS.top_k
DEFAULT_TOP_P = _DEFAULTS.top_p
DEFAULT_MIN_P = _DEFAULTS.min_p
DEFAULT_CTX = 4096
