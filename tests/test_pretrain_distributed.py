"""pretrain/distributed.py on 2 real gloo processes (torch.multiprocessing), checked in one process.

Each process holds 4 clips; clip c of the job is the one-hot vector e_c (plus a small
clip-specific value), so an output row tells which clip it came from and, through a
batch sum, which clips shared its forward pass. The teacher function is BatchNorm-like
(each row centred by its batch's mean), so a key depends on its batch. The checks are
made afterwards, in the test process, from what each rank returned:
- all_gather_nograd: rank order; all_reduce_mean: the mean;
- shuffled_forward: the clips are split into 2 batches of 4 unlike the ranks' own split,
  every key belongs to its own clip, and equals the function computed in one process on
  the batch that clip was shuffled into;
- SLICER's and DeLoRes-M's after_step: every rank's queue holds rank 0's keys, then rank 1's,
  owners 0 then 1.
"""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pretrain.distributed import (DistContext, all_gather_nograd, all_reduce_mean, init_distributed,
                                  shuffled_forward, shutdown_distributed, split_forward)

P, B = 2, 4
N = P * B


def _clips(rank: int) -> torch.Tensor:
    """(B, N + 1): one-hot of the global clip index, then a clip-specific value."""
    idx = torch.arange(rank * B, (rank + 1) * B)
    x = torch.zeros(B, N + 1, dtype=torch.float64)
    x[torch.arange(B), idx] = 1.0
    x[:, N] = torch.sin(idx.double() + 1.0)
    return x


def _teacher(x: torch.Tensor) -> torch.Tensor:
    """(b, N + 1) -> (b, 2N + 2): [x, batch sum] - batch mean of [x, 0]: depends on the batch."""
    batch_sum = x.sum(0, keepdim=True).expand_as(x)
    return torch.cat([x, batch_sum], dim=1) - torch.cat([x.mean(0, keepdim=True).expand_as(x), 0 * x], dim=1)


def _worker(rank: int, port: int, out_dir: str) -> None:
    from hear_slicer.encoder import EncoderConfig
    from pretrain.distributed import (DistContext, all_gather_nograd, all_reduce_mean, init_distributed,
                                      shuffled_forward, shutdown_distributed)
    from pretrain.objectives.delores_m import DeLoResM, DeLoResMConfig
    from pretrain.objectives.slicer import Slicer, SlicerConfig

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(P), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if rank:  # torchrun sets LOCAL_RANK too; rank 0 checks that its absence reads as 0
        os.environ["LOCAL_RANK"] = str(rank)
    else:
        os.environ.pop("LOCAL_RANK", None)
    ctx = init_distributed("cpu")
    assert ctx == DistContext(rank=rank, world_size=P, local_rank=rank) and ctx.enabled
    assert ctx.is_main == (rank == 0) and dist.get_backend() == "gloo"
    torch.manual_seed(100 + rank)  # ranks draw differently: only rank 0's permutation may count
    x = _clips(rank)
    result = {
        "gathered": all_gather_nograd(torch.full((2, 3), float(rank)), ctx),
        "mean": all_reduce_mean(torch.tensor([1.0 + 4.0 * rank]), ctx),
        "keys": shuffled_forward(_teacher, x, ctx),
        "keys_again": shuffled_forward(_teacher, x, ctx),
    }
    # SLICER's enqueue of every process's keys (tiny encoder, identical init on both ranks).
    torch.manual_seed(0)
    obj = Slicer(EncoderConfig(n_mels=64, channels=4, d=32, dropout=0.0),
                 SlicerConfig(instance_dim=8, n_clusters=4, queue_size=64), ctx).train()
    g = torch.Generator().manual_seed(rank)
    obj(torch.randn(3, 64, 32, generator=g), torch.randn(3, 64, 32, generator=g))
    result["pending"] = obj._pending_keys.clone()
    obj.after_step(1, 1)
    result["queue"], result["owners"] = obj.queue.keys.clone(), obj.queue.owners.clone()
    # DeLoRes-M's enqueue likewise (its keys: one view per clip).
    torch.manual_seed(0)
    dm = DeLoResM(EncoderConfig(n_mels=64, channels=4, d=32, dropout=0.0),
                  DeLoResMConfig(queue_size=64, head_dim=8, block_projector_dim=4, block_projector_layers=2), ctx).train()
    dm(torch.randn(3, 64, 32, generator=g), torch.randn(3, 64, 32, generator=g))
    result["dm_pending"] = dm._pending_keys.clone()
    dm.after_step(1, 1)
    result["dm_queue"], result["dm_owners"] = dm.queue.keys.clone(), dm.queue.owners.clone()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    shutdown_distributed(ctx)
    assert not dist.is_initialized()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(port, str(d)), nprocs=P, join=True)
    return [torch.load(d / f"rank{r}.pt") for r in range(P)]


