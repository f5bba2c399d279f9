"""SIGKILL 01, and 02, mid-source on a multi-shard streaming parquet source; rerun; compare bytes.

The source is a local folder laid out like a Hub dataset repository (README ``configs:`` +
several parquet files per split, two splits concatenated by the catalog's ``train_clean``
role of LibriTTS-R), read by the real ``datasets`` 4 streaming path: pins (fingerprint),
``IterableDataset.state_dict()`` resume points, ``to_common``. Rows read are counted by
the reader, one line per row in a counter file.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from hub_layout import write_libritts_card

from helpers.data import preprocess as pp
from helpers.data import source_stream
from helpers.data import tokenize_audio as ta
from helpers.profiles import ASSETS_CORPUS_DIR, REPO_ROOT
from helpers.data.corpus import read_metadata
from helpers.data.shards import list_shards
from drive_sim import SimDrive, VmDeath

FILES_PER_SPLIT, ROWS_PER_FILE = 3, 4
N_ROWS = 2 * FILES_PER_SPLIT * ROWS_PER_FILE  # 24 rows in 6 parquet files
SOURCE = source_stream.Source("libritts_r", "train_clean", None)
KW = dict(hours_scale=1e-5, n_samples=0, checkpoint_rows=3, progress=False)

READER = """
import dataclasses, time
from helpers.data import source_stream
from helpers.data.catalog import get_spec

class LocalRepo(source_stream.SourceReader):
    '''The catalog's LibriTTS-R read from a local Hub-like folder; counts rows read in a file.'''

    def __init__(self, repo, counter, delay=0.0):
        self.repo, self.counter, self.delay = repo, counter, delay

    def spec(self, source):
        return dataclasses.replace(get_spec(source.dataset), hub_id=self.repo)

    def rows(self, *a, **k):
        for t in super().rows(*a, **k):
            with open(self.counter, "a") as f:
                f.write(f"{t[0]}\\n")
            time.sleep(self.delay)  # slows the child so the kill lands mid-source
            yield t
"""
ns: dict = {}
exec(READER, ns)
LocalRepo = ns["LocalRepo"]


def rows_read(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.is_file() else 0


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    from datasets import Audio, Dataset, Features, Value

    root = tmp_path_factory.mktemp("libritts_like")
    (root / "data").mkdir()
    flacs = sorted(ASSETS_CORPUS_DIR.glob("*/*.flac"))[:N_ROWS]
    texts = {r["file"]: r["text"] for r in read_metadata()}
    feats = Features({"audio": Audio(sampling_rate=24000), "text_normalized": Value("string"),
                      "speaker_id": Value("string"), "id": Value("string")})
    # LibriTTS-R speaker ids are LibriSpeech reader ids (the catalog maps their documented sex):
    # each corpus voice folder stands in for one real reader id
    reader = {name: rid for name, rid in zip(sorted({p.parent.name for p in flacs}), ("14", "16", "17", "19", "20",
                                                                                       "22", "23", "25", "26", "27"))}
    k = 0
    for split in ("train.clean.100", "train.clean.360"):
        for f in range(FILES_PER_SPLIT):
            batch = flacs[k: k + ROWS_PER_FILE]
            k += ROWS_PER_FILE
            Dataset.from_dict({
                "audio": [{"bytes": p.read_bytes(), "path": p.name} for p in batch],
                "text_normalized": [texts[str(p)] for p in batch],
                "speaker_id": [reader[p.parent.name] for p in batch],
                "id": [f"{split}_{p.stem}" for p in batch],
            }, features=feats).to_parquet(str(root / "data" / f"{split}-{f:05d}-of-{FILES_PER_SPLIT:05d}.parquet"))
    write_libritts_card(root)
    return root


@pytest.fixture(scope="module")
def reference(repo, tmp_path_factory):
    """An uninterrupted 01 over the repo (every clip selected for phase 1, for 02)."""
    out = tmp_path_factory.mktemp("pre_ref")
    counter = out / "rows.txt"
    m = pp.run_preprocess(out, [SOURCE], reader=LocalRepo(str(repo), str(counter)), **KW)
    assert rows_read(counter) == N_ROWS and len(m) == N_ROWS
    assert (m["status"] == "kept").sum() >= N_ROWS - 2
    entry = pp.read_sources(out)[SOURCE.key]
    assert entry["done"] and entry["pin"]["fingerprint"] and [p[0] for p in entry["points"]] == list(range(0, N_ROWS + 1, 3))
    return out


def run_child(script: str, done, timeout=180):
    """Start ``script`` in a fresh Python, SIGKILL it once ``done()`` holds; True if it was killed."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=str(REPO_ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not done():
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert killed, f"the child finished before it could be killed (rc {proc.returncode}): {err.decode()[-2000:]}"
    return killed


