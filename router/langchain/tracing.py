"""Privacy covers tracing: a private request's runs reach no remote tracer.

Under ``privacy`` or ``offline: true`` the prompt and the answer must stay on this machine, and
LangChain tracers are a way out: LangSmith's ``LangChainTracer`` is added to every run when
``LANGSMITH_TRACING=true`` (or ``LANGCHAIN_TRACING_V2``, or inside ``tracing_v2_enabled()``), and
callers or enclosing chains may pass tracers as callbacks. :func:`private_config` returns the
config to run such a request with:

- remote tracers are dropped from its callbacks and from the router's own ``callbacks`` field:
  ``LangChainTracer`` and handlers from known tracing services' packages
  (:data:`REMOTE_TRACER_PACKAGES`), or any handler with a true ``router_remote_tracer``
  attribute; local callbacks (your loggers, usage counters) still run;
- a :class:`RedactedTracer` takes the LangSmith slot. LangChain adds the environment's tracer to
  a run only when no ``LangChainTracer`` is present, so none is added for the request's run or
  any run below it (each model call, each check), sync or async, streaming or not.

The decision record then says ``"tracing": "redacted"`` (in ``effective``) when a tracer was
dropped or environment tracing was on. Runs *above* the router (an enclosing chain's own run,
whose input is your prompt) are traced by that chain's callbacks before the router is called:
run private requests outside traced chains, or turn tracing off for them.

Example:
    >>> config, own = private_config(policy, {"configurable": {"privacy": True}, "callbacks": [tracer]})
    >>> [type(h).__name__ for h in config["callbacks"]]
    ['RedactedTracer']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config
from langchain_core.tracers.base import AsyncBaseTracer, BaseTracer
from langchain_core.tracers.langchain import LangChainTracer

from router.errors import PolicyError
from router.policy.overrides import effective_settings, policy_overrides
from router.policy.policy_file import Policy

REMOTE_TRACER_PACKAGES = frozenset({
    "langsmith", "langfuse", "wandb", "arize", "phoenix", "openinference", "opik", "mlflow",
    "braintrust", "comet_ml", "comet_llm", "langwatch", "agentops", "lunary", "helicone",
    "traceloop", "literalai", "promptlayer", "portkey_ai", "logfire", "weave",
})


class RedactedTracer(LangChainTracer):
    """Holds the LangSmith tracer slot for a private request's runs and records nothing.

    ``replaced`` names what it stands in for (dropped tracers, environment tracing).
    """

    def __init__(self, replaced: Sequence[str] = ()) -> None:
        BaseTracer.__init__(self)  # not LangChainTracer's: no LangSmith client is created
        self.replaced = tuple(replaced)
        self.example_id = None
        self.project_name = None
        self.address = None
        self.client = None  # type: ignore[assignment]
        self.tags = []
        self.latest_run = None
        self.run_has_token_event_map = {}
        self.tracing_metadata = None

    def copy_with_metadata_defaults(self, **_: Any) -> RedactedTracer:
        return self

    def _persist_run(self, run: Any) -> None:
        return None

    def wait_for_futures(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"RedactedTracer(replaced={list(self.replaced)})"


def _ignore(self: Any, *args: Any, **kwargs: Any) -> None:
    return None


# Every callback event is ignored: no run is even built, so nothing can be persisted.
for _name in dir(BaseCallbackHandler):
    if _name.startswith("on_"):
        setattr(RedactedTracer, _name, _ignore)


def _local_tracer_types() -> tuple[type, ...]:
    from langchain_core.tracers.log_stream import LogStreamCallbackHandler
    from langchain_core.tracers.root_listeners import AsyncRootListenersTracer, RootListenersTracer
    from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
    from langchain_core.tracers.stdout import FunctionCallbackHandler

    return (RedactedTracer, FunctionCallbackHandler, LogStreamCallbackHandler, RootListenersTracer,
            AsyncRootListenersTracer, RunCollectorCallbackHandler)


def is_remote_tracer(handler: Any) -> bool:
    """Whether ``handler`` may send runs off this machine, by default deny: ``LangChainTracer``,
    a handler from a tracing service's package (:data:`REMOTE_TRACER_PACKAGES`) or with a true
    ``router_remote_tracer``, and every tracer (``BaseTracer``/``AsyncBaseTracer``) that is not
    one of LangChain's local ones (console, ``astream_log``/``astream_events``, listeners, run
    collector) or marked ``router_local_tracer = True`` (a tracer you wrote that keeps runs here)."""
    if isinstance(handler, _local_tracer_types()) and not isinstance(handler, LangChainTracer):
        return False
    if isinstance(handler, RedactedTracer):
        return False
    if isinstance(handler, LangChainTracer) or getattr(handler, "router_remote_tracer", False) is True:
        return True
    if type(handler).__module__.split(".")[0] in REMOTE_TRACER_PACKAGES:
        return True
    return isinstance(handler, (BaseTracer, AsyncBaseTracer)) and getattr(handler, "router_local_tracer",
                                                                           False) is not True


def honours_suppression(handler: Any) -> bool:
    """Whether ``handler`` records nothing inside :func:`router.langchain.privacy_scope.private_scope`
    (OpenInference's tracers check OpenTelemetry's suppress-instrumentation key on every run)."""
    return type(handler).__module__.startswith("openinference.")


def _environment_tracing() -> bool:
    from langchain_core.tracers.context import tracing_v2_callback_var
    from langsmith.utils import tracing_is_enabled

    return tracing_v2_callback_var.get() is not None or bool(tracing_is_enabled())


def local_only(policy: Policy, config: RunnableConfig) -> bool:
    try:
        overrides = policy_overrides(config.get("configurable") or {})
        settings = effective_settings(policy, metadata=config.get("metadata"), tags=config.get("tags"),
                                      overrides=overrides).settings
    except PolicyError:
        return True  # the request will fail on this error inside its run: trace that run as private too
    return settings.local_only


def private_config(policy: Policy, config: RunnableConfig | None,
                   own_callbacks: Any = None) -> tuple[RunnableConfig, Any]:
    """``config`` for running one request under ``policy``, and the router's ``own_callbacks``
    (its ``callbacks`` field, which LangChain adds to every run of the router): both unchanged
    unless the request is local-only (privacy or offline); then remote tracers are dropped from
    both and a :class:`RedactedTracer` naming them takes the LangSmith slot."""
    config = ensure_config(config)
    if not local_only(policy, config):
        return config, own_callbacks
    replaced = ["environment tracing"] if _environment_tracing() else []
    dropped = sorted({type(h).__name__ for h in handlers_of(config.get("callbacks")) + handlers_of(own_callbacks)
                      if is_remote_tracer(h)})
    redacted = RedactedTracer(replaced + dropped)
    return {**config, "callbacks": _without_remote_tracers(config.get("callbacks"), redacted)}, \
        _without_remote_tracers(own_callbacks, None)


def _without_remote_tracers(callbacks: Any, redacted: RedactedTracer | None) -> Any:
    """``callbacks`` (a list, a manager or None) without remote tracers, plus ``redacted``."""
    if isinstance(callbacks, BaseCallbackManager):
        manager = callbacks.copy()
        manager.handlers = [h for h in manager.handlers if not is_remote_tracer(h)]
        manager.inheritable_handlers = [h for h in manager.inheritable_handlers if not is_remote_tracer(h)]
        if redacted is not None:
            manager.add_handler(redacted, inherit=True)
        return manager
    if callbacks is None and redacted is None:
        return None
    kept = [h for h in callbacks or () if not is_remote_tracer(h)]
    return [*kept, redacted] if redacted is not None else kept


def handlers_of(callbacks: Any) -> list[Any]:
    """The handlers of a config's ``callbacks``: a list, or a manager's own and inheritable ones."""
    if isinstance(callbacks, BaseCallbackManager):
        return [*callbacks.handlers, *callbacks.inheritable_handlers]
    return list(callbacks or ())


def with_environment_tracer(config: RunnableConfig) -> RunnableConfig:
    """``config`` with the tracer environment tracing would add (``tracing_v2_enabled()``'s, or
    LangSmith's for ``LANGSMITH_TRACING=true``) already in its callbacks, so the router holds the
    same instance LangChain traces its run with (:func:`name_answering_model` renames the run
    there; a stream's ``_stream`` has no other way to it). Unchanged when tracing is off or a
    ``LangChainTracer`` (a private request's :class:`RedactedTracer` too) is already present."""
    if not _environment_tracing():
        return config
    callbacks = config.get("callbacks")
    handlers = handlers_of(callbacks)
    if any(isinstance(h, LangChainTracer) for h in handlers):
        return config
    from langchain_core.tracers.context import _get_tracer_kwargs, tracing_v2_callback_var

    tracer = tracing_v2_callback_var.get() or LangChainTracer(**_get_tracer_kwargs())
    if isinstance(callbacks, BaseCallbackManager):
        manager = callbacks.copy()
        manager.add_handler(tracer, inherit=True)
        return {**config, "callbacks": manager}
    return {**config, "callbacks": [*handlers, tracer]}


def tracing_mark(config: Mapping[str, Any] | None) -> str | None:
    """``"redacted"`` when this run's config came from :func:`private_config` and a remote tracer
    was dropped or environment tracing was on; else ``None``."""
    callbacks = (config or {}).get("callbacks")
    handlers = callbacks.handlers if isinstance(callbacks, BaseCallbackManager) else list(callbacks or [])
    for handler in handlers:
        if isinstance(handler, RedactedTracer) and handler.replaced:
            return "redacted"
    return None


def name_answering_model(run_id: Any, model: str | None, *sources: Any) -> None:
    """Set ``ls_model_name`` on the tracers' record of the router's run ``run_id`` to the model
    that answered. LangChain fixes the run's metadata at its start, before the cascade has chosen;
    a tracer's run is still open here and is sent (LangSmith: patched) when the run ends.
    ``sources``: handler lists or callback managers (a stream's ``_stream`` gets no run manager,
    so the request's configured callbacks are searched)."""
    if not model or run_id is None:
        return
    for handler in [h for source in sources for h in handlers_of(source)]:
        run_map = getattr(handler, "run_map", None) if isinstance(handler, BaseTracer) else None
        run = run_map.get(str(run_id)) if run_map is not None else None
        if run is not None:
            metadata = run.extra.setdefault("metadata", {})
            if "ls_model_name" in metadata:
                metadata["ls_model_name"] = model
