"""SNAC decoding batched across streams (helpers.infer.snac_stream.push_batched, the vLLM backend's
SnacWorker): every stream gets the audio it gets decoded alone, and overlapping streams share calls."""
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers.infer.serve_engine import StreamRoute
from helpers.infer.snac_decode import STREAM_TOLERANCE, FrameDecoder, StreamDecoder
from helpers.infer.snac_stream import IncrementalDecoder, SnacPush, push_batched
from helpers.infer.vllm_backend import SnacWorker
from helpers.tokens import FRAME_SIZE, TokenLayout

torch.set_num_threads(1)

K = (1, 2, 4)  # codes per frame of SNAC 24 kHz's three codebooks


def _codes(rng, T):
    return [rng.integers(0, 4096, T * k) for k in K]


def _frame(codes, f):
    return [c[f * k:(f + 1) * k] for c, k in zip(codes, K)]


def _close(a, b):
    return a.shape == b.shape and float(np.abs(a - b).max(initial=0.0)) <= STREAM_TOLERANCE


def test_push_batched_equals_alone_and_batches(snac_random):
    """Four streams of different lengths starting at different frames, stepped together (one frame each per
    tick, as a server generates them): the due calls of each tick go to push_batched. Each stream's pieces
    equal its pieces decoded alone (same sizes; values to STREAM_TOLERANCE: on CPU a batch of rows may take
    another convolution kernel than one row, float rounding; rows never mix), and its audio equals the
    whole-clip decode. Streams past their first call and in step share calls; the first call (an empty
    decoder) has another state shape than later ones, so it batches only with other first calls."""
    fd = FrameDecoder(snac_random, seed=3)
    rng = np.random.default_rng(0)
    lens, starts = [21, 17, 25, 13], [0, 0, 4, 8]
    codes = [_codes(rng, T) for T in lens]
    alone = []
    for c, T in zip(codes, lens):
        sd = StreamDecoder(fd, chunk_frames=4, first_chunk_frames=2)
        alone.append([p for p in [sd.push(_frame(c, f)) for f in range(T)] + [sd.flush()] if len(p)])
    sds = [StreamDecoder(fd, chunk_frames=4, first_chunk_frames=2) for _ in lens]
    got, calls, pushes = [[] for _ in lens], [], 0
    for tick in range(max(s + T for s, T in zip(starts, lens)) + 1):
        jobs = []
        for s, (start, T) in enumerate(zip(starts, lens)):
            f = tick - start
            job = sds[s].take(_frame(codes[s], f)) if 0 <= f < T else sds[s].take_flush() if f == T else None
            if job is not None:
                jobs.append((s, job))
        pushes += len(jobs)
        for (s, _), out in zip(jobs, push_batched([j for _, j in jobs], calls)):
            got[s].append(out)
    for s in range(len(lens)):
        pieces = [p for p in got[s] if len(p)]
        assert [len(p) for p in pieces] == [len(p) for p in alone[s]], s
        assert all(_close(a, b) for a, b in zip(pieces, alone[s])), s
        assert _close(np.concatenate(pieces), fd.decode(codes[s])), s
    assert sum(calls) == pushes  # every due call ran, none twice
    assert len(calls) < pushes and max(calls) == len(lens)  # they shared SNAC calls, all four at once


def test_push_batched_bad_codes_fail_their_stream_only(snac_random):
    fd = FrameDecoder(snac_random, seed=0)
    rng = np.random.default_rng(1)
    good, bad = _codes(rng, 5), _codes(rng, 5)
    bad[2][7] = 4096  # one code past the codebook
    want = IncrementalDecoder(snac_random, fd._noise).push(good)
    decs = [IncrementalDecoder(snac_random, fd._noise) for _ in range(2)]
    calls = []
    out = push_batched([SnacPush(decs[0], bad), SnacPush(decs[1], good)], calls)
    assert isinstance(out[0], ValueError) and "codebook 3" in str(out[0]) and "4096" in str(out[0])
    assert _close(out[1], want) and calls == [1]
    assert decs[0].frames == 0 and decs[1].frames == 5  # the failed call left its decoder untouched
    with pytest.raises(ValueError, match="same decoder"):
        push_batched([SnacPush(decs[1], good), SnacPush(decs[1], good)])


# ----------------------------------------------------------------------------- the vLLM backend's worker
LAYOUT = TokenLayout(1000)


def _engine(snac_random):
    tts = SimpleNamespace(layout=LAYOUT, sample_rate=24000, frame_decoder=FrameDecoder(snac_random, seed=5))
    return SimpleNamespace(tts=tts, crossfade_ms=40.0, chunk_frames=4, first_chunk_frames=2)


def _job(log: list):
    return SimpleNamespace(cancelled=threading.Event(), on_piece=lambda p: log.append(("piece", p)))


def _frames(codes):
    toks = LAYOUT.codes_to_tokens(codes)
    return [tuple(int(t) for t in toks[i:i + FRAME_SIZE]) for i in range(0, len(toks), FRAME_SIZE)]


