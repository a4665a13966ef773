"""What a running server is configured with: its limits, its request defaults, its security."""

from __future__ import annotations

from dataclasses import dataclass

from ..engine.routers import DEFAULT_ENTROPY_GAMMA, Router, get_router
from ..engine.sampling import SamplingParams

RANDOM_SEED = -1  # a request without a seed gets a fresh random one (reported back in its response)


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask and how many may wait."""

    parallel: int = 4  # sequences decoded at once (every sample of every request counts)
    queue: int = 64  # requests waiting for a slot; beyond that, 503 at once
    max_n: int = 4  # samples per request (at most ``parallel``)
    max_tokens: int = 4096  # new tokens per sample
    max_body: int = 1 << 20  # request body bytes; beyond that, 413


@dataclass(frozen=True)
class Defaults:
    """What a request gets for a field it leaves out (the command line's router, γ, sampling, …)."""

    router: str
    gamma: float | None  # None: the router's own default (a probability or nats)
    probability_gamma: float
    entropy_gamma: float = DEFAULT_ENTROPY_GAMMA
    sampling: SamplingParams = SamplingParams()
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int = RANDOM_SEED

    def gamma_for(self, router: Router) -> float:
        """The γ a request with this router and no γ of its own runs at."""
        if self.gamma is not None and router.name == get_router(self.router).name:
            return self.gamma
        return router.default_gamma(self.probability_gamma, self.entropy_gamma)


@dataclass(frozen=True)
class ServeConfig:
    """Everything the app needs besides the engine."""

    model_id: str
    base: str
    aligned: str
    defaults: Defaults
    limits: Limits = Limits()
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    ctx_size: int = 4096
    n_vocab: int = 0  # for the entropy routers' γ range (ln of the vocabulary size); 0 = unknown
