"""The fake x402 facilitator of the tests: it lives in :mod:`aroutd.mock.facilitator` (also
``aroutd mock-facilitator`` and ``scripts/x402-demo``); re-exported here for the tests."""

from aroutd.mock.facilitator import FakeFacilitator, fake_facilitator, settled_transaction

__all__ = ["FakeFacilitator", "fake_facilitator", "settled_transaction"]
