"""The engine: a producer's bytes through one byte-budgeted channel to the server.

``sources`` turn any producer into puts on a ``channel``; the ``pump`` moves what the
channel holds to the server's ``send()``; ``response`` is the ASGI app around both,
and ``failure`` decides what a client sees when the producer fails after the head.
"""
