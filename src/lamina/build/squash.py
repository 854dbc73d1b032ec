"""``--single-snapshot`` (Kaniko): the layers a build added on its base squashed into one.

The target stage's *base* is the image its FROM chain ends at (through ``FROM <stage>`` links;
``scratch`` has no layers). Everything above the base's layers becomes one layer: the
two-tree diff between the merged base and the merged final filesystem (so files added and
removed again leave nothing, deletions of base files become whiteouts), written once into
the blob store as a plain tar and registered on the base's chain like any built layer.

Invariants: the base layers and the image config (env, cmd, labels...) are unchanged; the
history keeps every entry, but only the last entry that had a layer keeps ``empty_layer =
false`` (one history entry per layer, as the image spec requires); with at most one new
layer the state is returned as is; views are unmounted whatever happens.
"""

from __future__ import annotations

from dataclasses import replace
from typing import BinaryIO, cast

from lamina.build.executor import Executor
from lamina.build.steps.base import LayerRef, StageState
from lamina.build.workspace import EMPTY_TAR_SIZE, open_view, register_blob
from lamina.snapshot import write_diff_layer
from lamina.store import Store, chain_ids


def base_size(executor: Executor) -> tuple[int, int]:
    """(layers, history entries) of the image the executor's target stage is based on."""
    graph = executor.graph
    assert graph is not None, "base_size is for a finished build"
    node = graph.stages[graph.target]
    while node.base_stage is not None:
        node = graph.stages[node.base_stage]
    if node.base_image is None or node.base_image == "scratch":
        return 0, 0
    image = executor.images[node.base_image]
    return len(image.record.layers), len(image.config().history)


def squash(
    store: Store, state: StageState, *, layers: int, history: int, epoch: int | None
) -> StageState:
    """``state`` with its layers above the first ``layers`` squashed into one (see above).

    ``history`` is how many history entries belong to the base. Returns a new state.
    """
    if len(state.layers) - layers <= 1:
        return state
    base_chain = chain_ids([x.diff_id for x in state.layers])[layers - 1] if layers else None
    with (
        open_view(store, base_chain) as lower,
        open_view(store, state.chain) as upper,
        store.blobs.begin() as ingest,
    ):
        written = write_diff_layer(lower, upper, cast(BinaryIO, ingest), epoch=epoch)
        empty = written.size == EMPTY_TAR_SIZE
        digest, size = ingest.commit()
    out = state.fork()
    out.cmd_set = state.cmd_set
    out.layers = list(state.layers[:layers])
    out.chain = base_chain
    keep = -1 if empty else _last_layer_entry(state, history)
    out.history = [
        h if i < history or i == keep or h.empty_layer else replace(h, empty_layer=True)
        for i, h in enumerate(state.history)
    ]
    if not empty:
        committed = register_blob(store, base_chain, digest, size)
        out.layers.append(LayerRef.uncompressed(committed.diff_id, committed.size))
        out.chain = committed.chain
    return out


def _last_layer_entry(state: StageState, history: int) -> int:
    for i in range(len(state.history) - 1, history - 1, -1):
        if not state.history[i].empty_layer:
            return i
    return -1


__all__ = ["base_size", "squash"]
