from sticky import MemoryStore
from sticky.testing import StoreContract


class TestMemoryStore(StoreContract):
    state_machine_examples = 1000

    def make_store(self) -> MemoryStore:
        return MemoryStore()