PRE_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
{reader}
from helpers.data import preprocess as pp
pp.run_preprocess({out!r}, [source_stream.Source("libritts_r", "train_clean", None)],
                  reader=LocalRepo({repo!r}, {counter!r}, delay=0.15), **{kw!r})
"""


def test_sigkill_01_mid_source_resumes_with_identical_manifest(repo, reference, tmp_path):
    out, counter = tmp_path / "pre", tmp_path / "rows.txt"
    script = PRE_SCRIPT.format(root=str(REPO_ROOT), reader=READER, out=str(out), repo=str(repo),
                               counter=str(counter), kw=KW)

    def two_pieces_saved():
        try:
            return json.loads((out / pp.SOURCES_FILE).read_text())[SOURCE.key]["pieces"] >= 3
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            return False

    run_child(script, two_pieces_saved)
    entry = pp.read_sources(out)[SOURCE.key]
    assert not entry["done"] and 3 <= entry["pieces"] < N_ROWS // 3
    assert not (out / "parts" / f"{SOURCE.key}.parquet").exists()  # killed mid-source
    first_run = rows_read(counter)
    counter.unlink()
    pp.run_preprocess(out, [SOURCE], reader=LocalRepo(str(repo), str(counter)), **KW)
    again = rows_read(counter)
    print(f"rows read: {first_run} before the kill, {again} by the rerun, {N_ROWS} in the source")
    assert again < N_ROWS and again == N_ROWS - 3 * entry["pieces"]  # from the last saved piece on
    for name in (pp.MANIFEST_FILE, f"parts/{SOURCE.key}.parquet"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


TOK_SCRIPT = """
import sys, pandas as pd, torch
torch.set_num_threads(1)
sys.path.insert(0, {root!r})
{reader}
from helpers.data import tokenize_audio as ta
from helpers.data import preprocess as pp
from helpers.codec import SnacCodec
from helpers.profiles import RANDOM_SNAC_24KHZ
ta.run_tokenize({out!r}, pd.read_parquet({manifest!r}), SnacCodec.load(RANDOM_SNAC_24KHZ, device="cpu"),
                sources=pp.read_sources({pre!r}), reader=LocalRepo({repo!r}, {counter!r}), progress=False,
                **{kw!r})
