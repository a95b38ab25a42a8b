"""Worker integration tests use the shared fixtures of tests/conftest.py: `start_worker`,
`arq_pool` and `redis_client`, all on a real redis-server of the test's own."""
