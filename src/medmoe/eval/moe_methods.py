"""Evaluate a MoE's Baseline, FT-experts, MoE and variants on 128^3 crops: Table 1 and Table 2.

Every model shares the frozen encoder, so each crop is encoded once and every model decodes from
that embedding. A *method* is one way to turn prompts into low-resolution logits:

- ``Baseline``: the general decoder;
- ``FT:<group>``: that group's expert decoder alone (every expert on an other crop; its own on a
  finetuned crop);
- ``MoE``: :meth:`MoESam3D.decode` as trained (automatic τ, ``s_top`` weighting);
- ``<weighting>|<τ>``: the gate's top-1 expert fused with the general decoder when
  ``s_top > τ`` (Table 2's rows), fused by the library's :func:`medmoe.moe.selector.fuse`, the
  same function ``MoESam3D`` and ``medmoe moe train --weighting`` use; ``logit-softmax`` is the
  paper's Aft_weight read as a voxel-wise softmax over the two logits, ``p = softmax(l_g, l_e)``,
  fused ``p_g l_g + p_e l_e``;
- ``oracle|<weighting>``: the ground truth decides whether and which expert is used (the general
  decoder alone on other crops); the fusion weight is the weighting's, with the gate's ``s_top``.

Points follow the interactive protocol: the first click is the ground truth's deepest voxel
(``centre``) or a uniform foreground voxel (``random``), every later click is drawn from the
current error region and fed back with the previous logits. A box prompt is the ground-truth box
alone. Each (crop, method, prompt, first click) gives one :class:`~medmoe.eval.moe_stats.EvalRow`.

A crop is any object with ``image`` (z-scored 128^3 float32), ``label`` (128^3 bool), ``task``
(0 other, i the structure of expert i), ``name`` and ``subject``: :class:`EvalCrop`, or the demo's
crops. Metrics are computed on the crop grid (1.5 mm voxels).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from medmoe.eval.clicks import box_from_mask, first_click, next_click
from medmoe.eval.metrics import nsd
from medmoe.eval.moe_stats import EvalRow
from medmoe.moe.interactive import point_prompt
from medmoe.moe.model import MoESam3D
from medmoe.moe.selector import WEIGHTINGS, fuse
from medmoe.sam3d.upsample import upsampled_mask

TABLE1 = ("Baseline", "FT", "MoE")
CROP_SPACING_MM = 1.5


class EvalCrop(NamedTuple):
    """One evaluation crop (the fields :func:`evaluate_crop` reads)."""

    image: np.ndarray  # (128, 128, 128) float32, z-scored
    label: np.ndarray  # (128, 128, 128) bool
    task: int  # 0: an other structure; i: the structure of group (expert) i
    name: str  # the structure's name
    subject: str  # the set the crop belongs to; tables are per subject


class Decoded(NamedTuple):
    low: Tensor  # (1, 1, s, s, s) low-resolution logits
    gate_class: int = -1  # argmax of the gate's m + 1 outputs (-1: no gate)
    expert: int = 0  # the expert whose logits were fused in (0: none)


Decode = Callable[[Any, Any, Tensor | None], Decoded]  # (points, boxes, mask_input) -> Decoded


def fast_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """``2|P∩G| / (|P| + |G|)``; 1 when both are empty (as :func:`medmoe.eval.metrics.dice`)."""
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(gt))
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(pred & gt)) / total


def prompt_key(points, boxes, mask_input) -> bytes:
    """A digest of the exact prompt state (points, labels, box, previous logits)."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in (("p", points[0] if points else None), ("l", points[1] if points else None),
                    ("b", boxes), ("m", mask_input)):  # fmt: skip
        if t is not None:
            # .cpu(): on a GPU the prompt lives on the device (a few points and 32^3 logits)
            h.update(name.encode() + t.detach().cpu().contiguous().numpy().tobytes())
    return h.digest()


