"""Two training processes, one model: data parallelism that keeps the weights bit-identical everywhere.

Training is pinned to one thread per process (`demo.numerics`) so that
no reduction depends on the machine; a 2-core machine would then leave a core
idle. The recipe therefore trains with a FIXED number of ranks (two), each a
pinned single-thread process working on its own rows of every batch. After
each backward pass the ranks sum their gradients. With two ranks every summed
element is one addition, a + b, and IEEE addition is commutative, so the sum
is the same bits whichever rank adds and whatever the transport: the two
replicas take identical optimizer steps, and the weights do not depend on how
many cores the machine has (a one-core machine time-shares the two ranks and
trains the same model, slower). More ranks would make the sum's order matter,
which is why the count is part of the recipe, not a tuning knob.

Rendezvous is through a file in the output directory (no port to collide
with); a rank that dies makes the other fail within the process group's
timeout, and the parent (`demo.train_child`) stops the survivors at once.
"""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

RANKS = 2
TIMEOUT = datetime.timedelta(minutes=5)


class RankSync:
    """The gloo process group of one training rank, and the few collectives training needs."""

    def __init__(self, rank: int, world: int, rendezvous: Path):
        import torch.distributed as dist

        if world != RANKS:
            raise ValueError(
                f"the demo recipe trains with exactly {RANKS} ranks (its sum order depends on it), got {world}"
            )
        self.rank, self.world, self.dist = rank, world, dist
        dist.init_process_group(
            "gloo", init_method=f"file://{Path(rendezvous).resolve()}", rank=rank, world_size=world, timeout=TIMEOUT
        )

    def rows(self, batch: list) -> list:
        """This rank's rows of a batch: interleaved, so both ranks get rows of every length."""
        return batch[self.rank :: self.world]

    def barrier(self) -> None:
        self.dist.barrier()

    def sum_gradients(self, params: list, extra):
        """Sum every parameter's gradient (zeros where a rank has none) and `extra` (a 1-D float tensor of
        scalars to add up, e.g. the loss) over the ranks; sets each .grad to the sum and returns the summed extra."""
        import torch

        pieces = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), dtype=p.dtype) for p in params]
        flat = torch.cat([*pieces, extra.reshape(-1).to(pieces[0].dtype)])
        self.dist.all_reduce(flat, op=self.dist.ReduceOp.SUM)
        offset = 0
        for p in params:  # views into the summed buffer: no second copy per step
            p.grad = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        return flat[offset:]

    def check_replicas_equal(self, params: list) -> None:
        """Raise unless every rank holds bit-identical weights (the premise of training this way)."""
        import torch

        digest = hashlib.sha256()
        for p in params:
            digest.update(p.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        mine = torch.frombuffer(bytearray(digest.digest()), dtype=torch.uint8).to(torch.int64)
        gathered = [torch.zeros_like(mine) for _ in range(self.world)]
        self.dist.all_gather(gathered, mine)
        if any(not torch.equal(g, gathered[0]) for g in gathered):
            raise RuntimeError("training ranks ended with different weights; the pinned numerics did not hold")

    def close(self) -> None:
        if self.dist.is_initialized():
            self.dist.destroy_process_group()
