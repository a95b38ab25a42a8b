"""arqfleet worker runtime: runs a user's ARQ WorkerSettings with drain, probes and metrics."""
