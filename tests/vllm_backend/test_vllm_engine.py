"""VLLMSpeechEngine: continuous batching on vLLM's AsyncLLM, streaming, cancellation (CPU, tiny export)."""
import threading
import time

import numpy as np
import pytest

pytest.importorskip("vllm", reason="the vLLM backend's tests run in .venv-vllm (scripts/setup_vllm.sh)")

from helpers.tokens import FRAME_SIZE


@pytest.fixture(scope="module")
def engine(vllm_export):
    from helpers.infer.generation import LengthGuard
    from helpers.infer.vllm_backend import VLLMSpeechEngine, load_tts_without_llm
    from helpers.profiles import RANDOM_SNAC_24KHZ

    # random weights never stop by themselves: a short guard keeps each request ~1 s of audio
    tts, folder = load_tts_without_llm(vllm_export, snac=RANDOM_SNAC_24KHZ, device="cpu",
                                       length_guard=LengthGuard(base_seconds=0.5, chars_per_second=50,
                                                                cap_seconds=1.0))
    eng = VLLMSpeechEngine(tts, folder, device="cpu", max_batch=32, max_queue=8,
                           engine_kw={"max_model_len": 1024})
    eng.start()  # runs the start-up self-test (the warm-up request) and raises if it fails
    assert eng.self_test_result[0] and "parsed" in eng.self_test_result[1], eng.self_test_result
    yield eng
    eng.stop()


def _job(engine, text="Hello there.", seed=0, stream=False, fmt="wav"):
    return engine.check(text=text, voice="female_us_01", seed=seed, response_format=fmt, stream=stream)


def test_whole_request_decodes(engine):
    audio = engine.synthesize(_job(engine), timeout=120)
    spf = engine.tts.codec.samples_per_frame
    assert audio.dtype == np.float32 and len(audio) >= spf and np.isfinite(audio).all()


def test_same_seed_same_audio(engine):
    a = engine.synthesize(_job(engine, seed=4), timeout=120)
    b = engine.synthesize(_job(engine, seed=4), timeout=120)
    assert np.array_equal(a, b)


def test_streaming_pieces_join_to_the_whole(engine):
    job = _job(engine, seed=2, stream=True)
    pieces, done = [], threading.Event()
    job.on_piece = pieces.append
    job.on_done = lambda audio, err: (pieces.append(err) if err else None, done.set())
    engine.submit(job)
    assert done.wait(120)
    assert all(isinstance(p, np.ndarray) for p in pieces) and len(pieces) > 1
    whole = engine.synthesize(_job(engine, seed=2), timeout=120)
    streamed = np.concatenate(pieces)
    assert len(streamed) == len(whole)
    assert np.max(np.abs(streamed - whole)) < 1e-4


def test_twenty_concurrent_requests_join_a_running_batch(engine):
    """20 requests submitted while others run: each joins vLLM's running batch at once (no waiting
    for a batch to finish), and all finish with decodable audio."""
    n = 20
    results, errors, done = {}, [], threading.Semaphore(0)
    first = _job(engine, text="A longer first request that is already running when the others come.", seed=99)
    first_done = threading.Event()
    first.on_done = lambda a, e: first_done.set()
    first.stream = False
    engine.submit(first)
    time.sleep(0.3)
    t0 = time.perf_counter()
    for i in range(n):
        job = _job(engine, seed=i)

        def on_done(audio, err, i=i):
            (errors.append(err) if err else results.__setitem__(i, (audio, time.perf_counter() - t0)))
            done.release()
        job.on_done = on_done
        engine.submit(job)
    assert max(engine.step_batches[-n:]) >= n  # they were all in flight together with the first
    for _ in range(n):
        assert done.acquire(timeout=300)
    assert not errors and len(results) == n
    assert first_done.wait(300)


def test_cancelled_request_stops(engine):
    job = _job(engine, seed=7, stream=True)
    got, done = [], threading.Event()

    def on_piece(p):
        got.append(p)
        job.cancelled.set()  # the client goes away after the first piece
    job.on_piece = on_piece
    job.on_done = lambda a, e: done.set()
    engine.submit(job)
    assert done.wait(120)
    assert len(got) <= 2  # at most a piece already on its way


def test_queue_bound_answers_503(engine):
    from helpers.infer.serve_engine import QueueFullError

    jobs = [_job(engine, seed=100 + i) for i in range(engine.max_batch + engine.max_queue + 1)]
    for j in jobs:
        j.on_done = lambda a, e: None
    with pytest.raises(QueueFullError):
        for j in jobs:
            engine.submit(j)
    for j in jobs:
        j.cancelled.set()
    # the accepted 40 hold their slots until their coroutines see the cancel: wait for them, so the next test
    # starts on an idle engine (CI once ran the next test while they drained: QueueFullError there)
    _wait_idle(engine)
    assert engine._in_flight == 0 and engine.waiting == 0


def _wait_idle(engine, timeout=300.0):
    t0 = time.perf_counter()
    while engine._in_flight and time.perf_counter() - t0 < timeout:
        time.sleep(0.05)


def test_streams_share_snac_calls(engine):
    """Four streaming requests whose frames wait together for the SNAC worker (held busy until vLLM has
    generated all of them, as when SNAC falls behind): the worker decodes them in shared, batched SNAC
    calls (counted: fewer calls than decoder calls, four streams in one), and each stream's pieces still
    join to its whole-request audio."""
    gate, n = threading.Event(), 4
    calls0 = len(engine.snac.calls)
    engine._decode_q.put((lambda: gate.wait(300),))  # the worker is busy: frames queue up behind this
    pieces, errors, dones = [[] for _ in range(n)], [], threading.Semaphore(0)
    for i in range(n):
        job = _job(engine, seed=40 + i, stream=True)
        job.on_piece = pieces[i].append
        job.on_done = lambda a, e: (errors.append(e) if e else None, dones.release())
        engine.submit(job)
    _wait_idle(engine)  # vLLM has generated every frame
    assert engine._in_flight == 0
    gate.set()
    for _ in range(n):
        assert dones.acquire(timeout=300)
    assert not errors
    calls = engine.snac.calls[calls0:]
    assert len(calls) < sum(calls) and max(calls) == n, calls
    for i in range(n):
        whole = engine.synthesize(_job(engine, seed=40 + i), timeout=120)
        streamed = np.concatenate(pieces[i])
        assert len(streamed) == len(whole) and np.max(np.abs(streamed - whole)) < 1e-4, i
