"""baco-local: Base-Aligned Model Collaboration with two llama.cpp models on your own machine.

The public API::

    from baco_local import PairSpec, ModelPair, Engine, GenerationSettings, get_router, Message

    pair = ModelPair(PairSpec(Path("base.gguf"), Path("aligned.gguf")))
    engine = Engine(pair, ctx_size=2048)
    settings = GenerationSettings(router=get_router("p-punc"), gamma=0.3, max_tokens=200)
    generation = engine.generate([Message("user", "Write a haiku about rain.")], 4, settings)
    for event in generation:          # token events: sample, token id, side ("A"/"B"), text
        ...
    samples = generation.samples      # text, tokens, sources, finish_reason, seed per sample
"""

from .errors import BacoError
from .engine.loop import Engine, Generation, GenerationSettings, Sample, TokenEvent
from .engine.pair import ModelPair, PairSpec
from .engine.prompts import Message
from .engine.routers import ALIGNED, BASE, ROUTERS, Router, get_router
from .engine.sampling import SamplingParams

__all__ = [
    "ALIGNED", "BASE", "BacoError", "Engine", "Generation", "GenerationSettings", "Message", "ModelPair",
    "PairSpec", "ROUTERS", "Router", "Sample", "SamplingParams", "TokenEvent", "get_router",
]
__version__ = "0.1.0"
