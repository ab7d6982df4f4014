"""Two gloo processes through Lightning's real DDP path (manual optimisation, `manual_backward`) give the
loss gradient of one process holding the whole batch: gathered negatives (local loss or the full N x N
form) and contrastive accumulation (GradCache under `no_sync`); float64, dropout off, BatchNorm frozen."""

import lightning as L
import pytest
import torch

from clap_train.lit import ClapLit
from clap_train.testing import bare_trainer
from tests.test_lit import MODEL

N = 8  # global batch


class FrozenBN(ClapLit):
    """Per-rank batch statistics differ by design: compare with BatchNorm in eval mode."""

    def on_train_batch_start(self, batch, batch_idx):
        super().on_train_batch_start(batch, batch_idx)
        for m in self.model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


class Captions(torch.utils.data.Dataset):
    def __len__(self):
        return N

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(100 + i)
        return {
            "audio": torch.randn(4000, generator=g) * 0.1,
            "caption": f"clip {i} is {'a bell' if i % 3 else 'a drum'} played {i} times",
        }


class Collate:
    def __init__(self, tokenize):
        self.tokenize = tokenize

    def __call__(self, items):
        return {
            "audio": torch.stack([x["audio"] for x in items]),
            "audio_len": torch.full((len(items),), 4000),
            "text": self.tokenize([x["caption"] for x in items]),
        }


class SaveGrads(L.Callback):
    def __init__(self, out):
        self.out = out

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_rank == 0:
            torch.save(
                {n: p.grad.detach().clone() for n, p in pl_module.model.named_parameters() if p.grad is not None},
                self.out,
            )


def module(accumulate=1, local_loss=True):
    torch.manual_seed(0)
    return FrozenBN(
        MODEL,
        optim={"accumulate": accumulate, "clip_grad": 0.0, "warmup_steps": 0, "total_steps": 1},
        loss={"local_loss": local_loss},
    )


def reference_grads():
    lit = module()
    lit.model.train()
    for m in lit.model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    lit.double()
    batch = Collate(lit.model.tokenizer)([Captions()[i] for i in range(N)])
    batch["audio"] = batch["audio"].double()
    a, t, s = lit.model(batch)
    loss = lit.loss_fn(a, t, s)
    loss.backward()
    return {n: p.grad.clone() for n, p in lit.model.named_parameters() if p.grad is not None}


@pytest.fixture(scope="module")
def want():
    return reference_grads()


@pytest.mark.slow
@pytest.mark.parametrize(
    "accumulate,local_loss", [(1, True), (1, False), (2, True)], ids=["local_loss", "full_loss", "accumulate2"]
)
def test_two_ranks_equal_one_process_with_the_whole_batch(tmp_path, want, accumulate, local_loss):
    torch.set_num_threads(1)
    out = str(tmp_path / "grads.pt")
    lit = module(accumulate, local_loss)
    dl = torch.utils.data.DataLoader(Captions(), batch_size=N // 2, collate_fn=Collate(lit.model.tokenizer))
    trainer = bare_trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_steps=1,
        callbacks=[SaveGrads(out)],
        num_sanity_val_steps=0,
        precision="64-true",
    )
    trainer.fit(lit, train_dataloaders=dl)
    got = torch.load(out, weights_only=True)
    assert got.keys() == want.keys() and len(want) > 20
    assert "logit_scale_a" in got and "logit_scale_t" not in got  # the unused temperature is frozen
    # float64, so the bound proves the maths, not fp32 summation order (fp32 runs: ~1e-6 relative)
    rel = {k: (got[k] - want[k]).abs().max().item() / max(1.0, want[k].abs().max().item()) for k in want}
    worst = max(rel, key=rel.get)
    print(f"accumulate={accumulate} local_loss={local_loss}: max grad diff {rel[worst]:.2e} ({worst})")
    assert rel[worst] < 1e-10
