"""``GET /api/v1/balance`` and ``GET /api/v1/transactions`` (SPEC §7, §9), served.

A wallet's balance comes from memory (the usage book: the store's credits and usage
rows plus what this instance added since), so it already counts the request that just
finished; its log is read from the store in a worker thread (it is not on the
inference path). An API key's balance is what is left of its own spending limit
(null without one) and it has no log. ``offset`` and ``page_size`` page the log as
they page the keys list.
"""

from __future__ import annotations

from datetime import UTC, datetime

import trio

from aroutd.errors import MethodNotAllowed, NotFound
from aroutd.manage.requests import parse_list_query
from aroutd.manage.views import key_object
from aroutd.principal import Principal
from aroutd.shell.runtime import Runtime
from aroutd.usage.book import key_subject
from aroutd.usage.ledger import balance_object, transaction_object

__all__ = ["balance", "transactions"]

Answer = tuple[int, object]
_READS = (b"GET", b"HEAD")


def _reads_only(method: bytes) -> None:
    if method not in _READS:
        raise MethodNotAllowed("method not allowed", headers=[("Allow", "GET, HEAD")])


async def balance(rt: Runtime, method: bytes, principal: Principal) -> Answer:
    _reads_only(method)
    if principal.wallet is not None:
        return 200, balance_object(rt.usage.balance(principal.wallet))
    entry = None if principal.key_hash is None else rt.find_key(bytes.fromhex(principal.key_hash))
    if entry is None:  # deleted between authentication and now
        raise NotFound("key not found")
    spent = rt.usage.spent(key_subject(principal.key_hash or ""), datetime.now(UTC))
    return 200, balance_object(key_object(entry, spent)["limit_remaining"])


async def transactions(rt: Runtime, method: bytes, principal: Principal, query: bytes) -> Answer:
    _reads_only(method)
    page = parse_list_query(query)
    if principal.wallet is None:
        return 200, {"transactions": []}
    account, store = principal.wallet, rt.store
    lines = await trio.to_thread.run_sync(store.transactions, account, page.offset, page.page_size)
    return 200, {"transactions": [transaction_object(tx) for tx in lines]}
