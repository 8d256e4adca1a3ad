"""The admin surface under ``/__stateroom/``: Prometheus metrics and the live dashboard.

On in ``stateroom dev``; in ``stateroom serve`` only with ``--metrics`` or
``--dashboard`` and a token (``--admin-token``). It sits above the layers (it reads
the runtime's objects and the server's connections) and reaches user code only to
list an object's storage, as one of the object's own events.
"""
