"""The run plan: CLI exit codes, the colab Drive budget, and the plan against what a tiny run leaves."""
import pytest
import torch
from assets_utterances import random_code_utterances

from helpers.train import checkpoints as ckpt
from helpers.colab import drive
from helpers.plan.costs import build_plan, format_plan, plan_problems
from helpers.plan.run_plan import main

torch.set_num_threads(1)


def test_colab_plan_fits_60_gb_with_permanent_deletion_and_names_the_shortfall(capsys):
    """Drive peak <= 60 GB, uploads within Drive's daily limit, the cadence chosen is printed."""
    assert main(["--profile", "colab", "--drive-free-gb", "100"]) == 0
    out = capsys.readouterr().out
    assert "Drive peak" in out and "fits" in out
    plan = build_plan("colab", drive_free_gb=100)
    t = plan["totals"]
    # the worst the checkpoint policy allows: one confirmed on Drive and one uploading (2 x 19.5 GB in
    # stage 4, on top of the earlier stages' models): within 60 GB
    assert 50 <= t["drive_peak_gb"] <= 60 and t["trash_gb"] == 0 and plan["drive_deletion"] == "permanent"
    s2 = plan["stages"]["2"]
    # 3.25 B parameters: bf16 weights + bf16 AdamW moments = 6 bytes per parameter
    assert s2["checkpoint_bytes"] == pytest.approx(6 * 3.25e9, rel=0.01) and s2["max_checkpoints"] == 2
    # Drive's 750 GB/day upload limit: the 40-minute cadence is stretched so a day of stage 2 stays under
    # the limit with margin (the recipe applies the same function: checkpoints.drive_interval_s)
    assert s2["cadence_minutes"] > s2["save_every_minutes"] == 40
    assert s2["upload_gb_per_day"] <= 0.85 * 750 and s2["upload_gb_per_day"] > 500
    assert "GB per day of training" in out and "stretched to 47 min" in out and "at 5 MB/s one every" in out
    # a 100 GB plan keeps the pilot's run folder beside the full run
    assert t["drive_peak_gb"] + build_plan("pilot")["totals"]["drive_end_gb"] <= 100
    assert s2["epochs"] == 2.0 and 10 < s2["gpu_hours"] < 60 and s2["steps"] > 1000
    assert t["compute_units"] == pytest.approx(t["gpu_hours"] * plan["cu_per_gpu_hour"])

    assert main(["--profile", "colab", "--drive-free-gb", "15"]) == 1
    err = capsys.readouterr().err
    assert "15.0 GB are free: short by" in err and "Change:" in err

    # without consent to permanent deletion every deleted checkpoint sits in the Trash: it cannot fit 100 GB
    trash = build_plan("colab", drive_free_gb=100, drive_deletion="trash")
    assert trash["totals"]["trash_gb"] > 500
    assert "drive_deletion='permanent'" in plan_problems(trash)[0]
    assert "DOES NOT FIT" in format_plan(trash)


def _utts(n=8):
    return random_code_utterances(n)


def test_plan_matches_what_a_tiny_stage_leaves_on_the_run_directory(tmp_path, monkeypatch):
    """Train a real tiny stage with the run directory 'on Drive' (Trash deletions), watch its size,
    then compare with the plan built from that run directory."""
    from helpers import models
    from helpers.train.config import stage_config
    from helpers.profiles import TINY_LLAMA, RunPaths
    from helpers.train.sequences import choose_builtin_voices
    from helpers.data.shards import write_shard
    from helpers.train.recipe import StageRecipe

    paths = RunPaths(tmp_path / "run").ensure()
    model, tok = models.load_base(TINY_LLAMA)
    model, tok, _, _ = models.extend_vocabulary(model, tok)
    models.save_stage(model, tok, paths.stage(1))
    utts = _utts()
    write_shard(paths.tokens / "shard-00000.parquet", utts)

    monkeypatch.setattr(drive, "drive_file_id", lambda p: "on-drive")  # every deletion goes to the Trash
    seen = {"peak": 0, "trash": 0}
    real_remove = drive.Remover.remove

    def remove(self, p):
        seen["peak"] = max(seen["peak"], drive.tree_bytes(paths.root) + seen["trash"])
        got = real_remove(self, p)
        seen["trash"] += got
        return got

    monkeypatch.setattr(drive.Remover, "remove", remove)
    cfg = stage_config(2, "tiny", max_steps=6, save_every=2, eval_every=0, max_seq_len=256, progress=False,
                       local_dir=str(tmp_path / "local"), eval_fraction=0.0)
    model, tok = models.load_stage(paths.stage(1))
    r = StageRecipe(cfg, model, tok, utts, paths.stage(2), choose_builtin_voices(utts), log=lambda m: None).setup()
    r.train()
    r.save_final()
    seen["peak"] = max(seen["peak"], drive.tree_bytes(paths.root) + seen["trash"])

    # what the finished stage leaves: its final model, no checkpoints
    assert not (paths.stage(2) / "checkpoints").exists() and (paths.stage(2) / "model").is_dir()
    plan = build_plan("tiny", run_dir=paths.root, drive_deletion="trash")
    s2 = plan["stages"]["2"]
    assert s2["saves"] == r.checkpoint_saves == 3 and s2["checkpoint_bytes"] == r.checkpoint_bytes
    # the plan holds the worst case (one confirmed, one uploading), which is also what a plain disk holds
    # while the next one is copied (checkpoints differ by their JSON and by the run logs they carry)
    assert s2["max_checkpoints"] == 2 and s2["trash_added"] == pytest.approx(3 * r.checkpoint_bytes, abs=2048)
    assert seen["trash"] == pytest.approx(s2["trash_added"], abs=2048)
    # the plan's peak for stage 2 (real sizes of what was there before + the policy replayed) is what
    # the directory held at its fullest, give or take the small files (metrics, config, voices)
    assert s2["drive_peak"] == pytest.approx(seen["peak"], rel=0.02)
    row = next(x for x in plan["notebooks"] if x["notebook"] == "04_stage2")
    assert row["drive_after_gb"] * drive.GB == pytest.approx(
        drive.tree_bytes(paths.preprocess) + drive.tree_bytes(paths.tokens) + drive.tree_bytes(paths.stage(1))
        + drive.tree_bytes(paths.stage(2) / "model"), rel=0.02)
    assert ckpt.list_checkpoints(paths.stage(2) / "checkpoints") == []