"""
TOK_KW = dict(shard_size=2, batch_seconds=8.0, window=1)


def test_sigkill_02_mid_source_resumes_with_identical_shards(repo, reference, tmp_path, snac_random):
    m = pd.read_parquet(reference / pp.MANIFEST_FILE)
    kept = m.index[m["status"] == "kept"]
    m["phase1"] = m.index.isin(kept[::4])  # 6 clips spread over the six parquet files
    m["phase2"] = m["phase3"] = False
    manifest = tmp_path / "manifest.parquet"
    m.to_parquet(manifest, index=False)
    sources = pp.read_sources(reference)
    n_sel = int(m["phase1"].sum())

    ref = tmp_path / "tok_ref"
    s = ta.run_tokenize(ref, m, snac_random, sources=sources, reader=LocalRepo(str(repo), str(tmp_path / "r0")),
                        progress=False, **TOK_KW)
    assert s["utterances"] == n_sel and s["shards"] == -(-n_sel // 2)
    last_selected = int(m.loc[m["phase1"], "source_index"].max())
    assert s["rows_read"] == last_selected + 1  # stops at the last selected row

    out, counter = tmp_path / "tok", tmp_path / "rows.txt"
    script = TOK_SCRIPT.format(root=str(REPO_ROOT), reader=READER, out=str(out), manifest=str(manifest),
                               pre=str(reference), repo=str(repo), counter=str(counter), kw=TOK_KW)
    run_child(script, lambda: len(list_shards(out)) >= 2)
    done_before = len(list_shards(out))
    assert 2 <= done_before < s["shards"]
    s2 = ta.run_tokenize(out, m, snac_random, sources=sources, reader=LocalRepo(str(repo), str(tmp_path / "r2")),
                         progress=False, **TOK_KW)
    print(f"02 rerun: {s2['encoded_now']} clips encoded, {s2['rows_read']} rows read of {last_selected + 1}")
    assert 0 < s2["rows_read"] < last_selected + 1 and s2["encoded_now"] < n_sel
    names = sorted(p.name for p in ref.iterdir() if p.is_file())
    assert names == sorted(p.name for p in out.iterdir() if p.is_file())
    for name in names:  # shards, plan, speakers.json, phases.json: byte-identical
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name


def test_changed_local_corpus_is_refused(repo, reference, tmp_path):
    """The pinned local corpus changed (one parquet byte): refused before streaming, naming the source."""
    import shutil

    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    pin = dict(pp.read_sources(reference)[SOURCE.key]["pin"], hub_id=str(copy))  # same folder, as pinned
    reader = LocalRepo(str(copy), str(tmp_path / "c"))
    reader.check(SOURCE, pin)  # unchanged: accepted
    victim = sorted((copy / "data").glob("*.parquet"))[-1]
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(source_stream.SourceChanged, match="libritts_r__train_clean.*changed since this run pinned"):
        reader.check(SOURCE, pin)
    with pytest.raises(source_stream.SourceChanged, match="catalog now reads hub_id"):
        LocalRepo(str(repo), str(tmp_path / "c")).check(SOURCE, pin)


def test_hub_source_is_pinned_to_the_commit_sha(monkeypatch):
    """A Hub dataset is pinned to dataset_info(...).sha, and every later read streams that sha."""
    import huggingface_hub

    from helpers.data import catalog

    asked = []

    class FakeApi:
        def dataset_info(self, repo_id, revision=None):
            asked.append((repo_id, revision))
            return type("Info", (), {"sha": "a" * 40})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    reader = source_stream.SourceReader()
    src = source_stream.Source("vctk", "train")
    pin = reader.pin(src)
    assert pin["revision"] == "a" * 40 and pin["fingerprint"] is None and asked == [("sanchit-gandhi/vctk", None)]
    reader.check(src, pin)
    opened = []

    def fake_open(spec, role, streaming=True):
        opened.append((spec.hub_id, spec.revision, role, streaming))
        return iter(())

    monkeypatch.setattr(catalog, "open_dataset", fake_open)
    assert list(reader.rows(src, pin)) == []
    assert opened == [("sanchit-gandhi/vctk", "a" * 40, "train", True)]
    with pytest.raises(source_stream.SourceChanged, match="neither a revision nor a fingerprint"):
        reader.check(src, dict(pin, revision=None))

    class Offline:
        def dataset_info(self, repo_id, revision=None):
            raise ConnectionError("no network")

    monkeypatch.setattr(huggingface_hub, "HfApi", Offline)
    with pytest.raises(OSError, match="could not read the revision of dataset 'sanchit-gandhi/vctk'"):
        reader.pin(src)


class _DyingRepo(LocalRepo):
    """LocalRepo whose VM dies (VmDeath) after ``after`` rows were read."""

    def __init__(self, repo, counter, after):
        super().__init__(repo, counter)
        self.after, self.n = after, 0

    def rows(self, *a, **k):
        for t in super().rows(*a, **k):
            self.n += 1
            if self.n > self.after:
                raise VmDeath(f"after {self.after} rows")
            yield t


def _same_files(a: Path, b: Path, names):
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _deliver(sim, rng, how):
    """What reached Drive before the VM died: ``how`` picks among the pending files."""
    pend = sim.pending()
    keep = {"no pieces": lambda p: "/piece-" not in p and "/part-" not in p,
            "no index": lambda p: not p.endswith((pp.SOURCES_FILE, "plan.json")),
            "random": lambda p: rng.random() < 0.5}[how]
    sim.sync([p for p in pend if keep(p)])


@pytest.mark.parametrize("seed,how", [(0, "no pieces"), (1, "no index"), (2, "random")])
def test_01_and_02_resume_from_any_subset_of_their_files_on_drive(repo, reference, tmp_path, snac_random, seed, how):
    """Colab's mount uploads files in no guaranteed order: kill 01 (twice) and 02 mid-source with a
    subset of their files delivered to Drive (sources.json without the pieces it counts, pieces
    without sources.json, a random half), resume from Drive alone, compare bytes."""
    import random

    rng = random.Random(seed)
    sim = SimDrive(tmp_path / "sim", seed=seed)
    pre = sim.mount / "pre"
    for after in (rng.randint(7, 9), rng.randint(4, 6)):  # rows this run reads before it dies (2+ pieces)
        with pytest.raises(VmDeath):
            pp.run_preprocess(pre, [SOURCE], reader=_DyingRepo(str(repo), str(tmp_path / "c"), after), **KW)
        _deliver(sim, rng, how)
        sim.kill()
    pp.run_preprocess(pre, [SOURCE], reader=LocalRepo(str(repo), str(tmp_path / "c")), **KW)
    _same_files(pre, reference, [pp.MANIFEST_FILE, f"parts/{SOURCE.key}.parquet"])
    assert pp.read_sources(pre) == pp.read_sources(reference)

    m = pd.read_parquet(reference / pp.MANIFEST_FILE)
    kept = m.index[m["status"] == "kept"]
    m["phase1"] = m.index.isin(kept[::4])
    m["phase2"] = m["phase3"] = False
    sources = pp.read_sources(reference)
    ref = tmp_path / "tok_ref"
    ta.run_tokenize(ref, m, snac_random, sources=sources, reader=LocalRepo(str(repo), str(tmp_path / "r0")),
                    progress=False, **TOK_KW)
    tok = sim.mount / "tok"
    for after in (rng.randint(1, 4), rng.randint(1, 4)):
        with pytest.raises(VmDeath):
            ta.run_tokenize(tok, m, snac_random, sources=sources, progress=False, **TOK_KW,
                            reader=_DyingRepo(str(repo), str(tmp_path / "r1"), after))
        _deliver(sim, rng, how)
        sim.kill()
    ta.run_tokenize(tok, m, snac_random, sources=sources, reader=LocalRepo(str(repo), str(tmp_path / "r2")),
                    progress=False, **TOK_KW)
    names = sorted(p.name for p in ref.iterdir() if p.is_file())
    assert names == sorted(p.name for p in tok.iterdir() if p.is_file())
    _same_files(tok, ref, names)  # shards, plan, speakers.json, phases.json


def test_duplicate_only_source_is_skipped_without_reading_its_audio(repo, tmp_path, monkeypatch):
    """LibriTTS-R's overlap: a source whose rows an earlier source already read is settled from its ids and
    labels alone — rows() never streams it, no audio is decoded — and the manifest and report are the ones
    streaming it gives (every row a duplicate)."""
    import dataclasses
    import json

    from helpers.data import clips
    from helpers.data.catalog import get_spec

    class Overlap(LocalRepo):
        # 'train' of the local repo holds the same two splits as 'train_clean': the second source is all known
        def spec(self, source):
            spec = super().spec(source)
            return dataclasses.replace(spec, splits={**spec.splits, "train": spec.splits["train_clean"]})

    class StreamOnly(Overlap):
        def rows_without_audio(self, source, pin):
            return None  # the old path: stream every row

    sources = [source_stream.Source("libritts_r", "train", None), SOURCE]
    ref_out, new_out = tmp_path / "streamed", tmp_path / "skipped"
    ref = pp.run_preprocess(ref_out, sources, reader=StreamOnly(str(repo), str(tmp_path / "ref.txt")), **KW)
    assert rows_read(tmp_path / "ref.txt") == 2 * N_ROWS

    decoded = []
    real_decode = clips.decode_source
    monkeypatch.setattr(clips, "decode_source", lambda f: decoded.append(1) or real_decode(f))
    new = pp.run_preprocess(new_out, sources, reader=Overlap(str(repo), str(tmp_path / "new.txt")), **KW)
    assert rows_read(tmp_path / "new.txt") == N_ROWS  # the first source only
    assert len(decoded) == N_ROWS  # the second source's audio is never decoded
    assert (new[new["split_role"] == "train_clean"]["status"] == pp.DUPLICATE).all()
    pd.testing.assert_frame_equal(new, ref)
    assert json.loads((new_out / pp.REPORT_FILE).read_text()) == json.loads((ref_out / pp.REPORT_FILE).read_text())


def test_a_source_with_one_new_row_is_streamed(repo, tmp_path):
    """The id pass stops at the first unknown id: a source that is not all duplicates streams as before."""
    import dataclasses

    class Partial(LocalRepo):
        def spec(self, source):
            spec = super().spec(source)
            return dataclasses.replace(spec, splits={**spec.splits, "train": spec.splits["train_clean"][:1]})

    counter = tmp_path / "rows.txt"
    pp.run_preprocess(tmp_path / "out", [source_stream.Source("libritts_r", "train", None), SOURCE],
                      reader=Partial(str(repo), str(counter)), **KW)
    assert rows_read(counter) == N_ROWS // 2 + N_ROWS


def test_01_keeps_a_saved_piece_it_cannot_read_retries_then_stops_naming_it(repo, reference, tmp_path, monkeypatch):
    """Issue #30 case 9: one EIO reading a saved piece on resume used to delete every saved piece (and
    re-read them). Now a read error is retried; a transient one costs nothing (same manifest as the
    uninterrupted run), a persistent one stops with the file, errno and remedy, and deletes nothing."""
    from helpers.data import shards

    monkeypatch.setattr(shards, "READ_WAIT_S", 0.0)
    sim = SimDrive(tmp_path / "sim")
    pre = sim.mount / "pre"
    with pytest.raises(VmDeath):
        pp.run_preprocess(pre, [SOURCE], reader=_DyingRepo(str(repo), str(tmp_path / "c"), 8), **KW)
    sim.sync()
    sim.kill()
    pieces = sorted((pre / pp.PARTS_DIR / SOURCE.key).glob("piece-*.parquet"))
    assert len(pieces) >= 2
    sim.install(monkeypatch)
    rel = pieces[1].relative_to(sim.mount).as_posix()
    sim.eio[rel] = -1  # unreadable for good
    with pytest.raises(OSError) as e:
        pp.run_preprocess(pre, [SOURCE], reader=LocalRepo(str(repo), str(tmp_path / "c2")), **KW)
    msg = str(e.value)
    assert pieces[1].name in msg and "errno 5 EIO" in msg and "force_remount=True" in msg and "kept" in msg, msg
    assert sorted((pre / pp.PARTS_DIR / SOURCE.key).glob("piece-*.parquet")) == pieces  # nothing deleted
    sim.eio[rel] = 1  # one transient EIO: retried, and the run ends as if nothing happened
    counter = tmp_path / "c3"
    pp.run_preprocess(pre, [SOURCE], reader=LocalRepo(str(repo), str(counter)), **KW)
    assert sim.eio[rel] == 0  # the error really was hit
    _same_files(pre, reference, [pp.MANIFEST_FILE, f"parts/{SOURCE.key}.parquet"])
    assert rows_read(counter) <= N_ROWS - 3 * len(pieces)  # the saved pieces were not re-read
