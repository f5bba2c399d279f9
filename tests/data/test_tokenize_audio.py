"""Tokenization: shards of codes from the assets corpus through the datasets path,
resume after SIGKILL gives byte-identical shards, indexes for cloning references."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.data import preprocess as pp
from helpers.data import clips
from helpers.data import source_stream
from helpers.data import tokenize_audio as ta
from helpers.profiles import REPO_ROOT
from helpers.data.shards import list_shards, read_shard

N_SELECTED = 6  # clips to encode: enough for 2 shards of 3, small enough for CPU
SHARD_KW = dict(shard_size=3, batch_seconds=8.0, window=2)


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory):
    """01 on the real assets corpus (catalog.open_dataset), then phases narrowed to N_SELECTED clips."""
    out = tmp_path_factory.mktemp("pre")
    m = pp.run_preprocess(out, source_stream.plan_sources("assets"), hours_scale=source_stream.HOURS_SCALE["assets"],
                          n_samples=0, progress=False)
    assert (m["status"] == "kept").sum() > 50  # the espeak corpus is clean speech
    for c in pp.PHASE_COLUMNS:
        assert m[c].any(), f"tiny scale must give {c} some clips"
    kept_idx = m.index[m["status"] == "kept"]
    keep = set(kept_idx[:N_SELECTED])
    m["phase1"] = m.index.isin(keep)
    m["phase2"] = m.index.isin(list(keep)[:2])
    m["phase3"] = False
    path = out / "small_manifest.parquet"
    m.to_parquet(path, index=False)
    return path


def sources_of(manifest_path):
    return pp.read_sources(Path(manifest_path).parent)


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def reference(manifest_path, tmp_path_factory, snac_random):
    folder = tmp_path_factory.mktemp("tok_ref")
    summary = ta.run_tokenize(folder, pd.read_parquet(manifest_path), snac_random, sources=sources_of(manifest_path),
                              progress=False, prefetch=0, **SHARD_KW)  # the sequential path: stream, decode, encode in turn
    return folder, summary


def test_shards_hold_codes_and_metadata(reference, manifest_path, snac_random):
    folder, summary = reference
    m = pd.read_parquet(manifest_path)
    sel = ta.selected_rows(m)
    assert summary["shards"] == 2 and summary["utterances"] == N_SELECTED
    utts = [u for p in list_shards(folder) for u in read_shard(p)]
    assert [u.utterance_id for u in utts] == sel["utterance_id"].tolist()  # manifest order
    for u, r in zip(utts, sel.to_dict("records")):
        assert (u.dataset, u.speaker, u.accent, u.emotion, u.text) == (r["dataset"], r["speaker"], r["accent"],
                                                                       r["emotion"], r["text"])
        assert u.n_frames == snac_random.n_frames(round(r["duration_s"] * 24000))
    # the codes are the codes of the preprocessed clip encoded alone
    first = sel.iloc[0]
    src = source_stream.Source("assets", "train")
    (rec, p), = [clips.preprocess_row(row) for _, row, _ in source_stream.SourceReader().rows(src, source_stream.SourceReader().pin(src))
                 if isinstance(row, dict) and row["utterance_id"] == first["utterance_id"]]
    for a, b in zip(utts[0].codes, snac_random.encode(p.wav)):
        assert np.array_equal(a, b)
    assert not (folder / ta.PARTIAL_DIR).exists() or not any((folder / ta.PARTIAL_DIR).iterdir())


def test_data_footprint(reference, manifest_path, tmp_path):
    folder, summary = reference
    f = ta.data_footprint(manifest_path.parent, folder)
    shards = list_shards(folder)
    assert f["shards_bytes"] == sum(p.stat().st_size for p in shards) > 0
    assert f["tokens_bytes"] > f["shards_bytes"]  # plus plan, speakers.json, phases.json
    assert f["shard_hours"] == pytest.approx(summary["hours"], rel=1e-6)
    assert f["shards_bytes_per_hour"] == pytest.approx(f["shards_bytes"] / f["shard_hours"])
    assert f["manifest_bytes"] == (manifest_path.parent / pp.MANIFEST_FILE).stat().st_size
    assert f["preprocess_bytes"] > f["manifest_bytes"] and f["kept_hours"] > 0
    empty = ta.data_footprint(tmp_path / "none", tmp_path / "none2")
    assert empty["preprocess_bytes"] == empty["shards_bytes"] == 0 and empty["shards_bytes_per_hour"] is None


def test_indexes(reference, manifest_path):
    folder, _ = reference
    m = pd.read_parquet(manifest_path)
    index = ta.read_speaker_index(folder)
    sel = ta.selected_rows(m)
    assert sorted(u for ids in index.values() for u in ids) == sorted(sel["utterance_id"])
    for spk, ids in index.items():
        assert set(sel.loc[sel["utterance_id"].isin(ids), "speaker"]) == {spk}
    assert ta.read_phase_ids(folder, 1) == sel["utterance_id"].tolist()
    assert len(ta.read_phase_ids(folder, 2)) == 2 and ta.read_phase_ids(folder, 3) == []
    rng = np.random.default_rng(0)
    spk, ids = next((s, i) for s, i in index.items() if len(i) > 1)
    for _ in range(5):
        ref = ta.pick_reference(index, spk, ids[0], rng)
        assert ref in ids and ref != ids[0]
    lone = {"x": ["x:1"]}
    assert ta.pick_reference(lone, "x", "x:1", rng) is None


def test_rerun_skips_finished_and_plan_change_refused(reference, manifest_path, snac_random):
    folder, _ = reference
    before = files(folder)

    class Exploding(source_stream.SourceReader):
        def rows(self, *a, **k):
            raise AssertionError("nothing left to encode: the source must not be streamed")

    s = ta.run_tokenize(folder, pd.read_parquet(manifest_path), snac_random, sources=sources_of(manifest_path),
                        reader=Exploding(), progress=False, **SHARD_KW)
    assert s["encoded_now"] == 0 and s["rows_read"] == 0 and files(folder) == before
    with pytest.raises(ValueError, match="different plan"):
        ta.run_tokenize(folder, pd.read_parquet(manifest_path), snac_random, sources=sources_of(manifest_path),
                        progress=False, **{**SHARD_KW, "shard_size": 4})


def test_changed_source_is_loud(manifest_path, tmp_path, snac_random):
    m = pd.read_parquet(manifest_path)

    class NoRows(source_stream.SourceReader):
        def rows(self, *a, **k):
            yield from []

    with pytest.raises(RuntimeError, match="not found"):
        ta.run_tokenize(tmp_path, m, snac_random, sources=sources_of(manifest_path), reader=NoRows(),
                        progress=False, **SHARD_KW)
    # a pinned local corpus whose files changed is refused before anything is encoded
    sources = sources_of(manifest_path)
    sources["assets__train"]["pin"]["fingerprint"] = "0" * 64
    with pytest.raises(source_stream.SourceChanged, match="changed since this run pinned it"):
        ta.run_tokenize(tmp_path / "b", m, snac_random, sources=sources, progress=False, **SHARD_KW)
    with pytest.raises(ValueError, match="lacks 01's decisions"):
        ta.run_tokenize(tmp_path / "c", m.drop(columns=["gain_db"]), snac_random, sources=sources_of(manifest_path),
                        progress=False, **SHARD_KW)


KILL_SCRIPT = """
import sys, pandas as pd, torch
torch.set_num_threads(1)
sys.path.insert(0, {root!r})
from helpers.data import tokenize_audio as ta
from helpers.codec import SnacCodec
from helpers.profiles import RANDOM_SNAC_24KHZ
from helpers.data import preprocess as pp
ta.run_tokenize({out!r}, pd.read_parquet({manifest!r}), SnacCodec.load(RANDOM_SNAC_24KHZ, device="cpu"),
                sources=pp.read_sources({pre!r}), progress=False, shard_size=3, batch_seconds=8.0, window=2)
