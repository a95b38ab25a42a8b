"""arqfleet operator: turns JobQueue resources into autoscaled ARQ worker Deployments."""
