"""The asyncio sources that the synchronous modules are generated from (``.ci/unasync.py``)."""