def test_pilot_plans_07_from_its_protocol_sample():
    """07's hours come from item counts x time per item: the pilot's seeded sample fits 1.5 A100 h, colab's full
    lists do not pretend to fit in the old fixed hour."""
    from helpers.plan import costs
    from helpers.profiles import get_profile

    row = lambda plan: next(r for r in plan["notebooks"] if r["notebook"] == "07_evaluate")  # noqa: E731
    pilot, colab = costs.build_plan("pilot"), costs.build_plan("colab")
    assert costs.protocol_items_planned(get_profile("pilot")) == 2 * get_profile("pilot").protocol_sample
    assert row(pilot)["gpu_hours"] <= 1.5
    assert row(colab)["gpu_hours"] == pytest.approx(
        costs.FIXED_GPU_HOURS["07_evaluate"] + (1088 + 1127) * costs.PROTOCOL_S_PER_ITEM / 3600)


def test_07_replans_from_the_time_per_item_it_measured(tmp_path):
    """Once 07 cached protocol items in the run, the plan prices the protocols at the measured seconds per item."""
    import json

    from helpers.plan import costs

    items = tmp_path / "protocols" / "items" / "seedtts-test-en"
    items.mkdir(parents=True)
    for k in range(3):
        rows = [{"item_id": f"u{k}", "measured_on": "model output", "gen_s": 4.0, "score_s": 1.0},
                {"item_id": f"u{k}", "measured_on": "ground truth", "gen_s": None, "score_s": 0.5}]
        (items / f"u{k}.json").write_text(json.dumps(rows))
    assert costs.measured_protocol_s_per_item(tmp_path) == pytest.approx(5.5)
    assert costs.measured_protocol_s_per_item(tmp_path / "none") is None


def test_run_plan_prints_the_auto_config_and_its_figures_come_from_it(capsys):
    """`python -m helpers.plan --profile colab` prints, per stage, the configuration the recipe runs on Colab's
    A100 (planner.auto_config: micro-batch, accumulation, checkpointed layers, optimizer update, compiled layers,
    kernels, predicted tokens/s, peak memory and margin), and the stage's GPU hours use its tokens/s."""
    from helpers.plan.costs import PLAN_GPU
    from helpers.train import planner
    from helpers.train.config import stage_config

    assert main(["--profile", "colab"]) == 0
    out = capsys.readouterr().out
    plan = build_plan("colab")
    for k in ("2", "3", "4"):
        s = plan["stages"][k]
        cfg = stage_config(int(k), "colab")
        a = planner.auto_config(planner.LLAMA_3_2_3B_AUDIO, PLAN_GPU,
                                tokens_per_optimizer_step=cfg.max_seq_len * cfg.grad_accum,
                                min_tokens_per_micro_batch=cfg.max_seq_len, train_tokens=s["tokens"])
        assert s["auto_config"] and s["config"] == a.summary()
        assert s["tokens_per_s"] == pytest.approx(a.plan.throughput.tokens_per_s)
        assert s["peak_gib"] <= (1 - planner.AUTO_HEADROOM) * s["gpu_memory_gib"]
        assert f"config on {PLAN_GPU} (auto-config): {a.summary()}" in out
        assert s["steps"] == -(-s["tokens"] // (a.tokens_per_micro_batch * a.grad_accum))
    assert "kept >= 5%" in out and "predicted" in out
