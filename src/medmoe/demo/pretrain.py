"""Stage 1: pretrain a small SAM-Med3D (the ``tiny`` config) from scratch on the original tasks,
with the interactive click simulation. The result plays the published model's role: the frozen
general expert."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from medmoe.moe.data import Sample
from medmoe.sam3d import Sam3D, build_sam3d
from medmoe.train.interactive import dice_ce_loss, interactive_loss
from medmoe.train.schedule import lr_factor


def pretrain_general(
    samples: list[Sample], *, steps: int, lr: float, clicks: int, box_prob: float, seed: int
) -> tuple[Sam3D, list[float]]:
    torch.manual_seed(seed)
    model = build_sam3d("tiny").train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warmup) * lr_factor(s / steps, schedule="cosine"),
    )
    loss_fn = dice_ce_loss()
    order_rng = np.random.default_rng([seed, 1])
    losses = []
    bar = tqdm(range(steps), desc="pretrain general (tiny)", unit="step", leave=False)
    for step in bar:
        s = samples[int(order_rng.integers(len(samples)))]
        rng = np.random.default_rng([seed, 2, step])
        opt.zero_grad(set_to_none=True)
        emb = model.image_encoder(torch.from_numpy(s.image)[None, None])
        pe = model.prompt_encoder.get_dense_pe()

        def decode(p, lab, box, mask_input, emb=emb, pe=pe):
            return model.decode(
                emb,
                points=(p, lab) if p is not None else None,
                boxes=box,
                mask_input=mask_input,
                image_pe=pe,
            )[0]

        loss, _ = interactive_loss(
            decode, s.label, size=128, n_iter=clicks, rng=rng, box_prob=box_prob, loss_fn=loss_fn
        )
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss / clicks)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    return model.eval(), losses
