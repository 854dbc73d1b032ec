"""Cache lookup and recording for steps that produce a layer (RUN, COPY, ADD, WORKDIR).

:func:`lookup` turns a cache record into the stage's next state: a record of an empty step
adds nothing; a record with a layer is usable when the store still has that layer on the
stage's current chain, or at least the layer's blob (then the layer is re-created from it —
cheap, and exactly how ``COPY --link`` results are rebased). Anything else is a miss.
:func:`record` stores what a step that ran produced, and applies it to the state.

Invariant: a step's history entry is added by the caller after either function, so
``history`` and ``layers`` stay aligned (empty_layer entries have no layer).
"""

from __future__ import annotations

from lamina.build.cache import CacheRecord
from lamina.build.steps.base import BuildEnv, StageState
from lamina.build.workspace import Committed, register_blob
from lamina.errors import NotFound
from lamina.store import chain_id


def lookup(env: BuildEnv, state: StageState, key: str) -> bool | None:
    """Apply a cached result for ``key``: True (a layer added), False (an empty step), or
    None on a miss (also with ``--no-cache``)."""
    if env.no_cache:
        return None
    rec = env.cache.get(key)
    if rec is None:
        return None
    if rec.diff_id is None:
        return False
    chain = chain_id(state.chain, rec.diff_id)
    try:
        env.store.layers.get(chain)
    except NotFound:
        if rec.blob is None or not env.store.blobs.has(rec.blob):
            return None
        register_blob(env.store, state.chain, rec.blob, rec.size)
    state.add_layer(rec.diff_id, rec.size, chain)
    return True


def record(env: BuildEnv, state: StageState, key: str, committed: Committed | None) -> bool:
    """Remember what a step produced under ``key`` and apply it; True if it added a layer."""
    if committed is None:
        env.cache.put(key, CacheRecord(diff_id=None))
        return False
    env.cache.put(
        key,
        CacheRecord(diff_id=committed.diff_id, blob=committed.diff_id, size=committed.size),
    )
    state.add_layer(committed.diff_id, committed.size, committed.chain)
    return True