class Methods:
    """The decode functions of one crop, all reading one cached embedding.

    Decoder outputs are memoised by the exact prompt state: methods whose click trajectories
    coincide (every τ row while the gate's decisions agree; every MoE variant on a crop where
    the general decoder is kept) run each decoder once per state. The results are unchanged."""

    def __init__(self, *, moe: MoESam3D, embedding: Tensor, task: int) -> None:
        self.moe = moe
        self.emb = embedding
        self.task = task
        self.pe = moe.base.prompt_encoder.get_dense_pe()
        self._memo: dict[tuple, Any] = {}

    def _cached(self, what: tuple, compute: Callable[[], Any]) -> Any:
        if what not in self._memo:
            self._memo[what] = compute()
        return self._memo[what]

    def _prompt(self, points, boxes, mask_input) -> tuple[bytes, Tensor, Tensor]:
        key = prompt_key(points, boxes, mask_input)
        sparse, dense = self._cached(
            ("prompt", key), lambda: self.moe.base.prompt_encoder(points, boxes, mask_input)
        )
        return key, sparse, dense

    def _parts(self, points, boxes, mask_input):
        key, sparse, dense = self._prompt(points, boxes, mask_input)
        general = self._cached(
            ("general", key),
            lambda: self.moe.base.mask_decoder(self.emb, self.pe, sparse, dense)[0],
        )
        return sparse, dense, general

    def _gate(self, points, boxes, mask_input, sparse) -> Tensor:
        key = ("gate", prompt_key(points, boxes, mask_input))
        return self._cached(key, lambda: self.moe.gate(self.emb, self.pe, sparse))

    def _expert_low(self, index: int, points, boxes, mask_input, sparse, dense) -> Tensor:
        key = ("expert", index, prompt_key(points, boxes, mask_input))
        return self._cached(
            key, lambda: self.moe.expert_at(index)(self.emb, self.pe, sparse, dense)[0]
        )

    def baseline(self, points, boxes, mask_input) -> Decoded:
        return Decoded(self._parts(points, boxes, mask_input)[2])

    def expert(self, index: int) -> Decode:
        def decode(points, boxes, mask_input) -> Decoded:
            _, sparse, dense = self._prompt(points, boxes, mask_input)
            low = self._expert_low(index, points, boxes, mask_input, sparse, dense)
            return Decoded(low, expert=index)

        return decode

    def moe_as_trained(self, points, boxes, mask_input) -> Decoded:
        out = self.moe.decode(
            self.emb, points=points, boxes=boxes, mask_input=mask_input, image_pe=self.pe
        )
        used = bool(out.routing.use_expert[0])
        return Decoded(
            out.low_res_logits,
            int(out.gate_probs[0].argmax()),
            int(out.routing.expert[0]) if used else 0,
        )

    def variant(self, *, weighting: str, tau: float | None) -> Decode:
        """Gate routing with threshold ``tau``, or oracle routing when ``tau`` is None."""

        def decode(points, boxes, mask_input) -> Decoded:
            sparse, dense, general = self._parts(points, boxes, mask_input)
            probs = self._gate(points, boxes, mask_input, sparse)
            s_top, top = probs[:, 1:].max(dim=1)
            index = int(top[0]) + 1
            use = bool(s_top[0] > tau) if tau is not None else self.task > 0
            index = index if tau is not None else self.task
            if not use:
                return Decoded(general, int(probs[0].argmax()))
            expert = self._expert_low(index, points, boxes, mask_input, sparse, dense)
            low = fuse(general, expert, s_top, weighting=weighting)
            return Decoded(low, int(probs[0].argmax()), index)

        return decode


def method_table(methods: Methods, *, groups: int, taus: tuple[float, ...]) -> dict[str, Decode]:
    """Every method evaluated on a crop, by name (see the module docstring)."""
    table: dict[str, Decode] = {"Baseline": methods.baseline, "MoE": methods.moe_as_trained}
    experts = range(1, groups + 1) if methods.task == 0 else (methods.task,)
    for i in experts:
        table[f"FT:{i}"] = methods.expert(i)
    for w in WEIGHTINGS:
        for tau in taus:
            table[f"{w}|{tau}"] = methods.variant(weighting=w, tau=tau)
        table[f"oracle|{w}"] = methods.variant(weighting=w, tau=None)
    return table


