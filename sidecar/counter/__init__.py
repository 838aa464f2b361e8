"""The request counter: `base` (the seam, the in-process counter, `make_counter`),
`redis_store` (batched, idempotent flushes to the shared Redis key) and `redis_client` (how
to reach Redis: URL, TLS, ACL, Sentinel, Cluster)."""
