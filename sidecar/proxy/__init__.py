"""The proxy port: our own HTTP/1.1 protocol, the wire rules, the exchange and tunnels.

A request reads top to bottom: `protocol` (parse, guard) -> `exchange` (forward, map errors)
-> `sidecar.upstream` (the app) -> `exchange` (respond). Wire rules, one module each:
`framing` (body lengths), `headers` (Connection, hop-by-hop, X-Forwarded-*); `tunnel` relays
bytes after a 101.
"""
