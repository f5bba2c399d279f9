"""helpers.publish.upload: export contents and loadability, the model card, dry-run and mocked uploads,
and the HF token never appearing in any output or file. No network: HfApi is a stand-in."""
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from helpers.publish import upload as pb
from helpers.publish import export
from helpers.publish import model_card
from helpers.profiles import RANDOM_SNAC_24KHZ, TINY_LLAMA, RunPaths, get_profile
from helpers.tokens import AUDIO_END, EMOTIONS, PAD, VOICES, TokenLayout

torch.set_num_threads(1)

FAKE_TOKEN = "hf_TESTtokenNEVERprintMe0123456789abcdef"
LLAMA = "meta-llama/Llama-3.2-3B"


def _build_run(root: Path) -> RunPaths:
    """A run directory as notebooks 01-06 leave it: stage folders, logs, voices, a preprocessing
    report, plus an optimizer checkpoint that must never reach the export."""
    from helpers.train.config import StageConfig
    from helpers.models import extend_vocabulary, load_base, save_stage
    from helpers.train.recipe import METRICS_FIELDS
    from helpers.colab.runlog import CsvLog

    paths = RunPaths(root).ensure()
    model, tok = load_base(TINY_LLAMA)
    model, tok, _, rep = extend_vocabulary(model, tok)
    save_stage(model, tok, paths.stage(1), metadata=rep.to_dict())
    for s, (lr, phase) in {2: (5e-5, 1), 3: (1e-5, 2), 4: (5e-6, 3)}.items():
        d = paths.stage(s)
        d.mkdir(parents=True)
        (d / "config.json").write_text(StageConfig(stage=s, phase=phase, learning_rate=lr, max_seq_len=256,
                                                   max_steps=3).to_json())
        log = CsvLog(d / "metrics.csv", METRICS_FIELDS)
        for step in (1, 2, 3):
            log.append({"step": step, "epoch": 0, "loss": 5.0, "lr": lr, "grad_norm": 1.0, "target_tokens": 90,
                        "tokens": 1000 * s * step, "tokens_per_s": 10.0, "elapsed_s": 360.0 * step})
        (d / "voices.json").write_text(json.dumps({"assignments": {"male_us_01": "assets:male_us_01",
                                                                   "female_uk_01": "assets:female_uk_01"},
                                                   "unassigned": []}))
        with torch.no_grad():  # each stage "trains": different weights, so the export provably takes stage 4's
            model.model.norm.weight.fill_(float(s))
        save_stage(model, tok, d / "model", metadata={"stage": s, "step": 3, "hardware": "1x test CPU"})
    ck = paths.stage(4) / "checkpoints" / "step-00000003"
    ck.mkdir(parents=True)
    (ck / "trainer.pt").write_bytes(b"optimizer state")
    paths.preprocess.mkdir()
    (paths.preprocess / "report.json").write_text(json.dumps({
        "hours_by_dataset": {"assets": 0.05, "vctk": 1.25}, "hours_by_emotion": {"neutral": 1.2, "happy": 0.1}}))
    return paths


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Run directory + its export (recorded base model: Llama 3.2), built with HF_TOKEN set."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_TOKEN", FAKE_TOKEN)
        paths = _build_run(tmp_path_factory.mktemp("pub") / "run")
        result = export.export_model(paths, base_model=LLAMA, codec_model=RANDOM_SNAC_24KHZ, log=lambda *_: None)
        model_card.write_model_card(paths, repo_id="someone/OptimumLLM-Audio-test")
    return paths, result


@pytest.fixture(autouse=True)
def _token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_token_absent(root: Path, *texts: str):
    for t in texts:
        assert FAKE_TOKEN not in t
    for p in root.rglob("*"):
        if p.is_file():
            assert FAKE_TOKEN.encode() not in p.read_bytes(), p


# ----------------------------------------------------------------------------- export
def test_export_holds_exactly_the_published_files(run):
    paths, result = run
    names = {f.path for f in export.export_listing(paths.export)}
    assert names == {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                     "tokenizer_config.json", export.CONTRACT_FILE, export.NOTICE_FILE, export.CARD_FILE}
    assert result.stage == 4 and result.source == paths.stage(4) / "model" and not result.skipped
    assert not any(p.suffix in (".pt", ".bin") for p in paths.export.rglob("*"))  # no optimizer / checkpoints
    assert "Copyright © Meta Platforms" in (paths.export / export.NOTICE_FILE).read_text()
    for p in paths.export.rglob("*.json"):  # nothing says where the run lived
        text = p.read_text()
        assert "_name_or_path" not in text and str(paths.root) not in text, p.name