@pytest.mark.slow  # make test-fast: over 3 s (with its fixture)
def test_one_process_context_makes_every_helper_the_identity(monkeypatch, ranks):
    """Also the start and stop of the 2-process job: `ranks` ran init/shutdown_distributed."""
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    ctx = init_distributed("cpu")
    assert ctx == DistContext() and not ctx.enabled and ctx.is_main and not dist.is_initialized()
    x = _clips(0)
    assert all_gather_nograd(x, ctx) is x
    mean = all_reduce_mean(x, ctx)
    assert torch.equal(mean, x) and mean is not x
    torch.testing.assert_close(shuffled_forward(_teacher, x, ctx), _teacher(x))
    shutdown_distributed(ctx)  # a no-op without a process group


@pytest.mark.slow  # make test-fast: over 3 s (with its fixture)
def test_all_gather_is_in_rank_order_and_all_reduce_is_the_mean(ranks):
    # (in-process calls too, so that mutmut maps this test to both helpers)
    assert all_gather_nograd(_clips(0), DistContext()).shape == torch.Size([B, N + 1])
    assert torch.equal(all_reduce_mean(torch.ones(2), DistContext()), torch.ones(2))
    expected = torch.cat([torch.full((2, 3), float(r)) for r in range(P)])
    for out in ranks:
        torch.testing.assert_close(out["gathered"], expected)
        torch.testing.assert_close(out["mean"], torch.tensor([3.0]))


@pytest.mark.parametrize("call", ["keys", "keys_again"])
@pytest.mark.slow  # make test-fast: over 3 s (with its fixture)
def test_shuffled_forward_keys_belong_to_their_clips(ranks, call):
    assert shuffled_forward(_teacher, _clips(1), DistContext()).shape == (B, 2 * N + 2)  # (mutmut maps this test)
    x_all = torch.cat([_clips(r) for r in range(P)])  # (N, N + 1)
    keys = torch.cat([out[call] for out in ranks])  # (N, 2N + 2), row c: clip c's key
    # Which clips shared each forward pass: the batch-sum half, read as a membership vector.
    groups = {tuple(int(v) for v in k[N + 1:2 * N + 1].round()) for k in keys}
    members = [frozenset(i for i, v in enumerate(g) if v) for g in groups]
    assert sorted(len(m) for m in members) == [B] * P and frozenset().union(*members) == frozenset(range(N))
    assert set(members) != {frozenset(range(r * B, (r + 1) * B)) for r in range(P)}, "no shuffle happened"
    for c in range(N):
        group = sorted(next(m for m in members if c in m))
        reference = _teacher(x_all[group])[group.index(c)]  # one process, the batch clip c was in
        torch.testing.assert_close(keys[c], reference)
        assert keys[c][c] > 0.5 and keys[c][N] == pytest.approx(x_all[c, N] - x_all[group, N].mean().item())


@pytest.mark.slow  # make test-fast: over 3 s (with its fixture)
def test_slicer_enqueues_every_rank_s_keys_in_rank_order(ranks):
    from hear_slicer.encoder import EncoderConfig
    from pretrain.objectives.slicer import Slicer, SlicerConfig

    one = Slicer(EncoderConfig(n_mels=64, channels=4, d=32, dropout=0.0), SlicerConfig(instance_dim=8, n_clusters=4,
                 queue_size=64, shuffle_bn=False))  # one process too (and so mutmut maps this test to after_step)
    one(torch.randn(3, 64, 32), torch.randn(3, 64, 32))
    one.after_step(1, 1)
    assert one.queue.owners[:6].tolist() == [0] * 6 and one.queue.owners[6:].eq(-1).all()
    pending = [out["pending"] for out in ranks]  # (2 * 3, E) per rank
    n = pending[0].shape[0]
    for out in ranks:
        torch.testing.assert_close(out["queue"][:P * n], torch.cat(pending))
        assert out["owners"][:P * n].tolist() == [r for r in range(P) for _ in range(n)]
    torch.testing.assert_close(ranks[0]["queue"], ranks[1]["queue"])


