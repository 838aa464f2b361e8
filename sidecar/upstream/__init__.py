"""Toward the app: `connection` (one HTTP/1.1 exchange at a time on httptools) and `pool`
(acquiring, expiring, read timeouts)."""