def test_export_contract_config_and_generation_config(run):
    from transformers import AutoTokenizer

    from helpers.infer.engine import INFERENCE_CONFIG

    paths, _ = run
    assert export.CONTRACT_FILE == INFERENCE_CONFIG  # the file OptimumTTS.from_pretrained reads
    tok = AutoTokenizer.from_pretrained(str(paths.export))
    layout = TokenLayout.from_tokenizer(tok)  # every contract token at its id
    cfg = export.read_contract_config(paths.export, tok)
    assert cfg["snac_model"] == RANDOM_SNAC_24KHZ and cfg["base_model"] == LLAMA
    assert cfg["voices"] == list(VOICES) and cfg["emotions"] == list(EMOTIONS)
    assert cfg["tokens"]["base_vocab_size"] == layout.base_vocab_size
    assert cfg["tokens"]["structure"][AUDIO_END] == layout.audio_end_id
    assert cfg["trained_voices"] == {"male_us_01": "assets:male_us_01", "female_uk_01": "assets:female_uk_01"}
    assert cfg["source"]["stage"] == 4 and cfg["source"]["dtype"] == "bfloat16"
    gen = json.loads((paths.export / "generation_config.json").read_text())
    assert gen["eos_token_id"] == layout.audio_end_id and gen["pad_token_id"] == layout.token_id(PAD)
    assert gen["do_sample"] is True and gen["max_new_tokens"] % 7 == 1


def test_export_loads_with_plain_transformers_and_holds_stage4_weights(run):
    from transformers import AutoModelForCausalLM
    from safetensors.torch import load_file

    paths, _ = run
    model = AutoModelForCausalLM.from_pretrained(str(paths.export))
    assert model.dtype == torch.bfloat16
    assert torch.all(model.model.norm.weight == 4.0)  # stage 4's weights, not an earlier stage's
    src = load_file(str(paths.stage(4) / "model" / "model.safetensors"))
    emb = src["model.embed_tokens.weight"].to(torch.bfloat16)
    assert torch.equal(model.get_input_embeddings().weight, emb)
    info = export.verify_export(paths.export, paths)
    assert info["architecture"] == "LlamaForCausalLM" and info["dtype"] == "bfloat16"


def test_card_usage_snippet_runs_against_the_export(run, tmp_path, monkeypatch):
    from helpers.infer.generation import LengthGuard
    from helpers.infer.engine import OptimumTTS

    import sys

    import helpers

    paths, _ = run
    card = (paths.export / export.CARD_FILE).read_text()
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)  # install + built-in voice; cloning, dialogue, stream
    code = "\n".join(blocks)
    assert len(blocks) == 2 and '"someone/OptimumLLM-Audio-test"' in blocks[0]
    assert "from optimumllm_audio import OptimumTTS" in code and "pip install optimumllm-audio" in card
    # the installed distribution's import name is this source (pyproject.toml maps optimumllm_audio -> helpers)
    monkeypatch.setitem(sys.modules, "optimumllm_audio", helpers)
    # The card's imports load modules under optimumllm_audio.* and bind them as attributes of the helpers
    # package object; put both back afterwards so later tests see one copy of every module.
    before = {k for k in sys.modules if k.startswith("optimumllm_audio.")}
    attrs = dict(vars(helpers))

    def restore():
        for k in [k for k in sys.modules if k.startswith("optimumllm_audio.") and k not in before]:
            del sys.modules[k]
        for k in [k for k in vars(helpers) if k not in attrs]:
            delattr(helpers, k)
        for k, v in attrs.items():
            setattr(helpers, k, v)

    from tiny_export import speechy

    sf.write(tmp_path / "reference_voice.wav", speechy(6.0, seed=1), 24000)
    sf.write(tmp_path / "custom_voice.wav", speechy(6.0, seed=2), 24000)
    original = OptimumTTS.from_pretrained.__func__
    # A short length guard keeps the untrained model's output (it never stops by itself) to ~0.5 s.
    monkeypatch.setattr(OptimumTTS, "from_pretrained", classmethod(
        lambda cls, name, **kw: original(cls, name, length_guard=LengthGuard(0.3, 100.0, 0.5), **kw)))
    monkeypatch.chdir(tmp_path)
    ns = {}
    try:
        exec(code.replace('"someone/OptimumLLM-Audio-test"', repr(str(paths.export))), ns)
    finally:
        restore()
    assert [t.voice for t in ns["wav"].turns] == ["male_us_01", "custom_voice"]  # the dialogue ran last
    wav, sr = sf.read(tmp_path / "welcome.wav")
    assert sr == 24000 and wav.size > 0 and np.isfinite(wav).all()