def test_shutdown_leaves_a_group_it_does_not_own(tmp_path):
    """A one-process context never destroys a process group (e.g. one its caller started)."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        shutdown_distributed(DistContext())
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()


def test_split_forward_group_boundaries():
    """groups = B: every clip alone (BatchNorm-like fn of one row: 0); groups = 2: two halves of a
    shuffled batch, not the plain forward."""
    x = torch.randn(6, 3, dtype=torch.float64)
    torch.testing.assert_close(split_forward(_centre, x, 6), torch.zeros_like(x))
    halves = split_forward(_centre, x, 2, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(halves, _centre(x))
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    for part in perm.tensor_split(2):
        torch.testing.assert_close(halves[part], _centre(x[part]))
    with pytest.raises(ValueError, match="got 7 groups for a batch of 6"):
        split_forward(_centre, x, 7)


def _centre(x):
    return x - x.mean(0, keepdim=True)


@pytest.mark.slow  # make test-fast: over 3 s (with its fixture)
def test_delores_m_enqueues_every_rank_s_keys_in_rank_order(ranks):
    from hear_slicer.encoder import EncoderConfig
    from pretrain.objectives.delores_m import DeLoResM, DeLoResMConfig

    torch.manual_seed(0)  # one process too (and so mutmut maps this test to after_step)
    one = DeLoResM(EncoderConfig(n_mels=64, channels=4, d=32, dropout=0.0),
                   DeLoResMConfig(queue_size=64, head_dim=8, block_projector_dim=4, block_projector_layers=2,
                                  split_bn_groups=1))
    before = one.queue.keys.clone()
    one.after_step(1, 1)  # no forward since the last step: nothing to enqueue
    assert torch.equal(one.queue.keys, before) and one.queue.owners.eq(-1).all()
    one(torch.randn(3, 64, 32), torch.randn(3, 64, 32))
    one.after_step(2, 2)
    assert one.queue.owners[:3].tolist() == [0] * 3 and one.queue.owners[3:].eq(-1).all()
    pending = [out["dm_pending"] for out in ranks]  # (3, H) per rank
    n = pending[0].shape[0]
    for out in ranks:
        torch.testing.assert_close(out["dm_queue"][:P * n], torch.cat(pending))
        assert out["dm_owners"][:P * n].tolist() == [r for r in range(P) for _ in range(n)]
    torch.testing.assert_close(ranks[0]["dm_queue"], ranks[1]["dm_queue"])


@pytest.mark.parametrize("device_type, backend, gpu", [("cuda", "nccl", 1), ("cpu", "gloo", None)])
def test_init_distributed_picks_the_backend_and_the_local_gpu(monkeypatch, device_type, backend, gpu):
    """The CUDA branch, which needs GPUs to run for real: NCCL, and each process on its LOCAL_RANK's GPU
    (torchrun's rank 3 of 4, second process of its machine). Calls recorded, not made."""
    calls = {}
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.setdefault("gpu", i))
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.setdefault("backend", backend))
    ctx = init_distributed(device_type)
    assert ctx == DistContext(rank=3, world_size=4, local_rank=1)
    assert calls == ({"backend": backend, "gpu": gpu} if gpu is not None else {"backend": backend})


def test_sync_batchnorm_replaces_every_batchnorm_and_keeps_the_names():
    from hear_slicer.encoder import AudioNTT2020, EncoderConfig

    from pretrain.distributed import sync_batchnorm
    enc = AudioNTT2020(EncoderConfig(n_mels=64, channels=4, d=32, dropout=0.0))
    names = list(enc.state_dict())
    n_bn = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in enc.modules())
    out = sync_batchnorm(enc)
    assert n_bn > 0 and sum(isinstance(m, torch.nn.SyncBatchNorm) for m in out.modules()) == n_bn
    assert list(out.state_dict()) == names  # checkpoints load into the plain encoder