class Trajectory(NamedTuple):
    mask: np.ndarray  # the final mask (128^3 bool)
    gate: tuple[int, int]  # gate class at the first and at the last step
    expert: tuple[int, int]  # the expert fused in at the first and at the last step (0: none)


@torch.inference_mode()
def click_loop(
    decode: Decode,
    gt: np.ndarray,
    *,
    prompt: str,
    first: np.ndarray | None,
    n_clicks: int,
    rng: np.random.Generator,
    size: int,
    device: torch.device | str = "cpu",
) -> Trajectory:
    """Box: the ground-truth box alone. Points: ``first`` then ``n_clicks - 1`` error clicks.
    Prompts are built on ``device`` (the model's); masks come back to the CPU for the clicks."""
    boxes = None
    points: list[np.ndarray] = []
    labels: list[int] = []
    if prompt == "box":
        boxes = torch.as_tensor(box_from_mask(gt), dtype=torch.float32, device=device)
        boxes = boxes.reshape(1, 6)
        n_clicks = 1
    else:
        points, labels = [first], [1]
    low, mask, steps = None, None, []
    for step in range(n_clicks):
        if step > 0:
            click = next_click(mask, gt, method="random", rng=rng)
            if click is None:  # perfect already
                break
            points.append(click.point)
            labels.append(click.label)
        out = decode(point_prompt(points, labels, device), boxes, low)
        low = out.low
        mask = upsampled_mask(low, size)[0, 0].cpu().numpy()  # = trilinear upsampling > 0
        steps.append(out)
    return Trajectory(
        mask, (steps[0].gate_class, steps[-1].gate_class), (steps[0].expert, steps[-1].expert)
    )


def _runs(names: list[str]) -> list[tuple[str, str, str]]:
    """(method, prompt, first click) triples: everything with the centre click and the box; the
    random first click for Table 1's models only."""
    runs = [(m, p, "centre") for m in names for p in ("points", "box")]
    return runs + [(m, "points", "random") for m in names if m.split(":")[0] in TABLE1]


def evaluate_crop(
    moe: MoESam3D, crop, index: int, *, groups: int, taus, clicks: int, seed: int, nsd_mm
) -> list[EvalRow]:
    device = next(moe.parameters()).device
    with torch.inference_mode():
        emb = moe.base.image_encoder(torch.from_numpy(crop.image)[None, None].to(device))
    table = method_table(Methods(moe=moe, embedding=emb, task=crop.task), groups=groups, taus=taus)
    centre = first_click(crop.label, method="center").point
    rows = []
    for name, prompt, first in _runs(list(table)):
        rng = np.random.default_rng([seed, index, 7 if first == "random" else 0])
        start = (
            first_click(crop.label, method="random", rng=rng).point if first == "random" else centre
        )
        traj = click_loop(
            table[name],
            crop.label,
            prompt=prompt,
            first=start,
            n_clicks=clicks,
            rng=rng,
            size=moe.base.config.img_size,
            device=device,
        )
        score = None
        if name.split(":")[0] in TABLE1:
            spacing = (CROP_SPACING_MM,) * 3
            score = nsd(traj.mask, crop.label, spacing=spacing, tolerance_mm=nsd_mm)
        rows.append(
            EvalRow(
                subject=crop.subject,
                crop=index,
                name=crop.name,
                task=crop.task,
                method=name,
                prompt=prompt,
                first=first,
                dice=fast_dice(traj.mask, crop.label),
                gate=traj.gate,
                expert=traj.expert,
                nsd=score,
            )
        )
    return rows


def evaluate(
    moe: MoESam3D,
    crops: Iterable,
    *,
    groups: int,
    taus,
    clicks: int,
    seed: int,
    nsd_mm: float = 2.0,
    desc: str = "evaluate",
) -> list[EvalRow]:
    """Rows for every crop (see :func:`evaluate_crop`); ``crops`` may be a generator, so that
    only one crop is in memory at a time."""
    moe = moe.eval()
    rows: list[EvalRow] = []
    for i, crop in enumerate(tqdm(crops, desc=desc, unit="crop", leave=False)):
        rows += evaluate_crop(
            moe, crop, i, groups=groups, taus=taus, clicks=clicks, seed=seed, nsd_mm=nsd_mm
        )
    return rows