"""


def test_kill_and_rerun_gives_identical_shards(reference, manifest_path, tmp_path, snac_random):
    """SIGKILL a real tokenization process (prefetching, the default) at a random moment after its first write,
    rerun, compare bytes with the sequential reference."""
    ref_folder, _ = reference
    out = tmp_path / "tokens"
    code = KILL_SCRIPT.format(root=str(REPO_ROOT), out=str(out), manifest=str(manifest_path),
                              pre=str(manifest_path.parent))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=str(REPO_ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    partial = out / ta.PARTIAL_DIR
    while time.time() < deadline and proc.poll() is None:
        if list_shards(out) or (partial.is_dir() and any(partial.rglob("part-*.parquet"))):
            break
        time.sleep(0.05)
    time.sleep(random.Random().uniform(0.0, 0.6))  # a random point of the remaining work
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    if not killed:
        assert proc.returncode == 0, err.decode()[-2000:]
    assert out.is_dir() and (list_shards(out) or partial.is_dir()), err.decode()[-2000:]
    done_before = {p.name for p in list_shards(out)}
    print("killed:", killed, "finished shards before rerun:", sorted(done_before))
    assert len(done_before) < 2 or not killed  # it was stopped mid-way

    ta.run_tokenize(out, pd.read_parquet(manifest_path), snac_random, sources=sources_of(manifest_path),
                    progress=False, **SHARD_KW)
    assert files(out) == files(ref_folder)  # shards, plan, speakers.json, phases.json: byte-identical
    assert not partial.exists() or not any(partial.iterdir())


def test_full_disk_refuses_a_shard_before_writing(tmp_path, monkeypatch):
    """A shard that does not fit fails with the sizes named, and the shard already there is untouched."""
    from helpers.colab import drive
    from helpers.data.shards import Utterance, write_shard

    def utt(i):
        codes = [np.full(4 * 2 ** k, i, dtype=np.int64) for k in range(3)]
        return Utterance(f"ds:{i}", "ds", "ds:spk", "us", "female", "", f"sentence {i}", 4 / 12, codes)

    path = tmp_path / "shard-00000.parquet"
    write_shard(path, [utt(1)])
    before = path.read_bytes()
    monkeypatch.setattr(drive, "free_bytes", lambda p: 10)
    with pytest.raises(drive.InsufficientSpace, match="token shard shard-00000.parquet"):
        write_shard(path, [utt(2), utt(3)])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-00000.parquet"]  # no temp file left


def test_prefetch_gives_the_sequential_bytes(reference, manifest_path, tmp_path, snac_random):
    """Decoding ahead in a thread while SNAC encodes changes nothing on disk (depth 1 and a deep queue)."""
    ref_folder, _ = reference
    for depth in (1, 64):
        out = tmp_path / f"prefetch{depth}"
        ta.run_tokenize(out, pd.read_parquet(manifest_path), snac_random, sources=sources_of(manifest_path),
                        progress=False, prefetch=depth, **SHARD_KW)
        assert files(out) == files(ref_folder)


def test_prefetched_keeps_order_raises_where_it_failed_and_stops_when_closed():
    import threading

    assert list(ta.prefetched(iter(range(100)), 3)) == list(range(100))

    def failing():
        yield 1
        yield 2
        raise OSError("stream broke at row 3")

    got = []
    with pytest.raises(OSError, match="row 3"):
        for x in ta.prefetched(failing(), 2):
            got.append(x)
    assert got == [1, 2]

    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    gen = ta.prefetched(endless(), 4)
    assert [next(gen) for _ in range(5)] == list(range(5))
    gen.close()
    n = len(produced)
    assert n <= 5 + 4 + 2  # bounded read-ahead
    assert not any(t.name == "02-prefetch" and t.is_alive() for t in threading.enumerate())
    with pytest.raises(ValueError):
        next(ta.prefetched(iter([1]), 0))


def test_batches_sized_by_device(snac_random):
    """CPU encodes clip by clip (batching only adds padding there); the caller's budget is kept as given."""
    assert snac_random.device.type == "cpu"
    assert snac_random.batch_plan(600.0) == (600.0, 1)
