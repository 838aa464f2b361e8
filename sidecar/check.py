"""`streamproxy check URL...`: exit 0 when every URL answers 2xx (for probes and `helm test`),
so the image needs no curl."""

from __future__ import annotations

import sys

import httpx


def check_urls(urls: list[str], timeout: float, expect_json: list[str]) -> int:
    failed = 0
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        for url in urls:
            try:
                response = client.get(url)
            except httpx.HTTPError as exc:
                print(f"FAIL {url}: {type(exc).__name__}: {exc}", file=sys.stderr)
                failed += 1
                continue
            missing: list[str] = []
            if expect_json:
                try:
                    body = response.json()
                except ValueError:
                    body = {}
                missing = [
                    key for key in expect_json if not isinstance(body, dict) or key not in body
                ]
            if response.is_success and not missing:
                print(f"ok   {url}: {response.status_code}")
            else:
                detail = f"missing JSON keys {missing}" if missing else response.text[:200].strip()
                print(f"FAIL {url}: {response.status_code} {detail}", file=sys.stderr)
                failed += 1
    return 1 if failed else 0
