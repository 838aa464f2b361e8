"""streamproxy: a streaming HTTP sidecar proxy with a shared request counter."""

__version__ = "0.1.0"
