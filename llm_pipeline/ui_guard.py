"""The loopback guard around the Dagster webserver that `make ui` serves (`llm-pipeline ui`).

The UI has no login: whoever can send it a GraphQL mutation can add partitions and launch runs
with any run config (storage roots included). Bound to 127.0.0.1 it is still reachable from a
web page the user opens elsewhere: a cross-site `<img src="http://127.0.0.1:3000/graphql?query=
mutation{…}">` is a GET that needs no CORS approval, a cross-site form POST needs none either,
and a DNS-rebinding page makes the browser send requests to 127.0.0.1 under the attacker's own
host name (same origin, to the browser). This ASGI layer, in front of the real webserver app,
refuses all three before Dagster sees them:

- a request (HTTP or WebSocket) whose `Host` is not the loopback address and port served
  (`127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT`): 403 (defeats DNS rebinding);
- a request whose `Origin`, when sent, is not one of those: 403 (defeats cross-site POSTs and
  WebSockets; browsers always send `Origin` on those);
- a GraphQL request that is not a POST and carries a mutation (or anything but a plain query):
  405 (a cross-site GET sends no `Origin`).

What it does not do: authenticate. Any local process (or user, on a shared machine) can still
drive the UI; serve it on a shared machine only behind a proxy that authenticates.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def _operations(query: str) -> set[str] | None:
    """The operation types (`query`, `mutation`, `subscription`) in a GraphQL document, or None
    when it does not parse (Dagster would refuse it anyway)."""
    from graphql import OperationDefinitionNode, parse
    from graphql.error import GraphQLError

    try:
        document = parse(query)
    except GraphQLError:
        return None
    return {
        d.operation.value for d in document.definitions if isinstance(d, OperationDefinitionNode)
    }


class LoopbackGuard:
    """ASGI middleware: only same-origin loopback requests reach `app`; no mutation over GET."""

    def __init__(self, app: ASGIApp, port: int, graphql_path: str = "/graphql") -> None:
        self.app = app
        self.graphql_path = graphql_path
        self.hosts = {f"{name}:{port}" for name in LOOPBACK_NAMES}
        self.origins = {f"http://{host}" for host in self.hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        refusal = self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
        else:
            status, reason = refusal
            body = json.dumps({"error": reason}).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(status, reason) for a request that must not reach the webserver, else None."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if headers.get("host", "").lower() not in self.hosts:
            return 403, "Host is not the loopback address this UI serves (DNS rebinding?)"
        origin = headers.get("origin")
        if origin is not None and origin.lower() not in self.origins:
            return 403, "cross-origin request refused"
        is_graphql = scope["path"].rstrip("/") == self.graphql_path
        if is_graphql and scope["type"] == "http" and scope["method"] != "POST":
            params = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            for query in params.get("query", []):
                operations = _operations(query)
                if operations is None or operations - {"query"}:
                    return 405, "GraphQL mutations are accepted over POST only"
        return None
