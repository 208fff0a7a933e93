"""Map a network client's exception to a typed :class:`ProviderError`, never leaking secrets.

The classes come from what the clients really raise (surveyed against the test servers with
``ChatOpenAI`` and ``ChatGoogleGenerativeAI``, sync and async, stream and not):

============================  ===================================================================
kind                          raised as (outermost first; the cause chain is searched too)
============================  ===================================================================
``rate_limit`` (429)          ``langchain_core`` ``ModelRateLimitError`` ← ``openai.RateLimitError``
                              / ``google.genai.errors.ClientError``
``server`` (5xx)              ``ModelAPIError`` ← ``openai.InternalServerError`` / ``ServerError``
``auth`` (401, 403)           ``ModelAuthenticationError``, ``ModelPermissionDeniedError``
``timeout``                   ``ModelTimeoutError`` ← ``openai.APITimeoutError``;
                              ``httpx(2).TimeoutException``; ``TimeoutError`` (aiohttp)
``connection``                ``ModelConnectionError`` ← ``openai.APIConnectionError``;
                              ``httpx(2).TransportError`` (refused, disconnected);
                              ``aiohttp.ClientConnectionError``; ``ConnectionError``
``malformed``                 ``json.JSONDecodeError``; ``google.genai.errors.UnknownApiResponseError``;
                              ``openai.APIResponseValidationError``; langchain's
                              "No generation chunks were returned" on a stream that was not one
============================  ===================================================================

Anything else returns ``None`` here; the caller then records it with :func:`unexpected_error`
(``bad_request`` for a ValueError/TypeError such as ``contents are required.``, else ``other``):
an exception from a client never aborts the cascade. Optional client libraries are looked up in ``sys.modules`` only: a library that was never
imported cannot have raised.

Example:
    >>> err = translate_http_error("openai", "gpt-4", exc, secrets=[key])
    >>> err.kind, err.status_code, err.retry_after_s
    ('rate_limit', 429, 2.0)
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import re
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
from langchain_core import exceptions as lc
from pydantic import SecretStr

from router.errors import ProviderError
from router.policy.issues import mask_urls

_SECRETISH = re.compile(r"(key=|api[_-]?key[\"']?\s*[:=]\s*[\"']?|Bearer\s+)[^\s\"'&]+", re.IGNORECASE)
_NO_CHUNKS = "No generation chunks were returned"
_MAX_MESSAGE = 500

# (module, class name, kind); kind None: decide by HTTP status. First match wins, so subclasses
# come before their bases (ServerTimeoutError is both a connection error and a TimeoutError;
# ContentTypeError is a ClientResponseError). A provider's own client classes are rows on its
# adapter (``error_classes``, e.g. openai's APITimeoutError before its APIConnectionError), tried first.
_TABLE: tuple[tuple[str, str, str | None], ...] = (
    ("langchain_core.exceptions", "ModelTimeoutError", "timeout"),
    ("langchain_core.exceptions", "ModelRateLimitError", "rate_limit"),
    ("langchain_core.exceptions", "ModelAPIError", "server"),
    ("langchain_core.exceptions", "ModelConnectionError", "connection"),
    ("langchain_core.exceptions", "ModelAuthenticationError", "auth"),
    ("langchain_core.exceptions", "ModelPermissionDeniedError", "auth"),
    ("langchain_core.exceptions", "ContextOverflowError", "bad_request"),
    ("langchain_core.exceptions", "ModelInvalidRequestError", "bad_request"),
    ("langchain_core.exceptions", "ModelNotFoundError", "bad_request"),
)
_TRANSPORT: tuple[tuple[str, str, str | None], ...] = (
    ("httpx", "TimeoutException", "timeout"),
    ("httpx", "HTTPStatusError", None),
    ("httpx", "DecodingError", "malformed"),
    ("httpx", "TransportError", "connection"),
    ("httpx2", "TimeoutException", "timeout"),
    ("httpx2", "HTTPStatusError", None),
    ("httpx2", "DecodingError", "malformed"),
    ("httpx2", "TransportError", "connection"),
    ("aiohttp", "ServerTimeoutError", "timeout"),
    ("aiohttp", "ContentTypeError", "malformed"),
    ("aiohttp", "ClientPayloadError", "malformed"),
    ("aiohttp", "ClientResponseError", None),
    ("aiohttp", "ClientConnectionError", "connection"),
)
_BUILTIN: tuple[tuple[type[BaseException], str], ...] = (
    (json.JSONDecodeError, "malformed"),
    (TimeoutError, "timeout"),
    (asyncio.TimeoutError, "timeout"),  # a distinct class before Python 3.11
    (ConnectionError, "connection"),
)


def scrub(text: str, secrets: Iterable[SecretStr | str | None] = ()) -> str:
    """Remove the given secret values, anything that looks like a credential, and URL passwords
    from ``text``."""
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if value:
            text = text.replace(value, "***")
    return mask_urls(_SECRETISH.sub(r"\1***", text))


_ECHO_ATTRIBUTES = ("body", "details", "response_json")  # parsed reply bodies (openai, google-genai)


def scrub_exception(exc: BaseException, secrets: Iterable[SecretStr | str | None] = ()) -> BaseException:
    """``exc`` and every exception in its chain, scrubbed *in place* (their text arguments,
    ``message`` and notes; the parsed reply bodies they keep are dropped), and returned.

    A chat model's run reports its client's exception to callbacks and tracers as it is (LangChain
    calls ``on_llm_error(exc)`` before the router sees it), so the adapters' models scrub it
    first; the class, status and headers stay, so it is translated as before.

    Example:
        >>> str(scrub_exception(ValueError("bad key sk-123"), ["sk-123"]))
        'bad key ***'
    """
    secrets = list(secrets)
    for item in _chain(exc):
        item.args = tuple(scrub(a, secrets) if isinstance(a, str) else a for a in item.args)
        if isinstance(getattr(item, "message", None), str):
            item.message = scrub(item.message, secrets)  # type: ignore[attr-defined]
        if getattr(item, "response", None) is not None:
            with contextlib.suppress(AttributeError):
                item.response = _scrubbed_response(item.response, secrets)  # type: ignore[attr-defined]
        for name in _ECHO_ATTRIBUTES:
            if getattr(item, name, None) is not None:
                with contextlib.suppress(AttributeError):  # a read-only property: not in its text
                    setattr(item, name, None)
        notes = getattr(item, "__notes__", None)
        if isinstance(notes, list):
            item.__notes__ = [scrub(n, secrets) if isinstance(n, str) else n for n in notes]
    return exc


def _scrubbed_response(response: Any, secrets: list[SecretStr | str | None]) -> httpx.Response | None:
    """A stand-in for a failed reply (LangChain puts an error's ``response`` body and headers in the
    run's output): its status and headers, and its body as text, each scrubbed; no request."""
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    if not isinstance(status, int):
        return None
    headers = {str(k): scrub(str(v), secrets) for k, v in (getattr(response, "headers", None) or {}).items()}
    try:
        body = response.text if isinstance(response, httpx.Response) else ""
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        body = ""
    headers.pop("content-length", None)
    headers.pop("content-encoding", None)  # the stand-in's body is plain text
    return httpx.Response(status, headers=headers, content=scrub(body, secrets).encode())


def kind_for_status(status: int) -> str:
    if status == 429:
        return "rate_limit"
    if status == 408:
        return "timeout"
    if status >= 500:
        return "server"
    if status in (401, 403):
        return "auth"
    return "bad_request"


Row = tuple[str, str, "str | None"]


def translate_http_error(provider: str, model: str, exc: BaseException, *,
                         secrets: Iterable[SecretStr | str | None] = (),
                         rows: Iterable[Row] = ()) -> ProviderError | None:
    """A :class:`ProviderError` for a provider failure; ``None`` when ``exc`` is not one.
    ``rows``: the provider's own client exception classes (its adapter's ``error_classes``)."""
    kind = classify(exc, rows)
    if kind is None:
        return None
    status = status_code(exc)
    if kind == "http":
        if status is None:
            return None
        kind = kind_for_status(status)
    message = scrub(str(exc) or type(exc).__name__, secrets)
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "..."
    # The client exception is summarised (its class), never chained: it may hold what a server
    # echoed back (see router.errors._Unchained).
    return ProviderError(message, provider=provider, model=model, kind=kind, status_code=status,
                         retry_after_s=retry_after_s(exc) if kind == "rate_limit" or status in (503, 529) else None,
                         client_exception=f"{type(exc).__module__}.{type(exc).__qualname__}")


def classify(exc: BaseException, rows: Iterable[Row] = ()) -> str | None:
    """The failure kind of ``exc`` (``"http"``: decide by status code), or None. ``rows`` (a
    provider's own classes) are tried after LangChain's and before the transports'."""
    for module_name, class_name, kind in (*_TABLE, *rows, *_TRANSPORT):
        module = lc if module_name == "langchain_core.exceptions" else sys.modules.get(module_name)
        cls = getattr(module, class_name, None) if module is not None else None
        if isinstance(cls, type) and isinstance(exc, cls):
            return kind or "http"
    for cls, kind in _BUILTIN:
        if isinstance(exc, cls):
            return kind
    if type(exc) is ValueError and str(exc) == _NO_CHUNKS:
        return "malformed"  # a streaming request answered with something that is not a stream
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def status_code(exc: BaseException) -> int | None:
    """The HTTP error status (4xx, 5xx) of the failed reply, from ``exc`` or its causes."""
    for item in _chain(exc):
        for value in (getattr(item, "status_code", None), getattr(item, "code", None),
                      getattr(item, "status", None),
                      getattr(getattr(item, "response", None), "status_code", None)):
            if isinstance(value, int) and 400 <= value <= 599:
                return value
    return None


def _headers(exc: BaseException) -> Iterator[Any]:
    for item in _chain(exc):
        for owner in (getattr(item, "response", None), item):
            headers = getattr(owner, "headers", None)
            if headers is not None and hasattr(headers, "get"):
                yield headers


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds from the reply's ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms``."""
    for headers in _headers(exc):
        millis = headers.get("retry-after-ms")
        if millis:
            try:
                return float(millis) / 1000
            except ValueError:
                pass  # not a number: try the standard header
        value = headers.get("retry-after")
        if not value:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            pass  # not seconds: an HTTP date
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            continue  # neither: ignore the header
    return None


def unexpected_error(provider: str, model: str, exc: BaseException, *,
                     secrets: Iterable[SecretStr | str | None] = ()) -> ProviderError:
    """A typed error for an exception a client raised that :func:`translate_http_error` does
    not know (``ValueError: contents are required.``, ``UnicodeEncodeError``...): ``bad_request``
    for a ValueError/TypeError (the client refused the input), ``other`` otherwise.

    Example:
        >>> unexpected_error("google_genai", "gemini-2.0-flash", ValueError("contents are required.")).kind
        'bad_request'
    """
    kind = "bad_request" if isinstance(exc, (ValueError, TypeError)) else "other"
    message = scrub(f"{type(exc).__name__}: {exc}", secrets)
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "..."
    return ProviderError(message, provider=provider, model=model, kind=kind,
                         client_exception=f"{type(exc).__module__}.{type(exc).__qualname__}")
