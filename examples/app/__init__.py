"""A small ARQ app used by the tests, the demo and the docs (run it with arqfleet-worker)."""