def _alone(engine, chunks):
    """Pieces of one stream decoded by itself (StreamRoute.add, as the HF engine does)."""
    log = []
    route = StreamRoute(engine, _job(log), len(chunks))
    for k, frames in enumerate(chunks):
        for f in frames:
            route.add(k, f)
        route.add(k, None)
    return [p for _, p in log]


def _items(streams, rng, bad=None):
    """The worker's queue as the event loop fills it: the streams' frames interleaved (each stream's own
    chunks interleaved too, as vLLM runs them at once), each chunk's end, and each job's on_done last.
    ``bad``: (stream, (chunk, frame index), tokens) put in place of that frame."""
    cursors = [[0] * len(chunks) for _, chunks in streams]
    items = []
    while True:
        open_ = [(s, k) for s, (_, chunks) in enumerate(streams) for k in range(len(chunks))
                 if cursors[s][k] <= len(chunks[k])]
        if not open_:
            break
        s, k = open_[rng.integers(len(open_))]
        route, chunks = streams[s]
        i = cursors[s][k]
        cursors[s][k] += 1
        frame = chunks[k][i] if i < len(chunks[k]) else None
        items.append((route, k, bad[2] if bad and bad[:2] == (s, (k, i)) else frame))
    for route, _ in streams:
        items.append((lambda r=route: r.job.log.append(("done", r.error)),))
    return items


def test_snac_worker_decodes_streams_together(snac_random):
    """Three streams (one of two chunks) arriving interleaved. The worker takes what is waiting: when it
    is behind (everything waiting at once) the streams' calls of one round share SNAC calls; when it
    keeps up (a few items per drain, random sizes) it decodes as they come. Either way each stream's
    pieces equal its pieces alone, its on_done comes after its last piece, and every due call runs once.
    A third run with one stream's frame corrupt and another cancelled half-way: the third stream's
    pieces are unchanged."""
    eng = _engine(snac_random)
    rng = np.random.default_rng(7)
    specs = [[14], [9, 11], [18]]
    chunks = [[_frames(_codes(rng, T)) for T in spec] for spec in specs]
    alone = [_alone(eng, c) for c in chunks]
    windows = sum(1 + (len(f) - 5) // 4 + 1 for c in chunks for f in c)  # first call at 5 frames, then per 4, flush

    def run(drain=None, bad=None, cancel_after=None, cancel=None):
        logs = [[] for _ in chunks]
        streams = []
        for log, c in zip(logs, chunks):
            job = _job(log)
            job.log = log
            streams.append((StreamRoute(eng, job, len(c)), c))
        items = _items(streams, np.random.default_rng(3), bad)
        worker = SnacWorker()
        i = 0
        while i < len(items):
            n = int(np.random.default_rng(i).integers(1, drain + 1)) if drain else len(items)
            if cancel is not None and i >= cancel_after:
                streams[cancel][0].job.cancelled.set()
            assert worker.handle(items[i:i + n])
            i += n
        return logs, worker.calls, [r for r, _ in streams]

    def same(log, want):
        pieces = [p for kind, p in log if kind == "piece"]
        return [len(p) for p in pieces] == [len(p) for p in want] and all(map(_close, pieces, want))

    for drain in (None, 6):
        logs, calls, routes = run(drain)
        for s, log in enumerate(logs):
            assert same(log, alone[s]), (drain, s)
            assert log[-1] == ("done", None) and sum(kind == "done" for kind, _ in log) == 1
        assert sum(calls) == windows, drain
        if drain is None:  # behind: the three streams' calls of a round share one SNAC call
            assert len(calls) < windows and max(calls) == 3, calls  # (a stream's chunks decode in turn)

    logs, calls, routes = run(bad=(1, (1, 3), (0,) * FRAME_SIZE), cancel_after=20, cancel=2, drain=6)
    assert isinstance(routes[1].error, ValueError) and logs[1][-1] == ("done", routes[1].error)
    assert len([p for kind, p in logs[1] if kind == "piece"]) < len(alone[1])  # stream 1 stopped at its bad frame
    assert sum(len(p) for kind, p in logs[2] if kind == "piece") < sum(len(p) for p in alone[2])  # cancelled
    assert same(logs[0], alone[0]) and logs[0][-1] == ("done", None)


def test_snac_worker_stops_after_decoding_what_came_first(snac_random):
    eng = _engine(snac_random)
    rng = np.random.default_rng(2)
    c = [_frames(_codes(rng, 6))]
    log = []
    route = StreamRoute(eng, _job(log), 1)
    worker = SnacWorker()
    items = [(route, 0, f) for f in c[0]] + [(route, 0, None), None, (lambda: log.append("after stop"),)]
    assert worker.handle(items) is False
    assert [len(p) for _, p in log] == [len(p) for p in _alone(eng, c)] and "after stop" not in log
