"""HTTP on top of the engine: ranges, files, seekable bodies, ZIP, spool, pages, digests.

Everything here speaks HTTP semantics (RFC 9110 ranges and preconditions, RFC 9530
digests, problem+json) and hands its bytes to the engine to move.
"""
