"""Child of ``benchmarks/scale.py --speedup``: the streaming calibration pass (Wanda 50 %
on 256 samples x 32 tokens, policy dense) of a model folder in WORLD gloo processes of
one thread each; prints the seconds rank 0 spent in ``stream.compress`` as JSON (the
import of ``transformers``' Llama, about 3 s on every rank, is made before the clock).

Usage: python tests/stream/calib_child.py FOLDER OUT WORLD
"""

import json
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from compactnn.stream import compress  # noqa: E402
from compactnn.transforms import parallel  # noqa: E402
from tests.stream.conftest import inputs  # noqa: E402

RECIPE = [{"method": "prune", "p": 50, "criterion": "wanda", "calibrate": 256}]


def run(rank: int, world: int, port: int, folder: str, out: str) -> None:
    torch.set_num_threads(1)
    import transformers.models.llama.modeling_llama  # noqa: F401  (imported before the clock)
    vocab = json.loads((Path(folder) / "config.json").read_text())["vocab_size"]
    x = inputs(n=256, length=32, vocab=vocab)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
        dist.barrier()
    t = time.perf_counter()
    with parallel.using(parallel.Parallel()):
        compress(folder, RECIPE, x, out, policy="dense")
    if rank == 0:
        print(json.dumps({"seconds": time.perf_counter() - t}), flush=True)
    if world > 1:
        dist.destroy_process_group()


def main() -> None:
    folder, out, world = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if world == 1:
        run(0, 1, 0, folder, out)
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(run, args=(world, port, folder, out), nprocs=world, join=True)


if __name__ == "__main__":
    main()
