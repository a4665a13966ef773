"""The engine thread, and the way its events reach the event loop.

One thread of its own loads the pair and then runs :meth:`Scheduler.serve_forever`; the asyncio
loop never decodes. A request's events arrive on that thread and cross to the loop with
``loop.call_soon_threadsafe`` into the request's own :class:`asyncio.Queue`.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Callable

from ..engine.scheduler import Event, Request, RequestFailed, RequestHandle, SampleFinished, Scheduler
from .errors import unavailable

LOADING, READY, FAILED, CLOSING = "loading", "ready", "failed", "closing"


class Submission:
    """One request in flight: its handle, and its events as the loop sees them."""

    def __init__(self, engine: "EngineThread", request: Request, loop: asyncio.AbstractEventLoop) -> None:
        self.engine, self.request, self.loop = engine, request, loop
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.started = False  # a first event came (it left the waiting queue)
        self.finished = 0  # samples ended, as the loop has seen them
        self.failed = False
        self.handle: RequestHandle | None = None
        self._ended = 0  # samples ended, as the engine thread has seen them

    @property
    def done(self) -> bool:
        return self.failed or self.finished >= self.request.n

    def on_event(self, event: Event) -> None:
        """On the engine thread: count the event and hand it to the loop."""
        if not self.started:
            self.started = True
            self.engine.left_queue()
        self.engine.saw_live(self.engine.scheduler.live_sequences if self.engine.scheduler else 0)
        if isinstance(event, SampleFinished):
            self._ended += 1
            self.engine.completion_tokens += len(event.sample.tokens)
        if isinstance(event, RequestFailed) or self._ended >= self.request.n:
            self.engine.forget(self)
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    async def next(self) -> Event:
        """The next event."""
        return self._count(await self.queue.get())

    async def next_batch(self) -> list[Event]:
        """The next event and every other one already waiting (a stream sends them as one chunk per choice)."""
        events = [await self.next()]
        while not self.queue.empty():
            events.append(self._count(self.queue.get_nowait()))
        return events

    def _count(self, event: Event) -> Event:
        if isinstance(event, SampleFinished):
            self.finished += 1
        elif isinstance(event, RequestFailed):
            self.failed = True
        return event

    def cancel(self) -> None:
        """Stop this request (thread-safe; its sequences are freed at the next step)."""
        if self.handle is not None and not self.done:
            self.handle.cancel()


class EngineThread:
    """Loads the pair, then serves the scheduler on a thread of its own; counts waiting requests."""

    def __init__(self, open_scheduler: Callable[[], Scheduler], queue_limit: int) -> None:
        self._open = open_scheduler
        self.queue_limit = queue_limit
        self.state = LOADING
        self.failure: BaseException | None = None
        self.scheduler: Scheduler | None = None
        self.ready = threading.Event()  # set when loaded (or failed)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._waiting = 0
        self._in_flight: set[Submission] = set()
        self.requests = 0
        self.completion_tokens = 0
        self.peak_live = 0  # most sequences decoded together so far
        self._thread = threading.Thread(target=self._run, name="baco-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self.scheduler = self._open()
        except BaseException as exc:  # noqa: BLE001 - reported by the runner, the server then stops
            self.failure, self.state = exc, FAILED
            self.ready.set()
            return
        self.state = READY
        self.ready.set()
        self.scheduler.serve_forever(self._stop)

    # --- the event loop's side ---------------------------------------------------------------

    def submit(self, request: Request) -> Submission:
        """Queue a request, or refuse it with 503 (loading, closing, or the queue is full)."""
        if self.state == LOADING:
            raise unavailable("the models are still loading", "loading")
        if self.state == FAILED:
            raise unavailable(f"the models failed to load: {self.failure}", "load_failed", retry_after=60)
        if self.state != READY or self.scheduler is None:
            raise unavailable("the server is shutting down", "shutting_down")
        submission = Submission(self, request, asyncio.get_running_loop())
        with self._lock:
            if self._waiting >= self.queue_limit:
                raise unavailable(f"the queue is full ({self.queue_limit} requests waiting, --queue); "
                                  "retry shortly", "queue_full")
            self._waiting += 1
            self._in_flight.add(submission)
            self.requests += 1
        submission.handle = self.scheduler.submit(request, submission.on_event)
        if self.state != READY:  # shutdown began while it was being submitted
            submission.handle.cancel()
        return submission

    @property
    def waiting(self) -> int:
        """Requests submitted that have not started."""
        return self._waiting

    def cancel_all(self) -> None:
        """Refuse new requests and end every one in flight (shutdown); their streams end normally."""
        if self.state == READY:
            self.state = CLOSING
        with self._lock:
            in_flight = list(self._in_flight)
        for submission in in_flight:
            if submission.handle is not None:
                submission.handle.cancel()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the engine thread and free the contexts and the models."""
        self.cancel_all()
        self._stop.set()
        if self.scheduler is not None:
            self.scheduler.wake()
        self._thread.join(timeout)
        if self.scheduler is not None and not self._thread.is_alive():
            self.scheduler.close()
            self.scheduler.pair.close()

    # --- the engine thread's side ------------------------------------------------------------

    def left_queue(self) -> None:
        with self._lock:
            self._waiting -= 1

    def saw_live(self, live: int) -> None:
        self.peak_live = max(self.peak_live, live)

    def forget(self, submission: Submission) -> None:
        with self._lock:
            self._in_flight.discard(submission)

