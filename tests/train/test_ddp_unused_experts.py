"""Two gloo processes where neither rank's routing chose expert B: after an AdamW step with
weight decay, B is bit-identical (zero-filled gradients for the all_reduce moved it before),
and the trained expert A equals a one-process step on the same data."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from medmoe.train.distributed import DistContext, all_reduce_grads


def _model() -> nn.ModuleDict:
    torch.manual_seed(0)
    return nn.ModuleDict({"a": nn.Linear(4, 1), "b": nn.Linear(4, 1)})


def _step(model: nn.ModuleDict, x: torch.Tensor, ctx: DistContext | None) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.5)
    model["a"](x).pow(2).mean().backward()  # only expert "a" is routed to
    if ctx is not None:
        all_reduce_grads(model, ctx)
    opt.step()


def _rank(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    model = _model()
    x = torch.arange(8.0).reshape(2, 4) / 8  # the same batch on both ranks
    _step(
        model, x, DistContext(rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"))
    )
    if rank == 0:
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, out)
    dist.destroy_process_group()


def test_an_expert_no_rank_chose_is_not_moved(tmp_path):
    out = tmp_path / "rank0.pt"
    mp.spawn(_rank, args=(f"file://{tmp_path / 'rdzv'}", str(out)), nprocs=2, join=True)
    two = torch.load(out, weights_only=True)
    before = _model().state_dict()
    assert torch.equal(two["b.weight"], before["b.weight"])
    assert torch.equal(two["b.bias"], before["b.bias"])
    one = _model()
    _step(one, torch.arange(8.0).reshape(2, 4) / 8, None)
    assert not torch.equal(two["a.weight"], before["a.weight"])  # "a" did train
    torch.testing.assert_close(two["a.weight"], one.state_dict()["a.weight"])
    torch.testing.assert_close(two["a.bias"], one.state_dict()["a.bias"])
