"""ONE training recipe for stages 2, 3 and 4 (seed §11); the stages differ only in their
:class:`helpers.train.config.StageConfig`.

Recipe shape (torchtune): ``setup() -> train() -> save_final() -> cleanup()``.

Why a hand-written loop and not ``transformers.Trainer``: exact resume is the
contract here (a resumed run must match an uninterrupted one bit for bit on
CPU), and that needs full control of the data position (epoch, packed bin),
of the RNG states and of where checkpoints go (local disk first, then an
atomic, verified copy to Drive). The loop is ~100 lines of standard PyTorch:
AdamW, a cosine schedule with linear warmup, gradient accumulation with the
loss normalised by the number of target tokens of the whole optimizer step,
gradient clipping.

Memory techniques come from :mod:`helpers.train.memory` and are chosen by the config
(which :func:`helpers.train.stage_plan.plan_stage` fills from the planner for the GPU):
precision (fp32 / bf16 autocast / pure bf16), the optimizer (torch AdamW,
bitsandbytes 8-bit, :class:`helpers.train.precision.BF16AdamW` with stochastic
rounding or an fp32 master), activation checkpointing (none / full /
selective), the chunked LM-head cross entropy and the attention kernel.

DeepSpeed: with ``cfg.deepspeed`` set, :meth:`StageRecipe.train` hands the same
packed data and hyper-parameters to :func:`helpers.train.distributed.train_with_trainer`
(HF Trainer + ZeRO) instead of the hand-written loop; the notebooks do not change.
That path resumes with HF Trainer's checkpoints (ZeRO shards optimizer state across ranks,
which only DeepSpeed can write and read): written to local scratch, then published into
``hf_trainer/step-NNNNNNNN`` with a manifest, through the same atomic copy and retention
policy as the main loop (:func:`helpers.train.distributed.train_recipe`); it is not bit-exact.
:func:`launch_command` prints the command that runs a stage on several GPUs.

Run-directory layout of a stage (``RunPaths.stage(n)``)::

    config.json        the StageConfig of the run
    voices.json        built-in voice -> corpus speaker (chosen once, stage 2; copied forward)
    metrics.csv        one row per logged step (written locally, synced here with retries: helpers.colab.runlog)
    eval.csv           held-out loss and the generated sample of each evaluation
    samples/           step-NNNNNNNN.npz (codes) and .wav (decoded) per evaluation
    checkpoints/       step-NNNNNNNN/ (see helpers.train.checkpoints): newest keep_last (1) confirmed on Drive +
                       the one uploading; deleted once model/ is confirmed on Drive
    LEASE.json         the writer training this stage (helpers.colab.lease): host, pid, heartbeat
    model/             final weights + tokenizer (helpers.models.save_stage; COMPLETE.json uploaded last)
    hf_trainer/        DeepSpeed path only: published HF Trainer checkpoints (same policy)

Subprocess entry point (used by the kill/resume test)::

    python -m helpers.train --config cfg.json --stage-dir DIR --init MODEL_DIR --tokens SHARDS_DIR [--phase N]

(also what ``accelerate launch --module helpers.train.recipe ...`` runs on every GPU; see :func:`launch_command`).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import attention, checkpoints as ckpt, memory
from ..colab import drive
from .config import StageConfig
from ..colab.runlog import CsvLog, atomic_write_text
from .packing import bucket_length, collate, packing_stats, shuffled_bins
from .sequences import (IGNORE_INDEX, SequenceBuilder, SequenceReport, VoiceSelection, split_eval,
    VoiceFallbackError, choose_builtin_voices, fallback_message)
from ..data.shards import Utterance, iter_utterances
from ..profiles import FINAL_MODEL_DIR, HF_TRAINER_DIR
from ..tokens import FRAME_SIZE, TokenLayout
from .background import BackgroundPublisher
from .storage import EVAL_FILE, METRICS_FILE, StageStorage
from .runtime import TrainResult, barrier
from .distributed import launch_command as _launch, train_recipe
from ..colab.drive import Remover, require_free_space
from ..models import CHECK_TEXTS, COMPLETE_MARKER, save_stage, read_complete_marker
from ..colab.lease import Lease
from ..colab.session import device_summary
from ..infer.generation import FrameGrammar

CONFIG_FILE = "config.json"
VOICES_FILE = "voices.json"
SAMPLES_DIR = "samples"
CHECKPOINTS_DIR = "checkpoints"
METRICS_FIELDS = ("step", "epoch", "loss", "lr", "grad_norm", "target_tokens", "tokens", "tokens_per_s", "elapsed_s")
EVAL_FIELDS = ("step", "eval_loss", "sample_utterance", "sample_frames", "sample_dropped_frames", "sample_wav")


class ResumeError(RuntimeError):
    """The newest checkpoint cannot be resumed with the current config or data."""


# ----------------------------------------------------------------------------- run-directory helpers
def voices_for_stage(paths, stage: int, all_utterances: Sequence[Utterance],
                     overrides: dict[str, str] | None = None, accept_fallback: bool = False) -> VoiceSelection:
    """The run's built-in voice selection: read from an earlier stage's ``voices.json`` when one
    exists (voices must not move between stages), else chosen with
    :func:`helpers.train.sequences.choose_builtin_voices` from ``all_utterances`` (every phase, so the
    British voices of phase 2 are chosen before stage 2 runs; ``overrides``: voice -> speaker,
    a notebook parameter) and written into this stage's folder.

    A voice whose planned speaker is not in the data raises :class:`VoiceFallbackError` naming the
    voice, the planned speaker and the one it would get, unless ``accept_fallback`` (the notebook's
    ``accept_voice_fallback`` or the profile's ``accept_voice_fallback``); accepted fallbacks are
    recorded in voices.json (and so in the export)."""

    for s in range(2, stage + 1):
        f = paths.stage(s) / VOICES_FILE
        if f.is_file():
            sel = VoiceSelection.from_dict(json.loads(f.read_text()))
            break
    else:
        sel = choose_builtin_voices(all_utterances, overrides=overrides)
        msg = fallback_message(sel)
        if msg and not accept_fallback:
            raise VoiceFallbackError(
                msg + "\nNothing was trained. Set accept_voice_fallback = True in the parameters cell to train "
                "them on these speakers, name speakers with voice_overrides, or rerun 01 with more of the voice "
                "corpora.")
    atomic_write_text(paths.stage(stage) / VOICES_FILE, json.dumps(sel.to_dict(), indent=1, sort_keys=True))
    return sel


def load_phase(tokens_dir: str | os.PathLike, phase: int) -> tuple[list[Utterance], list[Utterance]]:
    """(utterances of training phase ``phase`` in the order 02_tokenize recorded, every utterance of
    the shards). Phase ids missing from the shards raise (nothing is dropped silently)."""
    from ..data.tokenize_audio import read_phase_ids

    everything = list(iter_utterances(tokens_dir))
    by_id = {u.utterance_id: u for u in everything}
    ids = read_phase_ids(tokens_dir, phase)
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise FileNotFoundError(f"phase {phase} lists {len(missing)} utterance(s) that no shard in {tokens_dir} "
                                f"holds (first: {missing[:3]}); rerun 02_tokenize")
    return [by_id[i] for i in ids], everything


def phase_table(utterances: Sequence[Utterance]) -> list[dict]:
    """One row per dataset: utterances, speakers, hours, emotions (for the stage notebooks)."""
    rows: dict[str, dict] = {}
    for u in utterances:
        r = rows.setdefault(u.dataset, {"dataset": u.dataset, "utterances": 0, "speakers": set(), "hours": 0.0,
                                         "emotions": set()})
        r["utterances"] += 1
        r["speakers"].add(u.speaker)
        r["hours"] += u.duration_s / 3600
        r["emotions"].add(u.emotion or "neutral")
    return [{**r, "speakers": len(r["speakers"]), "hours": round(r["hours"], 3),
             "emotions": ", ".join(sorted(r["emotions"]))} for r in rows.values()]


def data_fingerprint(utterances: Sequence[Utterance], voices: VoiceSelection, layout: TokenLayout) -> str:
    """SHA-256 over what determines the examples: utterance ids/lengths/labels in order, the voice
    assignment and the token layout. A changed fingerprint makes resume refuse."""
    h = hashlib.sha256()
    h.update(f"base_vocab={layout.base_vocab_size};".encode())
    h.update(json.dumps(voices.assignments, sort_keys=True).encode())
    for u in utterances:
        h.update(f"{u.utterance_id}|{u.speaker}|{u.emotion}|{u.n_frames}|{u.text}\n".encode())
        for c in u.codes:
            h.update(np.ascontiguousarray(c, dtype=np.int16).tobytes())
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """SHA-256 of how ``tokenizer`` encodes text: its size, its special tokens and their ids, and the ids of
    :data:`helpers.models.CHECK_TEXTS`. The examples are the texts' ids, which the data fingerprint does not
    hold: a checkpoint resumed with a tokenizer that encodes otherwise (another special token or id, e.g. one
    optional file missed while loading) would train on other examples. Resume refuses that."""
    specials = sorted((str(t), int(i)) for t, i in zip(tokenizer.all_special_tokens, tokenizer.all_special_ids))
    enc = [list(tokenizer(t, add_special_tokens=True)["input_ids"]) for t in CHECK_TEXTS]
    blob = json.dumps({"size": len(tokenizer), "specials": specials, "check_texts": enc}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


# ----------------------------------------------------------------------------- metrics log
# ----------------------------------------------------------------------------- loss
def packed_loss_sum(model, batch: dict, chunk: int = 0) -> tuple[torch.Tensor, int]:
    """Summed cross entropy over the target tokens of one packed batch, and their count.

    ``batch``: :func:`helpers.train.packing.collate` output ((1, N) int64 tensors). Labels are
    shifted inside (token t predicts label t+1). :func:`helpers.train.memory.causal_lm_loss`:
    only hidden states at target positions go through the LM head, ``chunk`` tokens at a
    time (0 = all in one chunk), so the (N, vocab) logits are never materialised at once.
    Attention stays inside each example: SDPA per document (``doc_lens``,
    :func:`helpers.train.attention.packed_kwargs`), restarting position_ids (flash-attn varlen) or the
    row's document BlockMask (flex_attention) — :func:`helpers.train.attention.packed_attention_mask`.
    """
    n = int(batch["input_ids"].numel())
    return memory.causal_lm_loss(model, batch["input_ids"], batch["labels"], position_ids=batch["position_ids"],
                                 attention_mask=attention.packed_attention_mask(model, batch),
                                 chunk_size=chunk if chunk > 0 else max(1, n), reduction="sum",
                                 **attention.packed_kwargs(model, batch))


def compile_counts() -> dict:
    """torch.compile activity so far in this process: ``recompiles`` (a frame compiled again after
    its guards failed: a new shape, the train/eval switch; from dynamo's per-frame compile counter)
    and ``graphs`` (unique graphs compiled, ``torch._dynamo.utils.counters``). Zeros when nothing
    was compiled; dynamo is never imported just to read them."""
    cf, ut = sys.modules.get("torch._dynamo.convert_frame"), sys.modules.get("torch._dynamo.utils")
    per_frame = getattr(cf, "FRAME_COMPILE_COUNTER", None) or {}
    graphs = int(ut.counters.get("stats", {}).get("unique_graphs", 0)) if ut is not None else 0
    return {"recompiles": int(sum(max(0, c - 1) for c in per_frame.values())), "graphs": graphs}


def cosine_lambda(total_steps: int, warmup_steps: int, min_lr_ratio: float):
    """LR multiplier for step s (0-based): linear warmup to 1, then cosine to ``min_lr_ratio``."""
    def f(s: int) -> float:
        if s < warmup_steps:
            return (s + 1) / warmup_steps
        progress = min(1.0, (s - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return f


# ----------------------------------------------------------------------------- generation
def eager_stance():
    """Context in which every torch.compile'd function runs its original eager code (torch.compiler's
    "force_eager" stance): evaluation and generation. Why: regionally compiled decoder layers
    (StageConfig.compile_layers) hold graphs for training; generation would recompile them for eval mode,
    the KV cache and every layer index (measured on CPU: one sample from a 10-layer model hit dynamo's
    recompile limit of 8), and held-out rows are not padded to the training buckets."""
    return torch.compiler.set_stance("force_eager")


@torch.no_grad()
def generate_codes(model, layout: TokenLayout, prompt: Sequence[int], max_new_frames: int,
                   constrained: bool = False):
    """Greedy continuation of ``prompt`` until ``<|audio_end|>``; returns (codes, RepairReport).

    ``codes``: [cb1 (T,), cb2 (2T,), cb3 (4T,)] int64. Unconstrained (default), frames
    breaking the grammar are dropped and counted in the report — what the it-learns test
    wants, since the model alone must get the grammar right. ``constrained=True`` masks
    logits with :class:`helpers.infer.generation.FrameGrammar`, so even an untrained model
    yields decodable frames (the evaluation samples of the stage notebooks).
    """
    was_training = model.training
    model.eval()
    # Generation never runs the training kernel: FlexAttention would compile a new wrapper for
    # eval mode and for every decode length; plain SDPA (the static-cache-free decode) needs none.
    kernel = model.config._attn_implementation
    if kernel == "flex_attention":
        model.set_attn_implementation("sdpa")
    dev = next(model.parameters()).device
    ids = torch.tensor([list(prompt)], dtype=torch.long, device=dev)
    kw = {}
    if constrained:
        from transformers import LogitsProcessorList

        v = model.get_output_embeddings().weight.shape[0]
        kw["logits_processor"] = LogitsProcessorList(
            [FrameGrammar(layout, v, prompt_length=ids.shape[1], max_frames=max_new_frames)])
    with eager_stance():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=max_new_frames * FRAME_SIZE + 1, eos_token_id=layout.audio_end_id,
                             pad_token_id=layout.pad_id, **kw)
    model.train(was_training)
    if kernel == "flex_attention":
        model.set_attn_implementation(kernel)
    new = out[0, ids.shape[1]:].cpu().numpy()
    ends = np.flatnonzero(new == layout.audio_end_id)
    new = new[: ends[0]] if ends.size else new
    return layout.tokens_to_codes(new, on_error="repair")


# ----------------------------------------------------------------------------- the recipe
@dataclass
class _Epoch:
    number: int
    examples: list
    bins: list[list[int]]
    report: SequenceReport = field(repr=False)


class StageRecipe(StageStorage):
    """Train one stage. ``utterances``: the phase's data; ``stage_dir``: ``RunPaths.stage(n)``.

    ``decoder``: optional object with ``decode(codes) -> np.ndarray`` and ``sample_rate``
    (a :class:`helpers.codec.SnacCodec`) used to write a playable sample at each evaluation.
    """

    def __init__(self, cfg: StageConfig, model, tokenizer, utterances: Sequence[Utterance],
                 stage_dir: str | os.PathLike, voices: VoiceSelection, decoder=None, log=print):
        if not utterances:
            raise ValueError(f"stage {cfg.stage}: no utterances for data phase {cfg.phase}")
        self.cfg, self.model, self.tokenizer = cfg, model, tokenizer
        self.utterances, self.voices, self.decoder, self.log = list(utterances), voices, decoder, log
        self.stage_dir = Path(stage_dir)
        self.ckpt_dir = self.stage_dir / CHECKPOINTS_DIR
        # Logs are written on local disk and synced to the run directory (Drive) with retries.
        logs = self._local_root() / "logs"
        self.metrics = CsvLog(logs / METRICS_FILE, METRICS_FIELDS, mirror=self.stage_dir / METRICS_FILE, log=log)
        self.evals = CsvLog(logs / EVAL_FILE, EVAL_FIELDS, mirror=self.stage_dir / EVAL_FILE, log=log)

        self.remover = Remover(cfg.drive_deletion, log=log, trash_note=self._trash_note)
        self.layout = TokenLayout.from_tokenizer(tokenizer)
        self._is_setup = False

    # ------------------------------------------------------------------ setup
    @drive.names_storage_faults("setting up the stage (lease, resume)")
    def setup(self) -> "StageRecipe":
        """Data, optimizer, schedule; resume from the newest complete checkpoint if any."""
        cfg = self.cfg
        cfg.require_planned()
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if cfg.deterministic:
            set_deterministic()
        if cfg.precision == "bf16-mixed" and self.device.type != "cuda" and cfg.deepspeed is None:
            raise ValueError("precision='bf16-mixed' needs a CUDA GPU (bf16 autocast); use precision='fp32' on CPU")
        torch.manual_seed(cfg.seed)
        dtype = getattr(torch, cfg.model_dtype)
        if next(self.model.parameters()).dtype != dtype:
            self.log(f"casting the model to {cfg.model_dtype} (precision={cfg.precision!r}); load it with "
                     f"dtype={cfg.model_dtype!r} to skip this")
            self.model.to(dtype)
        self.model.to(self.device)
        self.model.config.use_cache = False
        self.attention = memory.set_attention(self.model, memory.choose_attention(self.device, dtype, cfg.attention))
        memory.apply_kernels(self.model, cfg.kernels)  # "liger": CUDA only (refuses on the CPU, saying so)
        self.checkpointed = memory.enable_checkpointing(
            self.model, cfg.checkpointing, every=cfg.selective_every,
            layers=cfg.checkpoint_layers if cfg.checkpointing == "selective" else None)
        if cfg.compile_layers:  # regional compilation; the layers' checkpointing wraps the compiled forward
            memory.compile_layers(self.model)
        self.model.train()
        self.train_utts, self.eval_utts = split_eval(self.utterances, cfg.eval_fraction, cfg.seed)
        self.builder = SequenceBuilder.from_config(self.layout, self.tokenizer, self.voices, cfg)
        self.fingerprint = data_fingerprint(self.utterances, self.voices, self.layout)
        self.tokenizer_fingerprint = tokenizer_fingerprint(self.tokenizer)
        self._epoch = self._build_epoch(0)
        if not self._epoch.bins:
            raise ValueError(f"stage {cfg.stage}: every utterance is longer than max_seq_len={cfg.max_seq_len} "
                             f"({len(self._epoch.report.too_long)} skipped); raise max_seq_len")
        per_epoch = math.ceil(len(self._epoch.bins) / cfg.grad_accum)
        self.total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch))
        self.warmup_steps = cfg.warmup_steps if cfg.warmup_steps is not None else int(cfg.warmup_ratio * self.total_steps)
        self.optimizer = self._make_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, cosine_lambda(self.total_steps, self.warmup_steps, cfg.min_lr_ratio))
        self.step, self.bin_pos, self.tokens_seen, self.elapsed = 0, 0, 0, 0.0
        self.checkpoint_saves, self.checkpoint_bytes = 0, 0  # recorded with the final model for the run plan
        self.save_blocking_s = 0.0  # time saves blocked the training loop (the local write)
        self.ledger = ckpt.Ledger(self._local_root())
        self._local_only: set[Path] = set()  # saves kept off Drive by its upload cadence  # hashes recorded at save time, on this VM's disk
        self.publisher = BackgroundPublisher(self._publish_local, self.log,
                                             confirmed=lambda p: ckpt.is_confirmed(p, self.remover.api),
                                             diagnose=self._diagnose_uploads, superseded=self._drop_local)
        self.confirmed_step: int | None = None  # newest checkpoint step Drive confirmed in this process
        self.upload_rate: float | None = None  # bytes/s of the last confirmed checkpoint upload (copy + upload)
        self._last_publish_t: float | None = None
        self._republish: Path | None = None  # a local checkpoint resumed from that Drive lacks
        self.resumed_from: str | None = None
        # one writer per stage folder: a second notebook on this run directory refuses, naming the first
        self.lease = Lease(self.stage_dir, log=self.log)
        if int(os.environ.get("RANK", "0")) == 0:
            self.lease.acquire()
        self.skipped = self._final_is_current()
        if not self.skipped:
            self._resume()
        atomic_write_text(self.stage_dir / CONFIG_FILE, cfg.to_json())
        self._is_setup = True
        return self

    def _make_optimizer(self):
        """helpers.train.memory.build_optimizer: norms undecayed, tied embedding/LM head decayed once."""
        cfg = self.cfg
        return memory.build_optimizer(self.model, cfg.optimizer, lr=cfg.learning_rate, betas=cfg.adam_betas,
                                      weight_decay=cfg.weight_decay, eps=cfg.adam_eps,
                                      state_dtype=torch.bfloat16 if cfg.optimizer_state == "bf16" else torch.float32,
                                      seed=cfg.seed)

    def _build_epoch(self, n: int) -> _Epoch:
        # Examples and bin order are pure functions of (data, config, epoch): resume rebuilds them.
        # References come from training utterances only: a held-out one never leaks into training.
        examples, report = self.builder.build(self.train_utts, self.cfg.seed, n, pool=self.train_utts)
        bins = shuffled_bins([len(e) for e in examples], self.cfg.max_seq_len, self.cfg.seed, n)
        return _Epoch(n, examples, bins, report)

    def _final_is_current(self) -> bool:
        """True when ``model/`` already holds this config's finished weights (rerun = no-op)."""

        marker = self.stage_dir / FINAL_MODEL_DIR / COMPLETE_MARKER
        if not marker.is_file():
            return False
        meta = json.loads(marker.read_text()).get("metadata", {})
        changed = self.cfg.resume_conflicts(meta.get("config", {}))
        if meta.get("fingerprint") != self.fingerprint:
            changed.append("training data (utterances, codes, texts or voice assignment)")
        if changed:
            raise ResumeError(
                f"{marker.parent} holds a finished stage {self.cfg.stage} trained with another config or data:\n  "
                + "\n  ".join(changed) + f"\nUse a new run_name, or delete {self.stage_dir} to retrain this stage.")
        data = json.loads(marker.read_text())
        missing = self._final_missing(marker.parent, data)
        if missing and self._repair_final_from_local(marker.parent, data, missing):
            missing = None  # re-uploaded from this VM's verified copy of the final model
        if missing:  # an incomplete "done" (a marker that reached Drive before the weights): repair it
            self.log(f"stage {self.cfg.stage}: {marker} says finished but {missing}: NOT finished; removing the "
                     f"marker and continuing from the newest checkpoint that verifies (or from the start)")
            marker.unlink()
            return False
        self.step = int(meta.get("step", self.total_steps))
        self.log(f"stage {self.cfg.stage} already finished ({self.step} steps): nothing to train")
        return True

    def _resume(self) -> None:
        self.metrics.adopt()
        self.evals.adopt()
        # The newest checkpoint that verifies, wherever it is: this VM's local disk (after a dead mount or a
        # storage stop: nothing is retrained) or the run directory (with the Drive API: only what Drive
        # itself holds, checked against the hashes this VM recorded at save time when it wrote them).
        path = loaded = None
        for path in ckpt.resume_candidates(self.ckpt_dir, log=self.log, api=self.remover.api,
                                           local_dir=self._local_root(), ledger=self.ledger):
            try:
                loaded = ckpt.load(path, hashes=False)  # resume_candidates hashed it
                break
            except (OSError, ckpt.CheckpointError) as e:  # EIO on the mount: the next one, named
                why = (f"unreadable ({drive.errno_name(drive.os_error_errno(e))}; {getattr(e, 'filename', None) or path})"
                       if isinstance(e, OSError) else str(e))
                self.log(f"checkpoint {path} cannot be loaded: {why}; trying the next one")
        if loaded is None:
            if self.metrics.path.exists() or self.metrics.published.exists():
                self.metrics.truncate_after(0)
                self.evals.truncate_after(0)
            return
        model_state, tstate, info = loaded
        conflicts = self.cfg.resume_conflicts(info["config"])
        if conflicts:
            raise ResumeError(
                f"cannot resume stage {self.cfg.stage} from {path}: the stage config changed in a way that "
                f"breaks exact resume:\n  " + "\n  ".join(conflicts) +
                f"\nRestore these values, or delete {self.ckpt_dir} to start this stage over.")
        if info["fingerprint"] != self.fingerprint:
            raise ResumeError(
                f"cannot resume stage {self.cfg.stage} from {path}: the training data changed (data "
                f"fingerprint {info['fingerprint'][:12]} -> {self.fingerprint[:12]}: utterances, their codes or "
                f"texts, or the voice assignment). Restore the data, or delete {self.ckpt_dir} to start over.")
        saved_tok = info.get("tokenizer_fingerprint")  # checkpoints written before it existed: not compared
        if saved_tok is not None and saved_tok != self.tokenizer_fingerprint:
            raise ResumeError(
                f"cannot resume stage {self.cfg.stage} from {path}: the tokenizer encodes text differently from the "
                f"one it was trained with (tokenizer fingerprint {saved_tok[:12]} -> {self.tokenizer_fingerprint[:12]}"
                f": its special tokens, their ids or its vocabulary). Load the stage's input model again (a read "
                f"error on the Drive mount can drop a tokenizer file), or delete {self.ckpt_dir} to start over.")
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(tstate["optimizer"])
        self.scheduler.load_state_dict(tstate["scheduler"])
        torch.set_rng_state(tstate["torch_rng"])
        if torch.cuda.is_available() and tstate.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(tstate["cuda_rng"])
        self.step, self.tokens_seen, self.elapsed = tstate["step"], tstate["tokens_seen"], tstate["elapsed_s"]
        self.checkpoint_saves = int(info.get("checkpoint_saves", 0))
        self.checkpoint_bytes = drive.tree_bytes(path)
        if tstate["epoch"] != self._epoch.number:
            self._epoch = self._build_epoch(tstate["epoch"])
        self.bin_pos = tstate["bin_pos"]
        self.metrics.restore(path / METRICS_FILE, self.step)
        self.evals.restore(path / EVAL_FILE, self.step)
        self.metrics.truncate_after(self.step)
        self.evals.truncate_after(self.step)
        self.resumed_from = str(path)
        where = "the run directory"
        if path.parent == self._local_root():
            where = "this VM's local disk"
            self._republish = path  # Drive lacks it: uploaded first thing in train()
        self.log(f"resumed stage {self.cfg.stage} from {path.name} on {where} (step {self.step}/{self.total_steps})")

    # ------------------------------------------------------------------ reports
    def data_report(self) -> list[dict]:
        """Rows (what, value) about the data: split, example building, packing (first epoch)."""
        self._need_setup()
        ep = self._epoch
        st = packing_stats([len(e) for e in ep.examples], ep.bins, self.cfg.max_seq_len)
        rows = [{"what": "utterances (train / eval)", "value": f"{len(self.train_utts)} / {len(self.eval_utts)}"}]
        rows += [{"what": f"examples: {r['what']}", "value": r["count"]} for r in ep.report.rows()]
        rows += [{"what": f"packing: {k}", "value": v} for k, v in st.row().items()]
        rows += [{"what": "optimizer steps (total / warmup)", "value": f"{self.total_steps} / {self.warmup_steps}"},
                 {"what": "memory: precision / optimizer", "value": f"{self.cfg.precision} / {self.cfg.optimizer}"},
                 {"what": "memory: checkpointed layers / CE chunk",
                  "value": f"{len(self.checkpointed)} of {self.model.config.num_hidden_layers} / "
                           f"{self.cfg.ce_chunk or 'off'}"},
                 {"what": "attention / DeepSpeed", "value": f"{self.attention} / {self.cfg.deepspeed or 'off'}"},
                 {"what": "resumed from", "value": self.resumed_from or ("finished" if self.skipped else "start")}]
        return rows

    def _need_setup(self):
        if not self._is_setup:
            raise RuntimeError("call setup() first")

    # ------------------------------------------------------------------ train
    def _next_bin(self) -> dict:
        if self.bin_pos >= len(self._epoch.bins):
            self._epoch = self._build_epoch(self._epoch.number + 1)
            self.bin_pos = 0
        ex = self._epoch.examples
        batch = collate([ex[i] for i in self._epoch.bins[self.bin_pos]], pad_to=self._row_bucket)
        self.bin_pos += 1
        return batch

    def _row_bucket(self, n: int) -> int | None:
        """Compiled attention (FlexAttention, or a compiled per-document SDPA) sees a handful of row
        lengths: a packed row of ``n`` tokens is padded (one extra, loss-free document) up to
        :func:`helpers.train.packing.bucket_length`; others keep the exact length."""
        if self.model.config._attn_implementation not in ("flex_attention", attention.SDPA_DOCUMENTS_COMPILED):
            return None
        return bucket_length(n, self.cfg.max_seq_len)

    def _acc_dtype(self) -> torch.dtype:
        """float64 where the device has it (the logged loss then equals a Python float sum)."""
        return torch.float32 if self.device.type == "mps" else torch.float64

    def _autocast(self):
        if self.cfg.precision == "bf16-mixed":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return torch.autocast(device_type=self.device.type, enabled=False)

    @drive.names_storage_faults("training")
    def train(self) -> TrainResult:
        """Train to ``total_steps`` (from wherever setup() resumed); checkpoints, logs, evaluates."""
        self._need_setup()
        cfg = self.cfg
        last_loss = None
        if self.skipped or self.step >= self.total_steps:
            return TrainResult(cfg.stage, self.step, self.resumed_from, self._last_logged_loss(),
                               self.metrics.published, skipped=self.skipped)
        if cfg.deepspeed is not None:
            return self._train_deepspeed()
        bar = None
        if cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc=f"stage {cfg.stage}", unit="step")
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self._last_save = time.monotonic()
        if self._republish is not None:  # resumed from local disk: Drive gets it before anything newer
            self._last_publish_t = time.monotonic()
            self.publisher.submit(self._republish)
            self._republish = None
        # Host <-> GPU syncs only at log steps: the loss sum and grad norm stay on the device
        # (float64 accumulation, so the logged value is bit-identical to summing float(loss) per
        # micro-batch) and are read with .item() when a metrics row is written.
        win_t0, win_tokens, recompiles = time.perf_counter(), 0, compile_counts()["recompiles"]
        while self.step < self.total_steps:
            t0 = time.perf_counter()
            batches = [self._next_bin() for _ in range(cfg.grad_accum)]
            # Normalise by the target tokens of the whole step so every token weighs the same
            # whatever bin it landed in (a per-bin mean would over-weight sparse bins).
            # (labels are CPU tensors from collate: counting them needs no GPU sync)
            n_target = sum(int((b["labels"][0, 1:] != IGNORE_INDEX).sum()) for b in batches)
            n_tokens = sum(int(b["input_ids"].shape[1]) for b in batches)
            self.optimizer.zero_grad(set_to_none=True)
            loss_total = torch.zeros((), dtype=self._acc_dtype(), device=self.device)
            for b in batches:
                with self._autocast():
                    loss_sum, _ = packed_loss_sum(self.model, b, cfg.ce_chunk)
                (loss_sum / max(1, n_target)).backward()
                loss_total += loss_sum.detach().to(loss_total.dtype)
            if cfg.max_grad_norm > 0:
                gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            else:
                gnorm = torch.linalg.vector_norm(torch.stack(
                    [p.grad.detach().norm() for p in params if p.grad is not None]))
            # a float now: torchao's AdamW keeps its LR as a (CPU) tensor, which the scheduler fills in place;
            # repr() of it would log "tensor(...)" in the metrics (float() of a CPU tensor does not sync the GPU)
            lr = float(self.scheduler.get_last_lr()[0])
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            dt = time.perf_counter() - t0
            self.elapsed += dt
            self.tokens_seen += n_tokens
            win_tokens += n_tokens
            log_now = self.step % cfg.log_every == 0 or self.step == self.total_steps
            if log_now:  # the one sync of the step (and only on log steps)
                last_loss = loss_total.item() / max(1, n_target)
                gnorm_f = float(gnorm)
                now = time.perf_counter()
                tok_s = win_tokens / max(now - win_t0, 1e-9)  # mean over the steps since the last log
                win_t0, win_tokens = now, 0
                counts = compile_counts()
                self.metrics.append({"step": self.step, "epoch": self._epoch.number, "loss": repr(last_loss),
                                     "lr": repr(lr), "grad_norm": repr(gnorm_f), "target_tokens": n_target,
                                     "tokens": self.tokens_seen, "tokens_per_s": f"{tok_s:.1f}",
                                     "elapsed_s": f"{self.elapsed:.2f}"})
                if counts["recompiles"] > recompiles:
                    self.log(f"step {self.step}: {tok_s:.0f} tokens/s, torch.compile recompiled "
                             f"{counts['recompiles'] - recompiles} time(s) since the last log "
                             f"({counts['recompiles']} in all, {counts['graphs']} graphs)")
                    recompiles = counts["recompiles"]
                if bar is not None:
                    bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:.0f}",
                                    recompiles=counts["recompiles"])
            if bar is not None:
                bar.update(1)
            if cfg.eval_every and (self.step % cfg.eval_every == 0 or self.step == self.total_steps):
                self.evaluate()
            if self._save_due():
                try:
                    self.save_checkpoint()
                except drive.StorageFault as e:  # the local disk filled during the write
                    self._stop_for_storage(e)
                self._last_save = time.monotonic()
            try:
                self.lease.heartbeat()
            except drive.StorageFault as e:  # another writer took the run directory over
                self._stop_for_storage(e)
            if self.publisher.fault is not None:  # a storage fault retrying cannot fix: stop, say what and how
                self._stop_for_storage(self.publisher.fault)
        if bar is not None:
            bar.close()
        self.publisher.wait()  # the last checkpoint is on the run directory before the stage returns
        if self.publisher.fault is not None:
            self._stop_for_storage(self.publisher.fault)
        if self.checkpoint_saves:
            self.log(f"stage {cfg.stage}: {self.checkpoint_saves} checkpoint save(s) blocked training "
                     f"{self.save_blocking_s:.1f} s in all (+{self.publisher.waited_s:.1f} s waiting for a copy in flight)")
        self.metrics.sync(force=True)
        self.evals.sync(force=True)
        return TrainResult(cfg.stage, self.step, self.resumed_from, last_loss, self.metrics.published)

    def _save_due(self) -> bool:
        """A checkpoint every ``save_every`` steps and/or every ``save_every_minutes`` of training, and at the end."""
        cfg = self.cfg
        if self.step == self.total_steps:
            return True
        if cfg.save_every is not None and self.step % cfg.save_every == 0:
            return True
        return cfg.save_every_minutes is not None and time.monotonic() - self._last_save >= self._save_interval_s()

    # ------------------------------------------------------------------ DeepSpeed path
    def _train_deepspeed(self) -> TrainResult:
        """Train through HF Trainer + DeepSpeed (``cfg.deepspeed``): :func:`helpers.train.distributed.train_recipe`."""

        return train_recipe(self)

    def _last_logged_loss(self) -> float | None:
        rows = self.metrics.rows()
        return float(rows[-1]["loss"]) if rows else None

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def eval_loss(self) -> float | None:
        """Mean per-token loss on the held-out utterances (None when nothing is held out)."""
        if not self.eval_utts:
            return None
        examples, _ = self.builder.build(self.eval_utts, self.cfg.seed, 0, pool=self.utterances)
        if not examples:
            return None
        bins = shuffled_bins([len(e) for e in examples], self.cfg.max_seq_len, self.cfg.seed, 0)
        was = self.model.training
        self.model.eval()
        # Not the training kernel: FlexAttention would compile another wrapper for eval mode (and for
        # every held-out row length); SDPA per document gives the same per-example attention uncompiled.
        kernel = self.model.config._attn_implementation
        if kernel == "flex_attention":
            attention.set_kernel(self.model, "sdpa")
        total, n = 0.0, 0
        try:
            for b in bins:
                with self._autocast(), eager_stance():  # compiled layers: no eval-mode recompiles
                    s, k = packed_loss_sum(self.model, collate([examples[i] for i in b]), self.cfg.ce_chunk)
                total, n = total + float(s), n + k
        finally:
            if kernel == "flex_attention":
                self.model.set_attn_implementation(kernel)
            self.model.train(was)
        return total / max(1, n)

    def evaluate(self) -> dict:
        """Held-out loss + one greedy sample (codes saved; decoded to a wav when a decoder is set)."""
        row = {"step": self.step, "eval_loss": self.eval_loss()}
        utt = (self.eval_utts or self.train_utts)[0]
        codes, rep = generate_codes(self.model, self.layout, self.builder.prompt(utt), self.cfg.eval_max_new_frames,
                                   constrained=True)
        sdir = self.stage_dir / SAMPLES_DIR
        sdir.mkdir(parents=True, exist_ok=True)
        stem = ckpt.step_dir_name(self.step)
        np.savez(sdir / f"{stem}.npz", cb1=codes[0], cb2=codes[1], cb3=codes[2])
        wav_name = ""
        if self.decoder is not None and codes[0].size:
            import soundfile as sf

            wav = self.decoder.decode(codes)
            sf.write(sdir / f"{stem}.wav", np.asarray(wav, dtype=np.float32).reshape(-1), self.decoder.sample_rate)
            wav_name = f"{SAMPLES_DIR}/{stem}.wav"
        row.update(sample_utterance=utt.utterance_id, sample_frames=int(codes[0].size),
                   sample_dropped_frames=rep.frames_dropped, sample_wav=wav_name)
        self.evals.append({k: ("" if v is None else v) for k, v in row.items()})
        return row

    # ------------------------------------------------------------------ checkpoints
    def _local_root(self) -> Path:
        if self.cfg.local_dir:
            return Path(self.cfg.local_dir)
        tag = hashlib.sha1(str(self.stage_dir.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / "optimumllm-checkpoints" / tag

    def save_checkpoint(self) -> Path:
        """Write the full training state locally, then publish it atomically into the run directory."""
        self._need_setup()
        tstate, info = self._state()
        self.checkpoint_saves += 1
        info["checkpoint_saves"] = self.checkpoint_saves
        return self._save(tstate, info)

    def _state(self) -> tuple[dict, dict]:
        tstate = {
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "step": self.step, "epoch": self._epoch.number, "bin_pos": self.bin_pos,
            "tokens_seen": self.tokens_seen, "elapsed_s": self.elapsed,
        }
        info = {"step": self.step, "epoch": self._epoch.number, "bin_pos": self.bin_pos,
                "total_steps": self.total_steps, "stage": self.cfg.stage, "config": self.cfg.to_dict(),
                "fingerprint": self.fingerprint, "tokenizer_fingerprint": self.tokenizer_fingerprint,
                "tokens_seen": self.tokens_seen, "checkpoint_saves": self.checkpoint_saves}
        return tstate, info

    def _save(self, tstate: dict, info: dict) -> Path:

        local = self._local_root() / ckpt.step_dir_name(self.step)
        # Local scratch keeps the newest sealed checkpoint until Drive confirms a copy (the fallback on this
        # VM after a dead mount); older ones go once a newer one is sealed (_publish_local).
        model_state = self.model.state_dict()
        t0 = time.perf_counter()
        # the consistent part blocks training; the logs travel inside the checkpoint: on Drive they
        # arrive, and are confirmed, with the state they describe
        self._write_local(local, model_state, tstate, info)
        self.save_blocking_s += time.perf_counter() - t0
        now = time.monotonic()
        gap = ckpt.drive_interval_s(self.checkpoint_bytes or drive.tree_bytes(local), self.upload_rate)
        on_drive = self.remover.api is not None  # the daily limit and upload rate are Drive's, not a plain disk's
        if on_drive and self._last_publish_t is not None and now - self._last_publish_t < gap \
                and self.step < self.total_steps:
            # Drive's daily upload limit (and the measured upload rate) allow one upload every `gap` s:
            # this save stays on local disk (sealed in the background); a later one goes to Drive.
            self._local_only.add(local)
        else:
            self._last_publish_t = now
        self.publisher.submit(local)  # hashing, the copy to Drive, its confirmation, retention: in the background
        return local

    # ------------------------------------------------------------------ finish
    @drive.names_storage_faults("saving the final model")
    def save_final(self) -> Path:
        """Save the trained model + tokenizer to ``<stage>/model`` (atomic, COMPLETE.json)."""

        self._need_setup()
        target = self.stage_dir / FINAL_MODEL_DIR
        if self.skipped:
            if self.ckpt_dir.is_dir() and int(os.environ.get("RANK", "0")) == 0:
                self._finish_checkpoints(target)  # an earlier run could not confirm the model on Drive in time
            return target
        if self.step < self.total_steps:
            raise RuntimeError(f"stage {self.cfg.stage} stopped at step {self.step}/{self.total_steps}; "
                               "rerun train() to finish before saving the final model")

        world = int(os.environ.get("WORLD_SIZE", "1"))
        meta = {"stage": self.cfg.stage, "step": self.step, "config": self.cfg.to_dict(),
                "fingerprint": self.fingerprint, "voices": self.voices.assignments,
                # helpers.publish.model_card.stage_rows reads "hardware" for the model card
                "hardware": device_summary() + (f" × {world} processes" if world > 1 else ""),
                # what the checkpoints of this stage cost on Drive (helpers.plan.costs reads them back)
                "checkpoint_bytes": self.checkpoint_bytes, "checkpoint_saves": self.checkpoint_saves,
                "drive_deletion": self.cfg.drive_deletion}
        rank0 = int(os.environ.get("RANK", "0")) == 0
        # Written on local disk first, then uploaded with its completion marker LAST (_upload_final).
        local_model = self._local_root() / FINAL_MODEL_DIR
        if not getattr(self, "_zero3", False):
            if rank0:
                self._require_space_for_final(local_model)
                save_stage(self.model, self.tokenizer, local_model, metadata=meta)
        else:
            import deepspeed

            # ZeRO-3 shards the weights over the ranks: every rank takes part in gathering them whole.
            with deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=None):
                if rank0:
                    self._require_space_for_final(local_model)
                    save_stage(self.model, self.tokenizer, local_model, metadata=meta)
        barrier()
        if rank0:
            self.publisher.wait()  # no publication in flight while the stage's checkpoints are deleted
            self._upload_final(local_model, target)
            self._finish_checkpoints(target)
        barrier()
        return target

    def _require_space_for_final(self, target: Path) -> None:

        n = sum(p.numel() * p.element_size() for p in self.model.parameters())
        require_free_space(target.parent, n, f"stage {self.cfg.stage}'s final model")

    def _finish_checkpoints(self, target: Path) -> None:
        """Retention policy: once the final model is confirmed on Drive, the stage's checkpoints go."""

        data = read_complete_marker(target)
        for rel, meta in data["files"].items():
            f = target / rel
            if not f.is_file() or f.stat().st_size != meta["bytes"]:
                raise RuntimeError(f"final model {target} does not match its {rel} entry after saving; "
                                   f"(a write that did not reach the disk whole); the stage's checkpoints are kept: "
                                   f"rerun this notebook, which saves the final model again from the newest checkpoint")
        if not ckpt.confirm_final(target, data["files"], COMPLETE_MARKER, self.remover.api, log=self.log):
            self.log(f"stage {self.cfg.stage}: final model not confirmed on Drive yet; its checkpoints are kept "
                     "(rerun this notebook later to delete them)")
            return
        gone = ckpt.finish(self.ckpt_dir, self.remover) + ckpt.finish(self.stage_dir / HF_TRAINER_DIR, self.remover)
        if gone:
            trash = self.remover.trashed_bytes
            self.log(f"stage {self.cfg.stage}: final model verified; deleted {len(gone)} checkpoint folder(s)"
                     + (f" ({trash / 1e9:.1f} GB of this stage's deletions are in Drive's Trash)" if trash else ""))

    def _trash_note(self) -> str:
        """The run plan's figure for this stage's deletions once they go to the Trash (Drive API failed)."""
        left = 1 + self.cfg.keep_last  # the checkpoints the finished stage deletes
        if self.cfg.save_every and getattr(self, "total_steps", 0):
            left += max(0, self.total_steps - self.step) // self.cfg.save_every
        return (f"each further deletion adds {self.checkpoint_bytes / 1e9:.1f} GB to the Trash, about "
                f"{left * self.checkpoint_bytes / 1e9:.1f} GB more by the end of stage {self.cfg.stage} "
                f"(python -m helpers.plan --drive-deletion trash shows the run's figure)")

    @drive.names_storage_faults("cleaning up the stage's checkpoints")
    def cleanup(self) -> None:
        """Free local scratch checkpoints and GPU memory (the checkpoints stay while the final model is not
        confirmed on Drive: they are this VM's copy of the stage)."""
        if getattr(self, "lease", None) is not None:
            self.lease.release()
        if getattr(self, "final_confirmed", True):
            shutil.rmtree(self._local_root(), ignore_errors=True)
        else:
            self.log(f"stage {self.cfg.stage}: local checkpoints kept in {self._local_root()} (the final model is not "
                     "confirmed on Drive yet)")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()




def set_deterministic() -> None:
    """Deterministic kernels (StageConfig.deterministic): same GPU + same libraries -> same bits.

    cuBLAS needs CUBLAS_WORKSPACE_CONFIG before its first use; ops without a deterministic
    implementation raise instead of silently varying."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def launch_command(paths, stage: int, cfg: StageConfig, n_gpus: int, *, deepspeed: str | None = None,
                   launcher: str = "accelerate") -> str:
    """The shell command that trains ``stage`` of the run in ``paths`` on ``n_gpus`` GPUs of one machine.

    Every process runs this module's CLI (:func:`_cli`) on the stage's ``config.json`` (written by
    :meth:`StageRecipe.setup`), the previous stage's model and the phase's token shards, through
    DeepSpeed: ``deepspeed`` (default ``cfg.deepspeed``, else ``configs/ds_zero2.json``).
    Run it from the repository root.
    """

    ds = deepspeed or cfg.deepspeed or "configs/ds_zero2.json"
    sdir = paths.stage(stage)
    args = ["--config", str(sdir / CONFIG_FILE), "--stage-dir", str(sdir), "--init", str(paths.init_model(stage)),
            "--tokens", str(paths.tokens), "--phase", str(cfg.phase), "--voices", str(sdir / VOICES_FILE),
            "--deepspeed", ds]
    return _launch("helpers.train.recipe", ds, n_gpus, launcher=launcher, script_args=args, module=True)


# ----------------------------------------------------------------------------- plots
def plot_metrics(stage_dir: str | os.PathLike):
    """Figure with the training loss (+ held-out loss) and the learning rate against the step."""
    import matplotlib.pyplot as plt

    stage_dir = Path(stage_dir)
    rows = CsvLog(stage_dir / METRICS_FILE, METRICS_FIELDS).rows()
    if not rows:
        raise FileNotFoundError(f"no metrics in {stage_dir / METRICS_FILE}; train the stage first")
    ev = [r for r in CsvLog(stage_dir / EVAL_FILE, EVAL_FIELDS).rows() if r["eval_loss"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.5))
    a.plot([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows], label="train")
    if ev:
        a.plot([int(r["step"]) for r in ev], [float(r["eval_loss"]) for r in ev], "o-", label="held out")
    a.set(xlabel="step", ylabel="loss (nats / target token)", title=f"{stage_dir.name}: loss")
    a.legend()
    b.plot([int(r["step"]) for r in rows], [float(r["lr"]) for r in rows])
    b.set(xlabel="step", ylabel="learning rate", title="warmup + cosine schedule")
    fig.tight_layout()
    return fig


def latest_sample(stage_dir: str | os.PathLike) -> tuple[Path | None, dict | None]:
    """(wav path or None, eval row) of the newest evaluation of a stage."""
    stage_dir = Path(stage_dir)
    rows = CsvLog(stage_dir / EVAL_FILE, EVAL_FIELDS).rows()
    if not rows:
        return None, None
    row = rows[-1]
    return (stage_dir / row["sample_wav"] if row["sample_wav"] else None), row


# ----------------------------------------------------------------------------- CLI (tests)
def _cli(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Train one stage from a config file (used by the resume tests).")
    ap.add_argument("--config", required=True, help="StageConfig as JSON")
    ap.add_argument("--stage-dir", required=True, help="the stage folder of the run directory")
    ap.add_argument("--init", required=True, help="model folder to start from (save_pretrained format)")
    ap.add_argument("--tokens", required=True, help="folder of token shards")
    ap.add_argument("--phase", type=int, help="train on this data phase of the shards (default: every utterance)")
    ap.add_argument("--voices", help="voices.json (default: chosen from the data)")
    ap.add_argument("--deepspeed", help="DeepSpeed JSON config: overrides the config's 'deepspeed' field")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (same value = same bits)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = StageConfig.from_dict(json.loads(Path(a.config).read_text()))
    if a.deepspeed:
        import dataclasses

        over = {"deepspeed": a.deepspeed}
        if cfg.precision == "bf16-pure":  # a single-GPU plan: DeepSpeed's bf16 mode brings its own fp32 masters
            over.update(precision="bf16-mixed", optimizer="adamw_torch", optimizer_state="fp32")
            print("DeepSpeed: precision 'bf16-pure' -> DeepSpeed bf16 (fp32 master weights and AdamW states)")
        cfg = dataclasses.replace(cfg, **over)
    model = AutoModelForCausalLM.from_pretrained(a.init, dtype=getattr(torch, cfg.model_dtype))
    tokenizer = AutoTokenizer.from_pretrained(a.init)
    if a.phase is not None:
        utts, everything = load_phase(a.tokens, a.phase)
    else:
        utts = everything = list(iter_utterances(a.tokens))
    voices = (VoiceSelection.from_dict(json.loads(Path(a.voices).read_text())) if a.voices
              else choose_builtin_voices(everything))
    recipe = StageRecipe(cfg, model, tokenizer, utts, a.stage_dir, voices).setup()
    res = recipe.train()
    recipe.save_final()
    recipe.cleanup()
    print(f"done: stage {res.stage}, {res.steps} steps, final loss {res.final_loss}")
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
