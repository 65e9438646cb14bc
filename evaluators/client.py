"""One async client for any OpenAI-compatible endpoint (a vLLM server or the gateway).

Bounded concurrency, retries with exponential backoff on transient failures
(connection errors, timeouts, 429, 5xx), and the response cache in front, so
a rerun repeats nothing that already finished. The endpoint is given with or
without the OpenAI SDK's trailing `/v1`; both name the same server (and the
same cache entries).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import httpx

from evaluators.cache import ResponseCache, request_key
from moeprune.errors import UserError

TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class EndpointError(RuntimeError):
    """A request that failed for good (non-transient status, or retries exhausted).

    `status` is the HTTP status the endpoint answered, None when it never answered.
    """

    def __init__(self, message: str, status: int | None = None, unreachable: bool = False):
        super().__init__(message)
        self.status = status
        self.unreachable = unreachable  # no connection at all: the run stops (an item's failure does not)

    @property
    def context_overflow(self) -> bool:
        """The endpoint refused the prompt as longer than its context (vLLM: HTTP 400 "maximum context length")."""
        return self.status in (400, 413, 422) and CONTEXT_OVERFLOW.search(str(self)) is not None


CONTEXT_OVERFLOW = re.compile(
    r"maximum context length|max_model_len|context length|context window|"
    r"prompt is too long|input is too long|too many tokens",
    re.IGNORECASE,
)


def normalise_endpoint(url: str) -> str:
    """`http://host:port`, `http://host:port/` and `http://host:port/v1[/]` -> `http://host:port`."""
    base = url.strip().rstrip("/")
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    return base


# A cached rejection: the same request to the same endpoint is rejected again
# (e.g. a server without prompt-logprob support), so a rerun need not ask.
REJECTED = "__rejected__"


class EndpointClient:
    """Posts JSON requests to `endpoint` for `model`; use as `async with EndpointClient(...) as c`."""

    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        api_key: str | None = None,
        concurrency: int = 4,
        cache: ResponseCache | None = None,
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 300.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        if concurrency < 1:
            raise UserError(f"concurrency must be at least 1, got {concurrency}", param="concurrency")
        self.endpoint = normalise_endpoint(endpoint)
        if not self.endpoint.startswith(("http://", "https://")):
            raise UserError(f"endpoint {endpoint!r} is not an http(s) URL; pass e.g. http://127.0.0.1:8000")
        self.model = model
        self.cache = cache
        self.retries = retries
        self.backoff = backoff
        self.sent = 0
        self.concurrency = concurrency
        self.max_model_len: int | None = None  # the served model's context, from /v1/models (vLLM reports it)
        self._limit = asyncio.Semaphore(concurrency)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=self.endpoint, headers=headers, timeout=timeout, transport=transport)

    async def __aenter__(self) -> EndpointClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self._http.aclose()

    @property
    def api_base(self) -> str:
        return "/v1"  # the endpoint itself never ends in /v1 (normalise_endpoint)

    async def check(self) -> list[str]:
        """Fail early, in one line, if the endpoint is unreachable or does not serve the model."""
        try:
            response = await self._http.get(f"{self.api_base}/models", timeout=10)
        except httpx.HTTPError as exc:
            raise UserError(
                f"cannot reach endpoint {self.endpoint} ({type(exc).__name__}: {exc or 'no response'}); "
                "check the endpoint and that the server is running",
                param="endpoint",
            ) from None
        if response.status_code in (401, 403):
            raise UserError(
                f"endpoint {self.endpoint} refused the API key (HTTP {response.status_code}); give the right API key",
                param="api_key",
            )
        if response.status_code != 200:
            raise UserError(
                f"endpoint {self.endpoint}/v1/models answered HTTP {response.status_code}; "
                "is it an OpenAI-compatible server?"
            )
        entries = [entry for entry in response.json().get("data", []) if isinstance(entry, dict)]
        served = [entry.get("id") for entry in entries]
        for entry in entries:
            if entry.get("id") == self.model and isinstance(entry.get("max_model_len"), int):
                self.max_model_len = entry["max_model_len"]
        if served and self.model not in served:
            raise UserError(
                f"endpoint {self.endpoint} does not serve model {self.model!r}; "
                f"it serves: {', '.join(map(str, served))}"
            )
        return served

    async def post(
        self, route: str, body: dict, *, remember_rejection: bool = True, keep: Callable[[dict], dict] | None = None
    ) -> dict:
        """POST `body` (with this client's model) to `/v1/<route>`, through the cache.

        `keep` reduces the response to what its reader needs before it is cached (and returned, so a
        first run and a cached rerun see the same thing). `remember_rejection`: cache a 400/422 so a
        rerun does not ask again (right for a feature the endpoint lacks, e.g. prompt logprobs; wrong
        for an item's own generation, which a rerun must retry).
        """
        body = {"model": self.model, **body}
        key = request_key(self.endpoint, route, body)
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                if REJECTED in cached:
                    raise EndpointError(cached[REJECTED], 400)
                return cached
        async with self._limit:
            try:
                response = await self._post_with_retries(route, body)
            except EndpointError as exc:
                if remember_rejection and self.cache is not None and exc.status in (400, 422):  # not 401/403/404
                    self.cache.put(key, {REJECTED: str(exc)})
                raise
        if keep is not None:
            response = keep(response)
        if self.cache is not None:
            self.cache.put(key, response)
        return response

    async def _post_with_retries(self, route: str, body: dict) -> dict:
        delay = self.backoff
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = await self._http.post(f"{self.api_base}/{route}", json=body)
            except httpx.TransportError as exc:
                if last:
                    raise EndpointError(
                        f"{self.endpoint}/v1/{route}: {type(exc).__name__}: {exc}",
                        unreachable=isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)),
                    ) from None
            else:
                self.sent += 1
                if response.status_code == 200:
                    return response.json()
                if response.status_code not in TRANSIENT_STATUS or last:
                    raise EndpointError(
                        f"{self.endpoint}/v1/{route} answered HTTP {response.status_code}: {response.text[:300]}",
                        response.status_code,
                    )
            await asyncio.sleep(delay)
            delay *= 2
        raise EndpointError(f"{self.endpoint}/v1/{route}: retries exhausted")
