"""Example job of the job world in Python (componentize-py): a JSON REST API, summarised.

GETs API_URL (outgoing `wasi:http`, granted in the declaration's `[network]
allow`), expects a JSON list of objects (or an object holding one under
`items`), and prints how many there are, tallied by the field SUMMARY_FIELD
(default `status`), with the change since the last run, which it keeps in
the job's key-value store. A request the host denies, an answer that is not
2xx, or a body that is not such JSON fails the run with a message saying so.

The HTTP plumbing is componentize-py's bundled `poll_loop` (an asyncio loop
over `wasi:io/poll`); `wit/rest.wit` is the job world plus
`wasi:http/outgoing-handler`.

Build: see plugins/build.sh (componentize-py -d ../../sdk/wit -d wit -w wasmcron:rest/rest ...)
"""

import asyncio
import json
import os
from collections import Counter
from urllib import parse

import poll_loop
import wit_world
from componentize_py_types import Err
from poll_loop import PollLoop, Stream
from wit_world.imports import kv, log
from wit_world.imports.types import (
    ErrorCode_HttpRequestDenied,
    Fields,
    Method_Get,
    OutgoingRequest,
    Scheme_Http,
    Scheme_Https,
)


class WitWorld(wit_world.WitWorld):
    def run(self, context, payload: bytes) -> None:
        url = os.environ.get("API_URL")
        if not url:
            raise Err("API_URL is not set: declare the API's URL in the job's env")
        field = os.environ.get("SUMMARY_FIELD", "status")
        origin = origin_of(url)
        loop = PollLoop()
        asyncio.set_event_loop(loop)
        status, body = loop.run_until_complete(get(url, origin))
        if not 200 <= status <= 299:
            raise Err(f"{origin} answered HTTP {status}: {body[:200].decode(errors='replace')}")
        items = parse_items(body, origin)

        tally = Counter(str(item.get(field, "none")) for item in items)
        by_field = ", ".join(f"{value} {count}" for value, count in sorted(tally.items()))
        previous = kv.get("last-count")
        change = "first run" if previous is None else f"{len(items) - int(previous.decode()):+d} since the last run"
        kv.set("last-count", str(len(items)).encode())
        log.log(log.Level.INFO, "summarised the API", [("origin", origin), ("items", str(len(items)))])
        print(f"{context.job}: {len(items)} items from {origin} ({change}); by {field}: {by_field or 'nothing'}")


def origin_of(url: str) -> str:
    """`scheme://host:port` of `url`: what the run prints and logs (a path or query can carry secrets)."""
    parts = parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Err("API_URL is not an http:// or https:// URL")
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


async def get(url: str, origin: str) -> tuple[int, bytes]:
    """GETs `url`; its status and whole body."""
    parts = parse.urlsplit(url)
    request = OutgoingRequest(Fields.from_list([("accept", b"application/json"), ("user-agent", b"wasmcron-py-rest")]))
    request.set_method(Method_Get())
    request.set_scheme(Scheme_Https() if parts.scheme == "https" else Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query(parts.path + (f"?{parts.query}" if parts.query else "") or "/")
    try:
        response = await poll_loop.send(request)
    except Err as error:
        if isinstance(error.value, ErrorCode_HttpRequestDenied):
            raise Err(f"the host denied the request to {origin}: grant it in the declaration's [network] allow")
        raise Err(f"requesting {origin} failed: {error.value}")
    stream = Stream(response.consume())
    body = bytearray()
    while (chunk := await stream.next()) is not None:
        body += chunk
    return response.status(), bytes(body)


def parse_items(body: bytes, origin: str) -> list[dict]:
    try:
        data = json.loads(body)
    except ValueError as error:
        raise Err(f"{origin} did not answer JSON: {error}")
    items = data.get("items") if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise Err(f"{origin} answered JSON that is not a list of objects (nor an object with one under `items`)")
    return items
