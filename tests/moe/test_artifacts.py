from __future__ import annotations

import pytest
import torch
from tests.moe.helpers import shape_sample

from medmoe.errors import CheckpointError
from medmoe.moe import EmbeddingCache, ExpertInfo, load_expert, save_expert
from medmoe.sam3d import Sam3DConfig, build_sam3d


def test_expert_round_trip_and_base_hash_refusal(tmp_path):
    torch.manual_seed(1)
    base = build_sam3d("tiny")
    dec = base.mask_decoder
    info = ExpertInfo(
        name="cubes",
        labels=["cube"],
        base_sha256="a" * 64,
        model_config=base.config.to_dict(),
        train_config={"lr": 1e-4},
        val_dice=0.5,
    )
    save_expert(tmp_path / "ex", decoder=dec, info=info)
    assert sorted(p.name for p in (tmp_path / "ex").iterdir()) == [
        "decoder.safetensors",
        "expert.json",
    ]
    loaded, got = load_expert(tmp_path / "ex", base_sha256="a" * 64, config=base.config)
    assert got.name == "cubes" and got.labels == ["cube"] and got.val_dice == 0.5
    assert Sam3DConfig.from_dict(got.model_config) == base.config
    for (k, a), (k2, b) in zip(dec.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    with pytest.raises(CheckpointError, match="different base checkpoint"):
        load_expert(tmp_path / "ex", base_sha256="b" * 64)
    (tmp_path / "ex" / "decoder.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="decoder.safetensors"):
        load_expert(tmp_path / "ex")


def test_cache_encodes_once_and_repairs_corrupt_shards(tmp_path):
    calls = []

    def encoder(x):
        calls.append(1)
        return x[:, :, ::16, ::16, ::16] * 2

    cache = EmbeddingCache(root=tmp_path, base_sha256="c" * 64, encoder=encoder)
    s = shape_sample("sphere", 0)
    first = cache.get(s.key, s.image)
    again = cache.get(s.key, s.image)
    assert torch.equal(first, again) and len(calls) == 1 and cache.encoder_calls == 1
    cache.path(s.key).write_bytes(cache.path(s.key).read_bytes()[:-7])  # truncate the shard
    fixed = cache.get(s.key, s.image)
    assert torch.equal(fixed, first) and cache.repaired == 1 and len(calls) == 2
    other = EmbeddingCache(root=tmp_path, base_sha256="d" * 64, encoder=encoder)
    other.get(s.key, s.image)
    assert len(calls) == 3  # another base never reads this base's embeddings
