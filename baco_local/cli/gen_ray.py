"""``baco gen --ray ADDRESS``: the prompts on a Ray cluster (Ray Data), the records appended on the driver.

The driver reads the prompt file, drops the ids already in the output (resume, before
``map_batches``), and hands the rest to :func:`~baco_local.runs.ray_gen.map_rows`: a pool of
:class:`GenWorker` actors, each of which loads the pair once on its node and runs the
multi-prompt scheduler (as ``gen --parallel`` does) over its batches. Each record comes back to
the driver and is appended there as it arrives, so the output is one file, written only by the
driver, with the same records as ``gen --parallel P`` on one machine, and an interrupted run
loses nothing but the batches in flight.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Callable

from ..engine.prompts import Message
from ..engine.settings import GenerationSettings
from ..errors import BacoError
from ..models.model_identity import model_identity
from ..runs.prompt_file import PromptItem, id_key
from ..runs.ray_gen import NodeError, PoolShape, connect, map_rows, node_name
from ..runs.records import prompt_record
from .gen_parallel import open_scheduler, run_parallel
from .options import RunOptions
from .setup import ResolvedChoice


@dataclasses.dataclass(frozen=True)
class RayJob:
    """What every actor needs to generate its prompts exactly as the driver would."""

    resolved: ResolvedChoice
    run: RunOptions
    settings: GenerationSettings
    n: int
    parallel: int
    system: str | None
    record_settings: dict[str, Any]


def node_files(job: RayJob) -> ResolvedChoice:
    """The pair's files on this node: ``--pair`` is resolved from this node's cache (no download),
    paths must exist here (a shared filesystem); both must be the files the driver recorded."""
    spec, node = job.resolved.spec, node_name()
    if job.run.pair is not None:
        from ..catalog.hub import resolve_pair

        try:
            found = resolve_pair(job.run.pair, allow_download=False, progress=False)
        except BacoError as exc:
            raise NodeError(f"node {node}: {exc} (on that node)") from None
        spec = dataclasses.replace(spec, base_path=found.base_path, aligned_path=found.aligned_path)
    expected = job.record_settings["model_files"]
    for side, path in (("base", spec.base_path), ("aligned", spec.aligned_path)):
        if not path.is_file():
            fetch = (f"run `baco models pull {job.run.pair}` there" if job.run.pair else
                     f"copy it there (same path) or put the models on a filesystem every node shares")
            raise NodeError(f"node {node}: the {side} model file {path} is not there; {fetch}")
        if model_identity(path) != expected[side]:
            raise NodeError(f"node {node}: the {side} model file {path} is not the driver's (other size or "
                            "content); give every node the same files")
    return dataclasses.replace(job.resolved, spec=spec)


class GenWorker:
    """One Ray actor: the pair loaded once, the scheduler run over each batch of prompts."""

    def __init__(self, job: RayJob) -> None:
        self.job = job
        try:
            self.scheduler = open_scheduler(node_files(job), job.run, job.parallel)
        except BacoError as exc:
            raise NodeError(f"node {node_name()}: {exc}") from None
        self.prefix = [Message("system", job.system)] if job.system else []

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        """Generate every prompt of the batch; one output row (key, record line, tokens) per prompt."""
        items = [PromptItem(json.loads(raw), str(prompt)) for raw, prompt in zip(batch["id"], batch["prompt"])]
        out: dict[str, list[Any]] = {"key": [], "line": [], "tokens": []}

        def write(item: PromptItem, samples: list) -> None:
            ran = {**self.job.record_settings, "concurrency": self.scheduler.concurrency.record()}  # never changes tokens
            record = prompt_record(item, self.job.record_settings["model"], samples, ran)
            out["key"].append(id_key(item.id))
            out["line"].append(json.dumps(record, ensure_ascii=False))
            out["tokens"].append(sum(len(s.tokens) for s in samples))

        try:
            run_parallel(self.scheduler, items, self.job.n, self.job.settings, self.prefix, write,
                         lambda: None, lambda: None)
        except BacoError as exc:
            raise NodeError(f"node {node_name()}: {exc}") from None
        return out


def generate_on_ray(address: str, shape: PoolShape, job: RayJob, todo: list[PromptItem],
                    write: Callable[[dict[str, Any]], None], on_prompt: Callable[[int], None]) -> None:
    """Run ``todo`` on the cluster; ``write`` gets each record as it arrives, ``on_prompt`` its token count."""
    shape.check()
    threads = job.run.threads or max(1, math.floor(shape.cpus))
    job = dataclasses.replace(job, run=dataclasses.replace(job.run, threads=threads))
    rows = [{"key": id_key(item.id), "id": json.dumps(item.id), "prompt": item.prompt} for item in todo]
    with connect(address, verbose=job.run.verbose) as ray:
        for row in map_rows(ray, rows, GenWorker, {"job": job}, shape):
            write(json.loads(row["line"]))
            on_prompt(int(row["tokens"]))
