"""``compactnn compress FOLDER --stream``: a Hugging Face causal LM compressed one block
at a time straight into a compact file (``compactnn.stream``); ``--resume`` continues
an interrupted run after its last finished block; ``--workers N`` encodes a block's
layers in N processes. Under ``torchrun --nproc_per_node W -m compactnn compress ...
--stream`` the W ranks share the forward passes, calibration batches and layer solves
(``stream.distributed``) and rank 0 writes the file and prints."""

from __future__ import annotations

import argparse
import os

from compactnn.errors import UserError


def compress(a: argparse.Namespace) -> None:
    """Run ``compress --stream`` (see the module docstring)."""
    from compactnn import stream
    from compactnn.stream.distributed import world
    from compactnn.stream.model import skeleton
    from compactnn.zoo import hf, hf_task

    if not hf.is_hf_dir(a.checkpoint):
        raise UserError(f"--stream needs a Hugging Face model folder, not {a.checkpoint}")
    if a.data is None:
        raise UserError("compressing a Hugging Face model needs --data (a text file, one "
                        "sample per line)")
    model, _ = skeleton(a.checkpoint)
    x = hf_task.inputs_for(model, a.data, a.max_length)
    recipe = stream.as_recipe(a.recipe)
    meta = {"source": os.path.abspath(a.checkpoint), "recipe": recipe.to_list(),
            "samples": len(x), "task": hf.task_of(model),
            "dense_bytes": 4 * sum(t.numel() for t in model.state_dict().values())}
    with world(a.device) as ranks:
        stats = stream.compress(a.checkpoint, recipe, x, a.output, metadata=meta,
                                resume=a.resume, workers=a.workers)
    if ranks.rank:
        return
    for s in stats:
        print(f"{s.name:24s} {s.seconds:8.2f} s  peak RSS {s.peak_mib:8.1f} MiB")
    size = os.path.getsize(a.output)
    print(f"wrote {a.output}: {size} bytes, {meta['dense_bytes'] / size:.1f}x smaller than "
          f"the float32 model ({meta['dense_bytes']} bytes)")
