"""Running a batch job on a Ray cluster with Ray Data (``baco gen --ray``), without knowing what the job is.

:func:`connect` joins or starts the cluster (``ray`` is imported only here, lazily).
:func:`map_rows` puts rows into a dataset, runs ``map_batches`` with a callable class on a pool of
actors (``compute=ActorPoolStrategy(size=N)``, the spelling of Ray 2.60, where ``concurrency=``
is deprecated), and yields the output rows on the driver as each block arrives. Ray retries a
block whose actor died (and restarts the actor); a row key seen twice (a retried block whose
first try had already delivered output) is yielded once.

A node-side failure that the user can fix is raised in the actor as :class:`NodeError`, whose
message the driver finds again in Ray's exception text and raises as one
:class:`~baco_local.errors.ClusterError` line.
"""

from __future__ import annotations

import logging
import math
import re
import socket
import sys
import warnings
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from ..errors import ClusterError, UsageError

INSTALL_HINT = "pip install 'baco-local[ray]'"
MAX_BLOCKS = 10_000
LOCAL_OBJECT_STORE = 512 * 1024 * 1024
_NODE_ERROR = re.compile(r"NodeError: (.+)")


class NodeError(Exception):
    """Raised on a node for a failure the user can fix; its message names the node."""


def node_name() -> str:
    """This node, for messages: host name and Ray's node address."""
    try:
        import ray

        address = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - only for a message
        address = "?"
    return f"{socket.gethostname()} ({address})"


@dataclass(frozen=True)
class PoolShape:
    """How the rows are spread: actors, resources per actor, rows per batch."""

    actors: int = 1
    cpus: float = 1.0
    gpus: float = 0.0
    batch_size: int = 16

    def check(self) -> None:
        """Refuse counts Ray would refuse later, with the option's name."""
        if self.actors < 1:
            raise UsageError(f"--ray-actors must be at least 1, got {self.actors}")
        if self.cpus <= 0:
            raise UsageError(f"--ray-cpus must be more than 0, got {self.cpus:g}")
        if self.gpus < 0:
            raise UsageError(f"--ray-gpus must be 0 or more, got {self.gpus:g}")
        if self.batch_size < 1:
            raise UsageError(f"--ray-batch-size must be at least 1, got {self.batch_size}")


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is what --ray uses
    except ImportError:
        raise UsageError(f"--ray needs Ray (with Ray Data), which is not installed: {INSTALL_HINT}") from None
    return ray


def check_address(address: str) -> str:
    """``auto``, ``local`` or ``HOST:PORT``; ``ray://`` (Ray Client) and anything else are refused."""
    if address in ("auto", "local"):
        return address
    if address.startswith("ray://"):
        raise UsageError(f"--ray {address}: Ray Data does not run through Ray Client (ray://), so run baco gen on "
                         "a cluster node with --ray auto or --ray HOST:PORT, or submit it as a Ray job: "
                         "ray job submit --address http://HEAD:8265 -- baco gen ... --ray auto")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--ray takes auto, local or HOST:PORT (a cluster's GCS address), got {address!r}")
    try:  # fail in seconds, not after Ray's own minute of retries
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3):
            pass
    except OSError as exc:
        raise ClusterError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
                           "`ray start --head`, or give --ray auto (the running cluster) or --ray local") from None
    return address


@contextmanager
def connect(address: str, *, verbose: bool = False) -> Iterator[Any]:
    """Join the cluster at ``address`` (``local``: start a local instance, stopped at the end); yields ``ray``.

    Ray's own notes go to stderr (and only errors, unless ``verbose``), never to stdout.
    """
    check_address(address)
    ray = _import_ray()
    quiet(verbose)
    kwargs: dict[str, Any] = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR}
    if address == "local":
        kwargs.update(include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE)
    else:
        kwargs["address"] = address
    with redirect_stdout(sys.stderr):  # Ray prints cluster messages to stdout, where records may go
        try:
            ray.init(**kwargs)
        except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError, AuthenticationError...
            raise ClusterError(_connect_message(address, exc)) from None
        try:
            quiet(verbose)
            yield ray
        finally:
            ray.shutdown()


