"""The reverse proxy a Python user would otherwise write: aiohttp.web plus one ClientSession.

Streams both ways (request body from `request.content`, response with `StreamResponse`), strips
hop-by-hop headers, no decompression, keep-alive pool to the upstream, uvloop. No counting, no
timeouts beyond aiohttp's defaults: the peer is here for speed, not for the contract.
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)


def make_app(upstream: str) -> web.Application:
    app = web.Application()

    async def start(app: web.Application) -> None:
        app["session"] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1024, keepalive_timeout=4),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_read=60),
        )

    async def stop(app: web.Application) -> None:
        await app["session"].close()

    async def handler(request: web.Request) -> web.StreamResponse:
        session: aiohttp.ClientSession = request.app["session"]
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP
        )
        data = request.content if request.body_exists else None
        url = URL(upstream + request.raw_path, encoded=True)
        async with session.request(
            request.method, url, headers=headers, data=data, allow_redirects=False
        ) as upstream_response:
            response = web.StreamResponse(
                status=upstream_response.status,
                headers=CIMultiDict(
                    (k, v)
                    for k, v in upstream_response.headers.items()
                    if k.lower() not in HOP_BY_HOP
                ),
            )
            await response.prepare(request)
            async for chunk in upstream_response.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        loop = asyncio.new_event_loop()
    web.run_app(
        make_app(args.upstream.rstrip("/")),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        loop=loop,
    )


if __name__ == "__main__":
    main()
