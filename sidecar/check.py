"""`streamproxy check URL...`: exit 0 when every URL answers 2xx (for probes and `helm test`),
so the image needs no curl.

`--retry-for SECONDS` keeps asking a failing URL until then: right after `helm install --wait`
a Service can still refuse connections for a moment (its endpoints reach kube-proxy after the
pods are Ready), and a `helm test` run at once should not fail on that."""

from __future__ import annotations

import sys
import time

import httpx

RETRY_INTERVAL = 0.5


def _problem(client: httpx.Client, url: str, expect_json: list[str]) -> str | None:
    """Why URL does not pass (None when it does)."""
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    missing: list[str] = []
    if expect_json:
        try:
            body = response.json()
        except ValueError:
            body = {}
        missing = [key for key in expect_json if not isinstance(body, dict) or key not in body]
    if response.is_success and not missing:
        return None
    detail = f"missing JSON keys {missing}" if missing else response.text[:200].strip()
    return f"{response.status_code} {detail}"


def check_urls(
    urls: list[str], timeout: float, expect_json: list[str], retry_for: float = 0.0
) -> int:
    failed = 0
    deadline = time.monotonic() + retry_for
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        for url in urls:
            while (problem := _problem(client, url, expect_json)) is not None:
                if time.monotonic() + RETRY_INTERVAL > deadline:
                    print(f"FAIL {url}: {problem}", file=sys.stderr)
                    failed += 1
                    break
                print(f"retry {url}: {problem}", file=sys.stderr)
                time.sleep(RETRY_INTERVAL)
            else:
                print(f"ok   {url}")
    return 1 if failed else 0
