"""process_rows (helpers/data/source_stream.py): workers are fresh processes, never fork()s of a torch process."""
import torch  # noqa: F401  (loaded in the parent, as in every notebook that preprocesses)

from helpers.data.source_stream import process_rows

# eval is a picklable builtin, so the expression runs inside the worker and reports what it sees there
IN_WORKER = "(__import__('multiprocessing').current_process().name, 'torch' in __import__('sys').modules, 2 + 3)"


def test_workers_are_spawned_not_forked_and_keep_input_order():
    pairs = [(i, IN_WORKER) for i in range(40)]
    out = list(process_rows(pairs, eval, workers=2, chunk=3))
    assert [k for k, *_ in out] == list(range(40))  # input order, across chunks and workers
    assert all(five == 5 for *_, five in out)
    assert all(name != "MainProcess" for _, name, _, _ in out)  # it really ran in worker processes
    # a fork()ed worker would have inherited the parent's torch; a spawned one never imported it
    assert not any(has_torch for _, _, has_torch, _ in out)


def test_one_worker_runs_in_this_process():
    out = list(process_rows([(0, IN_WORKER)], eval, workers=1))
    assert out == [(0, "MainProcess", True, 5)]
