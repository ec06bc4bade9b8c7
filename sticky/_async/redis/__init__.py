"""The asyncio sources of the Redis store (``sticky.store.redis`` is generated from them)."""