def test_export_rerun_skips_and_foreign_files_are_refused(run, tmp_path):
    paths, _ = run
    again = export.export_model(paths, base_model=LLAMA, codec_model=RANDOM_SNAC_24KHZ, log=lambda *_: None)
    assert again.skipped
    copy = tmp_path / "export"
    shutil.copytree(paths.export, copy)
    (copy / "optimizer.pt").write_bytes(b"x")
    with pytest.raises(export.ExportError, match="optimizer.pt"):
        export.export_listing(copy)
    (copy / "optimizer.pt").unlink()
    (copy / "config.json").write_text(json.dumps({"_source": str(paths.root / "stage4")}))
    with pytest.raises(export.ExportError, match="config.json contains"):
        export.check_privacy(copy, export.private_strings(paths))
    (copy / "config.json").write_text(json.dumps({"note": FAKE_TOKEN}))
    with pytest.raises(export.ExportError, match="the HF token") as e:
        export.check_privacy(copy, export.private_strings(paths))
    assert FAKE_TOKEN not in str(e.value)


def test_no_finished_stage_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="03_vocab_extension"):
        export.export_model(RunPaths(tmp_path / "empty"), base_model=LLAMA, codec_model=RANDOM_SNAC_24KHZ)


# ----------------------------------------------------------------------------- model card
def test_card_has_required_sections_and_the_llama_licence(run):
    paths, _ = run
    card = (paths.export / export.CARD_FILE).read_text()
    front = card.split("---")[1]
    assert "license: llama3.2" in front and f"base_model: {LLAMA}" in front
    assert "pipeline_tag: text-to-speech" in front and "- sanchit-gandhi/vctk" in front
    assert "**Built with Llama**" in card and "Llama 3.2 Community License" in card
    for heading in ("## Usage", "## Voices", "## Emotions and tags", "## Training data", "## Training procedure",
                    "## Evaluation", "## Limitations", "## Responsible use", "## Licence"):
        assert heading in card, heading
    assert "consent" in card.lower() and "permission" in card
    assert "CC-BY-4.0" in card and "project-generated (espeak-ng)" in card  # datasets with licences
    for v in VOICES:
        assert v in card
    for e in EMOTIONS:
        assert f"emotion:{e}" in card
    # stages as run: steps, tokens (last metrics row), hours (elapsed_s / 3600), hardware
    assert re.search(r"\| 4 \| speaker & emotion alignment \| 5e-06 \| 3 \| 3 \| 12000 \| 0\.3 \| 1x test CPU \| "
                     r"finished \|", card)
    assert "Not evaluated" in card
    assert str(paths.root) not in card and FAKE_TOKEN not in card


def test_card_embeds_the_evaluation_table_verbatim(run, tmp_path):
    paths, _ = run
    other = RunPaths(tmp_path / "run")
    shutil.copytree(paths.root, other.root)
    other.eval.mkdir()
    # what helpers.evaluate.report.write_report writes: targets.csv (the table) + report.json (judges, test set)
    (other.eval / "targets.csv").write_text("metric,Orpheus (3B),target,This model,pass\n"
                                            "WER,3%,≤ 5.0%,4.2%,✅ pass\nPESQ,3.80,≥ 3.50,2.87,❌ fail\n")
    (other.eval / "report.json").write_text(json.dumps({"summary": {"wer": 0.042}, "judges": {"asr": "tiny.en"},
                                                        "testset": {"version": 3, "profile": "tiny", "n_items": 40}}))
    card = model_card.build_model_card(other, repo_id="someone/x")
    assert "| metric | Orpheus (3B) | target | This model | pass |" in card
    assert "| WER | 3% | ≤ 5.0% | 4.2% | ✅ pass |" in card and "| PESQ | 3.80 | ≥ 3.50 | 2.87 | ❌ fail |" in card
    assert "asr = `tiny.en`" in card and "40 items" in card
    assert "Not evaluated" not in card
    assert str(other.eval / "report.json") in pb.where(other)


def test_card_of_the_tiny_profile_and_unknown_base_models(run, tmp_path):
    paths, _ = run
    other = RunPaths(tmp_path / "run")
    shutil.copytree(paths.root, other.root)
    cfg_path = other.export / export.CONTRACT_FILE
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "base_model": TINY_LLAMA}))
    card = model_card.build_model_card(other, repo_id="someone/x")
    assert "Test model" in card and "Built with Llama" not in card and "license: apache-2.0" in card
    cfg_path.write_text(json.dumps({**cfg, "base_model": "mistralai/Mistral-7B-v0.1"}))
    with pytest.raises(ValueError, match="no licence known"):
        model_card.build_model_card(other, repo_id="someone/x")
    with pytest.raises(ValueError, match="owner/name"):
        model_card.build_model_card(paths, repo_id="not a repo")


