"""Durable Object storage: ``ctx.storage`` (KV, SQL, alarms) over a pluggable backend.

Typical wiring, done by the runtime once per object instance::

    backend = SqliteBackend(data_dir)                  # once per server
    store = backend.open("ChatRoom", object_id_hex)    # once per activation
    storage = DurableObjectStorage(
        store,
        write_tracker=output_gate,      # outputs wait for durable writes
        input_gate=input_gate,          # transaction() keeps events out
        on_broken=lambda exc: reset(),  # a commit failed: reset the object
        on_alarm_changed=rearm_alarm,   # committed alarm time changed
    )

This package does not import the runtime; the gates are seen through small
protocols (``WriteTracker``, ``InputGateLike``).
"""

from stateroom.storage.backend import ListQuery, ObjectStore, SqlResult, StorageBackend
from stateroom.storage.coalesce import CommitScheduler, ImplicitTransaction, WriteTracker
from stateroom.storage.encoding import DecodeError, decode, encode
from stateroom.storage.errors import (
    DeleteAllInTransactionError,
    SqlError,
    SqlNotAuthorizedError,
    StorageBrokenError,
    StorageError,
    StorageLimitError,
    StoreInUseError,
    TransactionClosedError,
)
from stateroom.storage.kv import (
    DurableObjectStorage,
    DurableObjectTransaction,
    InputGateLike,
    StorageLimits,
    SyncKvStorage,
)
from stateroom.storage.sql import RawSqlCursor, SqlCursor, SqlStorage
from stateroom.storage.sqlite import SqliteBackend, SqliteObjectStore

__all__ = [
    "CommitScheduler",
    "DecodeError",
    "DeleteAllInTransactionError",
    "DurableObjectStorage",
    "DurableObjectTransaction",
    "ImplicitTransaction",
    "InputGateLike",
    "ListQuery",
    "ObjectStore",
    "RawSqlCursor",
    "SqlCursor",
    "SqlError",
    "SqlNotAuthorizedError",
    "SqlResult",
    "SqlStorage",
    "SqliteBackend",
    "SqliteObjectStore",
    "StorageBackend",
    "StorageBrokenError",
    "StorageError",
    "StorageLimitError",
    "StorageLimits",
    "StoreInUseError",
    "SyncKvStorage",
    "TransactionClosedError",
    "WriteTracker",
    "decode",
    "encode",
]
