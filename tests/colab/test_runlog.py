"""Run logs resume from the copy inside the checkpoint when the separately synced one is behind."""
from helpers.colab.runlog import CsvLog


def test_restore_takes_the_checkpoints_copy_only_when_it_holds_more(tmp_path):
    fields = ("step", "loss")
    full = CsvLog(tmp_path / "vm" / "metrics.csv", fields)
    for s in range(1, 7):
        full.append({"step": s, "loss": 1.0 / s})
    inside = tmp_path / "ckpt" / "metrics.csv"  # what the checkpoint of step 4 carried (rows 1..6 written before)
    inside.parent.mkdir()
    inside.write_bytes(full.path.read_bytes())
    logs = []
    stale = CsvLog(tmp_path / "new-vm" / "metrics.csv", fields, log=logs.append)  # Drive had rows 1..2 only
    for s in (1, 2):
        stale.append({"step": s, "loss": 1.0 / s})
    assert stale.restore(inside, 4) and "restored from the checkpoint" in logs[0]
    stale.truncate_after(4)
    assert [int(r["step"]) for r in stale.rows()] == [1, 2, 3, 4]
    assert not stale.restore(inside, 4)  # already complete up to step 4: kept as is
    assert not stale.restore(tmp_path / "absent.csv", 4)
