"""A kit for testing stores: the contract suite, the state machine, the strategies.

Someone who writes a store on another database runs the very checks sticky's own
stores pass::

    from sticky.testing import StoreContract


    class TestMyStore(StoreContract):
        def make_store(self):
            return MyStore()

Needs ``pytest`` and ``hypothesis`` (``pip install 'sticky-sender[test]'``).
"""

from sticky.testing.contract import StoreContract
from sticky.testing.model import Model
from sticky.testing.stateful import StickyMachine

__all__ = ["Model", "StickyMachine", "StoreContract"]
