"""``baco serve``: an OpenAI-compatible HTTP server on the multi-prompt scheduler.

Modules: :mod:`.config` (limits and defaults), :mod:`.errors` (OpenAI-shaped errors),
:mod:`.schemas` (Pydantic request models), :mod:`.translate` (a request to a scheduler
:class:`~baco_local.engine.scheduler.Request`), :mod:`.bridge` (the engine thread and the events
it hands to the event loop), :mod:`.responses` (response bodies and stream chunks),
:mod:`.middleware` (body limit, API key, CORS), :mod:`.app` (the ASGI app) and :mod:`.runner`
(uvicorn, signals, the ready line).
"""
