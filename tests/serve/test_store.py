"""The expiring store shared by the viewer's sessions and MONAI Label's temporary images: both
refuse the same ids with the same messages and status codes, expire on the same timing, keep
the same directory layout and clean up alike."""

from __future__ import annotations

import asyncio

import pytest

from medmoe.errors import InputError
from medmoe.serve.app import _status
from medmoe.serve.engine import Engine
from medmoe.serve.monailabel.temp_images import TempImages
from medmoe.serve.store import Busy, ExpiringStore, NotFound, ServeConfig, SessionStore

KINDS = ("sessions", "temp_images")
TTL = 60.0


async def _chunks(data: bytes):
    for start in range(0, len(data), 1000):
        yield data[start : start + 1000]


def _make(kind, tmp_path, predictor, now, max_count=4):
    """A store of ``kind`` on the clock ``now[0]``, a function adding ``data`` to it, and the
    name of the file an entry keeps its upload under."""
    clock = lambda: now[0]  # noqa: E731
    if kind == "sessions":
        config = ServeConfig(data_dir=tmp_path, session_ttl_s=TTL, max_sessions=max_count)
        store = SessionStore(config=config, engine=Engine(predictor=predictor), clock=clock)

        def add(data: bytes) -> str:
            return asyncio.run(store.create(_chunks(data), name="scan.nii.gz")).id

        return store, add, "upload.nii.gz"
    store = TempImages(root=tmp_path / "tmp", ttl_s=TTL, max_count=max_count, clock=clock)

    def add_file(data: bytes) -> str:  # as the server does: the upload arrives as a file
        src = tmp_path / "upload.part"
        src.write_bytes(data)
        return store.add(src, "scan.nii.gz", 0.0).id

    return store, add_file, "image.nii.gz"


def _dirs(store: ExpiringStore) -> list[str]:
    return sorted(p.name for p in store.root.iterdir())


@pytest.mark.parametrize("kind", KINDS)
def test_bad_and_unknown_ids_are_refused_alike(kind, tmp_path, tiny_predictor):
    store, _, _ = _make(kind, tmp_path, tiny_predictor, [0.0])
    for bad in ("", "../" + "0" * 29, "0" * 31, "0" * 33, "A" * 32, "g" * 32, "0" * 31 + "/"):
        with pytest.raises(InputError) as err:
            store.get(bad)
        assert err.value.args == ("invalid session id",)
        assert _status(err.value) == 400
    with pytest.raises(NotFound) as err:
        store.get("0" * 32)
    assert err.value.args == (f"no session {'0' * 32} (it may have expired)",)
    assert _status(err.value) == 404


@pytest.mark.parametrize("kind", KINDS)
def test_unused_entries_expire_with_their_directory(kind, tmp_path, tiny_predictor, scan_path):
    now = [0.0]
    store, add, upload = _make(kind, tmp_path, tiny_predictor, now)
    sid = add(scan_path.read_bytes())
    assert _dirs(store) == [sid] and (store.root / sid / upload).is_file()
    now[0] = 59.0
    assert store.get(sid).last_used == 59.0  # use renews the lease
    now[0] = 119.0
    assert store.expire() == [] and store.get(sid).id == sid
    now[0] = 179.0  # unused for exactly the ttl: still alive
    assert store.expire() == [] and len(store) == 1
    now[0] = 179.5
    assert store.expire() == [sid]
    assert len(store) == 0 and _dirs(store) == []
    with pytest.raises(NotFound):
        store.get(sid)


@pytest.mark.parametrize("kind", KINDS)
def test_a_full_store_refuses_until_an_entry_expires(kind, tmp_path, tiny_predictor, scan_path):
    now = [0.0]
    store, add, _ = _make(kind, tmp_path, tiny_predictor, now, max_count=2)
    data = scan_path.read_bytes()
    first, second = add(data), add(data)
    now[0] = 30.0
    store.get(second)
    with pytest.raises(Busy) as err:
        add(data)
    assert err.value.args == ("the server already holds 2 sessions; retry later",)
    assert _status(err.value) == 503
    assert _dirs(store) == sorted([first, second])
    now[0] = 61.0  # the first has expired, the second was used at 30
    third = add(data)
    assert _dirs(store) == sorted([second, third])
    store.close()
    assert len(store) == 0 and _dirs(store) == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_upload_and_an_earlier_run_leave_nothing(kind, tmp_path, tiny_predictor):
    stale = tmp_path / ("sessions" if kind == "sessions" else "tmp") / ("ab" * 16)
    stale.mkdir(parents=True)
    (stale.parent / "kept").mkdir()  # not an id: never touched
    store, add, _ = _make(kind, tmp_path, tiny_predictor, [0.0])
    assert _dirs(store) == ["kept"]
    with pytest.raises(InputError, match="scan.nii.gz"):
        add(b"\x1f\x8b" + b"not a volume" * 40)
    assert _dirs(store) == ["kept"] and len(store) == 0