# ----------------------------------------------------------------------------- upload
class FakeApi:
    """Stands in for huggingface_hub.HfApi: records calls, optionally fails."""

    def __init__(self, fail_with: Exception | None = None):
        self.calls, self.fail_with = [], fail_with

    def create_repo(self, repo_id, **kw):
        from huggingface_hub import RepoUrl

        self.calls.append(("create_repo", repo_id, kw))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", kw["repo_id"], kw))
        if self.fail_with is not None:
            raise self.fail_with
        return type("Commit", (), {"oid": "abc123"})()


class NoNetwork:
    def __getattr__(self, name):
        raise AssertionError(f"dry run must not call HfApi.{name}")


def test_dry_run_lists_every_file_with_sizes_and_total(run, capsys):
    paths, _ = run
    res = pb.upload_export(paths.export, "someone/x", dry_run=True, api=NoNetwork())
    listing = {f.path: f.bytes for f in res.files}
    on_disk = {p.relative_to(paths.export).as_posix(): p.stat().st_size
               for p in paths.export.rglob("*") if p.is_file()}
    assert listing == on_disk and res.url is None and res.private and res.dry_run
    text = str(res)
    assert text.startswith("DRY RUN") and "private" in text and "someone/x" in text
    assert all(name in text for name in listing) and "total" in text
    table = res.table()
    assert table["bytes"].iloc[-1] == sum(listing.values()) == res.total_bytes
    assert pb.default_dry_run(get_profile("tiny")) and not pb.default_dry_run(get_profile("colab")) and pb.default_dry_run(get_profile("colab"), True)
    assert not pb.default_dry_run(get_profile("tiny"), False)
    assert str(paths.export) in pb.where(paths) and "demo audio" in pb.where(paths)


def test_upload_creates_a_private_repo_and_sends_the_listing(run, capsys, caplog):
    paths, _ = run
    caplog.set_level(logging.DEBUG)
    api = FakeApi()
    res = pb.upload_export(paths.export, "someone/x", api=api)  # token from HF_TOKEN
    (c_name, c_repo, c_kw), (u_name, _, u_kw) = api.calls
    assert (c_name, c_repo, u_name) == ("create_repo", "someone/x", "upload_folder")
    assert c_kw["private"] is True and c_kw["exist_ok"] is True and c_kw["token"] == FAKE_TOKEN
    assert sorted(u_kw["allow_patterns"]) == sorted(f.path for f in res.files)
    assert Path(u_kw["folder_path"]) == paths.export
    assert res.url == "https://huggingface.co/someone/x" and not res.dry_run
    pb.upload_export(paths.export, "someone/y", private=False, api=api)
    assert api.calls[2][2]["private"] is False
    out = capsys.readouterr()
    _assert_token_absent(paths.root, out.out, out.err, caplog.text, str(res), res.table().to_string())


def test_failed_upload_keeps_the_export_and_never_shows_the_token(run, capsys, caplog):
    paths, _ = run
    before = _snapshot(paths.export)
    boom = ConnectionError(f"403 Forbidden: bad credentials (Authorization: Bearer {FAKE_TOKEN})")
    with pytest.raises(pb.UploadError) as e:
        pb.upload_export(paths.export, "someone/x", api=FakeApi(fail_with=boom))
    msg = str(e.value)
    assert "intact" in msg and "rerun" in msg and "403 Forbidden" in msg and "<redacted>" in msg
    assert e.value.__cause__ is None and e.value.__suppress_context__  # the raw error is not chained
    assert _snapshot(paths.export) == before
    out = capsys.readouterr()
    _assert_token_absent(paths.root, msg, out.out, out.err, caplog.text)


def test_missing_token_is_a_clear_error_and_keeps_the_export(run, monkeypatch, capsys):
    paths, _ = run
    monkeypatch.delenv("HF_TOKEN")
    before = _snapshot(paths.export)
    with pytest.raises(pb.HubTokenError, match="HF_TOKEN") as e:
        pb.upload_export(paths.export, "someone/x", api=NoNetwork())
    assert "export is unchanged" in str(e.value)
    assert _snapshot(paths.export) == before
    with pytest.raises(ValueError, match="owner/name"):
        pb.upload_export(paths.export, "no-slash", dry_run=True)


def test_load_engine_from_the_export_caps_the_tiny_length_guard(run):
    from helpers.publish import demo

    paths, _ = run
    tts = demo.load_engine(paths.export, get_profile("tiny"))
    assert tts.length_guard.cap_seconds == get_profile("tiny").demo_max_seconds and tts.sample_rate == 24000
    wav = tts.generate("Hi.", speaker="male_us_01", seed=1)
    assert 0 < wav.size <= (get_profile("tiny").demo_max_seconds + 0.2) * tts.sample_rate
    with pytest.raises(ValueError, match="max_seconds"):
        demo.load_engine(paths.export, get_profile("colab"), max_seconds=0)