def _connect_message(address: str, exc: Exception) -> str:
    text = " ".join(str(exc).split())
    if "uthentication" in text or "auth token" in text.lower():
        return (f"the Ray cluster at {address} wants its authentication token: set RAY_AUTH_MODE=token "
                "(the token in ~/.ray/auth_token or RAY_AUTH_TOKEN), as Ray's docs say")
    if "Could not find any running Ray instance" in text:
        return "--ray auto found no running Ray cluster (start one with `ray start --head`, or set RAY_ADDRESS)"
    return f"cannot join the Ray cluster at {address}: {text[:300]}"


def quiet(verbose: bool) -> None:
    """Ray's and Ray Data's loggers down to errors (critical ones for Ray Data's own failure dumps),
    and Ray Data's advice warnings off (baco says what applies to its run itself: :func:`idle_actors`)."""
    if verbose:
        return
    logging.getLogger("ray").setLevel(logging.ERROR)
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"ray\.data")


def block_count(rows: int, batch_size: int) -> int:
    """How many blocks (each one actor's batch) ``rows`` prompts make."""
    return max(1, min(MAX_BLOCKS, math.ceil(rows / batch_size)))


def idle_actors(rows: int, shape: PoolShape) -> str:
    """A note when the prompts make fewer batches than there are actors (some would never work); else ""."""
    blocks = block_count(rows, shape.batch_size)
    if rows == 0 or blocks >= shape.actors:
        return ""
    return (f"{rows} prompts make {blocks} batch{'es' if blocks > 1 else ''} of --ray-batch-size {shape.batch_size}: "
            f"only {blocks} of {shape.actors} actors will have work (a smaller --ray-batch-size spreads them)")


def map_rows(ray: Any, rows: Sequence[Mapping[str, Any]], worker: type, worker_kwargs: Mapping[str, Any],
             shape: PoolShape, *, key: str = "key") -> Iterator[dict[str, Any]]:
    """The output rows of ``worker`` (a callable class, one instance per actor) over ``rows``,
    as they arrive, each ``key`` once."""
    from ray.data import ActorPoolStrategy, DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False  # the driver shows its own
    context.print_on_execution_start = False
    dataset = ray.data.from_items(list(rows), override_num_blocks=block_count(len(rows), shape.batch_size))
    resources: dict[str, Any] = {"num_cpus": shape.cpus}
    if shape.gpus:
        resources["num_gpus"] = shape.gpus
    mapped = dataset.map_batches(worker, fn_constructor_kwargs=dict(worker_kwargs), batch_size=shape.batch_size,
                                 compute=ActorPoolStrategy(size=shape.actors, max_tasks_in_flight_per_actor=2),
                                 **resources)
    seen: set[str] = set()
    try:
        for row in mapped.iter_rows():
            if row[key] in seen:
                continue  # a retried block's first try already delivered this row
            seen.add(row[key])
            yield row
    except ray.exceptions.RayError as exc:
        raise ClusterError(_remote_message(exc)) from None
    except Exception as exc:  # noqa: BLE001 - Ray Data wraps failures in its own exceptions
        if "ray" not in type(exc).__module__:
            raise
        raise ClusterError(_remote_message(exc)) from None


def _remote_message(exc: BaseException) -> str:
    """A node's :class:`NodeError` message from Ray's exception text, else Ray's first line."""
    texts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(texts) < 8:
        texts.append(str(current))
        texts.append(str(getattr(current, "error_msg", "")))
        current = current.__cause__ or current.__context__
    for text in texts:
        match = _NODE_ERROR.search(text)
        if match:
            return match.group(1).strip()
    first = next((line.strip() for text in texts for line in text.splitlines() if line.strip()), type(exc).__name__)
    return f"the Ray run failed: {first[:300]}"
