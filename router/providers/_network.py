"""What the network providers share: credentials and endpoint from the entry or the standard
environment variables, typed errors with secrets scrubbed, no provider-reported cost.

A subclass names its variables and says how to count tokens, build the client and read logprobs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from router.errors import ProviderError
from router.policy.issues import mask_urls
from router.policy.values import is_loopback_url
from router.providers._credentials import api_key, missing_key_reason
from router.providers._http_errors import scrub_exception, translate_http_error, unexpected_error
from router.providers.base import COMMON_FINISH_REASONS, HTTPX_UNSENT, BaseAdapter

if TYPE_CHECKING:
    from router.policy.policy_file import ModelSpec


class NetworkAdapter(BaseAdapter):
    """A provider reached over HTTP with a key from its conventional variable."""

    name: str
    network = True
    unsent_exceptions = HTTPX_UNSENT
    finish_reasons = COMMON_FINISH_REASONS  # OpenAI and Gemini end every complete reply with one
    default_base_url: str = ""  # the provider's own endpoint, when neither the entry nor the variable names one

    def api_key(self, spec: ModelSpec):
        return api_key(spec, self.key_vars[0])

    def unavailable_reason(self, spec: ModelSpec, env_hint: str | None) -> str | None:
        return self.missing_package_reason() or missing_key_reason(spec, self.key_vars[0])

    def translate_error(self, spec: ModelSpec, exc: BaseException) -> ProviderError | None:
        secrets = [self.api_key(spec)]
        error = (translate_http_error(self.name, spec.model or "?", exc, secrets=secrets, rows=self.error_classes)
                 or unexpected_error(self.name, spec.model or "?", exc, secrets=secrets))
        if error.kind == "auth":
            status = error.status_code or "refused"
            error.hint = f"{status} from {self.endpoint(spec)} (check {self.key_var(spec)})"
        return error

    def endpoint(self, spec: ModelSpec) -> str:
        """Where calls go, for messages: scheme, host, port and path only (no user, password
        or query, which may hold a credential)."""
        parts = urlsplit(self.base_url(spec) or self.default_base_url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit((parts.scheme, host + port, parts.path.rstrip("/"), "", ""))


_SCRUBBING: dict[type, type] = {}


def scrubbing(model_class: type[BaseChatModel]) -> type[BaseChatModel]:
    """``model_class`` whose calls scrub a failure before LangChain reports it to callbacks and
    tracers (``on_llm_error`` gets the exception ``_generate``/``_stream`` raised): the model's
    own ``SecretStr`` fields (its key), credential-like text and URL passwords are removed from
    the exception and its chain (:func:`~router.providers._http_errors.scrub_exception`). Same
    name, same fields, same behaviour otherwise.

    Example:
        >>> scrubbing(ChatOpenAI)(model="gpt-4o", api_key="sk-...").invoke("hi")  # a 401 echoing the key
        Traceback (most recent call last):
        openai.AuthenticationError: Error code: 401 - ... Bearer ***
    """
    if model_class in _SCRUBBING:
        return _SCRUBBING[model_class]

    class Scrubbed(model_class):  # type: ignore[valid-type, misc]
        def _secrets(self) -> list[SecretStr]:
            return [value for value in self.__dict__.values() if isinstance(value, SecretStr)]

        def _generate(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return super()._generate(*args, **kwargs)
            except Exception as exc:
                scrub_exception(exc, self._secrets())
                raise

        async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return await super()._agenerate(*args, **kwargs)
            except Exception as exc:
                scrub_exception(exc, self._secrets())
                raise

        def _stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from super()._stream(*args, **kwargs)
            except Exception as exc:
                scrub_exception(exc, self._secrets())
                raise

        async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            try:
                async for chunk in super()._astream(*args, **kwargs):
                    yield chunk
            except Exception as exc:
                scrub_exception(exc, self._secrets())
                raise

    Scrubbed.__name__ = model_class.__name__
    Scrubbed.__qualname__ = model_class.__qualname__
    Scrubbed.__module__ = model_class.__module__
    _SCRUBBING[model_class] = Scrubbed
    return Scrubbed


def split_userinfo(url: str | None) -> tuple[str | None, httpx.BasicAuth | None]:
    """``url`` without its ``user:password@``, and that user-info as the Basic auth httpx would
    have built from it. The client is then built on a URL that holds no password, so none shows
    in the chat model's repr, its traced parameters, the clients' logs or their errors.

    Example:
        >>> split_userinfo("https://me:pw@gw.example/v1")[0]
        'https://gw.example/v1'
    """
    if not url:
        return url, None
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, None
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), httpx.BasicAuth(unquote(user), unquote(password))


class MaskURLPasswords(logging.Filter):
    """Masks URL passwords in a record's text (httpx logs every request's URL at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        masked = mask_urls(text)
        if masked != text:
            record.msg, record.args = masked, None
        return True


_MASK = MaskURLPasswords()
for _name in ("httpx", "httpcore", "openai._base_client", "google_genai._api_client"):
    if _MASK not in logging.getLogger(_name).filters:
        logging.getLogger(_name).addFilter(_MASK)


def http_clients(base_url: str | None, timeout_s: float, auth: Any = None, *,
                 library: Any = httpx) -> dict[str, Any]:
    """The ``http_client``/``http_async_client`` pair a network model is built with: one of its own
    (never a process-wide cached one), so with one model instance per event loop no pooled
    connection outlives its loop.

    For an endpoint on this machine the clients ignore the environment's proxy variables: an
    explicit transport is what turns httpx's environment proxies off (the rest of ``trust_env``,
    the CA bundle variables, still applies). Other endpoints honour ``HTTP(S)_PROXY`` as usual.

    Why the router builds them: left to itself, ChatOpenAI shares one cached client per process,
    and, given the ``httpx.Timeout`` that avoided that cache, builds an ``httpx2`` client that
    rejects it (``TypeError: Invalid timeout``, openai 3 with langchain-openai 1.7). openai 1-3
    all accept an ``httpx`` client. ``library``: the httpx-compatible package the client library
    takes its clients from (``httpx2`` for anthropic 2).

    Example:
        >>> sorted(http_clients("http://127.0.0.1:8080/v1", 10.0))
        ['http_async_client', 'http_client']
    """
    timeout = library.Timeout(timeout_s)
    if is_loopback_url(base_url):
        return {"http_client": library.Client(transport=library.HTTPTransport(), timeout=timeout, auth=auth),
                "http_async_client": library.AsyncClient(transport=library.AsyncHTTPTransport(), timeout=timeout,
                                                         auth=auth)}
    return {"http_client": library.Client(timeout=timeout, auth=auth),
            "http_async_client": library.AsyncClient(timeout=timeout, auth=auth)}
