"""Process placement from torchrun's variables, and the collectives on a real 2-process gloo group."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from record.dist import all_reduce_sum_, any_rank, init_distributed, read_dist_env, shutdown_distributed
from record.errors import RecordError
from record.optim import BankMuon


def test_single_process_without_torchrun_variables() -> None:
    place = read_dist_env({}, use_cuda=False)
    assert (place.rank, place.world_size, place.is_main, place.grad_accum_steps) == (0, 1, True, 8)
    assert place.device == torch.device("cpu") and not place.distributed


def test_torchrun_variables_give_rank_and_accumulation() -> None:
    place = read_dist_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "3"}, use_cuda=False)
    assert (place.rank, place.world_size, place.local_rank, place.grad_accum_steps) == (3, 4, 3, 2)
    assert not place.is_main


@pytest.mark.parametrize(
    ("env", "where"),
    [
        ({"RANK": "0", "WORLD_SIZE": "3"}, "WORLD_SIZE"),
        ({"RANK": "0", "WORLD_SIZE": "two"}, "WORLD_SIZE"),
        ({"RANK": "5", "WORLD_SIZE": "2"}, "RANK"),
    ],
)
def test_bad_placement_is_one_line_error(env: dict[str, str], where: str) -> None:
    with pytest.raises(RecordError) as caught:
        read_dist_env(env, use_cuda=False)
    assert caught.value.where == where and "\n" not in str(caught.value)


def _muon_bank_and_grad(rank: int) -> tuple[nn.Parameter, torch.Tensor]:
    torch.manual_seed(0)
    bank = nn.Parameter(torch.randn(3, 24, 8))  # 3 slices over 2 ranks: one rank gets a padding slice
    torch.manual_seed(100 + rank)
    return bank, torch.randn(3, 24, 8)


def _muon_settings() -> dict[str, float]:
    return dict(lr=0.05, momentum=0.9, backend_steps=5, weight_decay=0.1, row_normalize=True)


def _dist_worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)  # a forked child cannot use the parent's OpenMP pool
    env = {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank)}
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    place = init_distributed(env, use_cuda=False)
    total = all_reduce_sum_(torch.tensor([float(rank + 1)]))
    flag = any_rank(rank == 1, place.device)
    bank, grad = _muon_bank_and_grad(rank)
    opt = BankMuon([bank], **_muon_settings())
    for _ in range(2):
        bank.grad = grad.clone()
        opt.step()
    torch.save({"sum": total, "flag": flag, "bank": bank.detach()}, Path(out_dir) / f"rank{rank}.pt")
    shutdown_distributed(wait_for_peers=True)


def test_two_process_gloo_collectives_and_sharded_muon(free_port: int, tmp_path: Path) -> None:
    # One process stepping on the averaged gradient is the reference (bf16 averaging of the two
    # gradients is the only difference). Built first: forked workers then inherit the imports an
    # optimizer's first construction pulls in (seconds on a busy CPU).
    bank, grad0 = _muon_bank_and_grad(0)
    _, grad1 = _muon_bank_and_grad(1)
    start = bank.detach().clone()
    single = BankMuon([bank], **_muon_settings())
    for _ in range(2):
        bank.grad = (grad0.bfloat16() + grad1.bfloat16()).float() / 2
        single.step()
    mp.start_processes(_dist_worker, args=(free_port, str(tmp_path)), nprocs=2, start_method="fork")
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [r["sum"].item() for r in results] == [3.0, 3.0]
    assert [r["flag"] for r in results] == [True, True]
    torch.testing.assert_close(results[0]["bank"], results[1]["bank"], atol=0, rtol=0)
    torch.testing.assert_close(results[0]["bank"], bank.detach(), atol=1e-2, rtol=0)
    assert (results[0]["bank"] - start).abs().max() > 0.05
