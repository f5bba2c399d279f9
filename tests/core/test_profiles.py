"""The pilot profile: colab at ~1 % of the data, only sizes differ."""
import dataclasses

from helpers.train.config import stage_config
from helpers.profiles import PROFILES, get_profile, run_paths

SIZE_FIELDS = {"hours_scale", "protocol_sample"}  # profile fields that are sizes (07: items per protocol)
STAGE_SIZE_FIELDS = {"epochs", "max_steps", "grad_accum", "warmup_ratio", "warmup_steps", "log_every", "save_every",
                     "eval_every", "keep_last"}


def test_pilot_differs_from_colab_only_in_sizes():
    pilot, colab = get_profile("pilot"), get_profile("colab")
    differ = {f.name for f in dataclasses.fields(pilot) if getattr(pilot, f.name) != getattr(colab, f.name)}
    assert differ == {"name", "run_name", "stage_sizes", "repo_suffix"} | SIZE_FIELDS
    assert pilot.repo_suffix == "-pilot" and colab.repo_suffix == ""
    assert pilot.hours_scale == 0.01 and colab.hours_scale == 1.0
    assert pilot.base_model == "meta-llama/Llama-3.2-3B" and pilot.data_source == "hub"  # the real path
    assert run_paths(None or pilot.run_name, pilot).root.name == "optimumllm-audio-pilot"
    assert pilot.run_name != colab.run_name
    for stage in (2, 3, 4):
        p, c = stage_config(stage, "pilot"), stage_config(stage, "colab")
        changed = {f.name for f in dataclasses.fields(p) if getattr(p, f.name) != getattr(c, f.name)}
        assert changed and changed <= STAGE_SIZE_FIELDS, changed
        assert p.learning_rate == c.learning_rate and p.phase == c.phase and p.max_seq_len == c.max_seq_len


def test_every_profile_has_stage_sizes_and_a_testset():
    import json

    from helpers.profiles import ASSETS_DIR

    profiles = json.loads((ASSETS_DIR / "eval" / "testset.json").read_text())["profiles"]
    for name, prof in PROFILES.items():
        stage_config(2, name)
        assert prof.eval_testset in profiles, name


def test_session_uses_the_profile_run_name(tmp_path):
    from helpers.colab import session

    s = session.start("pilot", None, str(tmp_path))
    assert s.paths.root == (tmp_path / "optimumllm-audio-pilot").resolve()
    assert session.start("tiny", "x", str(tmp_path)).paths.root.name == "x"
