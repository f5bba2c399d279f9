"""DeepSpeed ZeRO-2/3 for moving from one Colab GPU to a multi-GPU machine.

Three pieces:

- :func:`deepspeed_config` builds a DeepSpeed config dict in the form HF
  ``Trainer`` / ``accelerate`` accept (``"auto"`` where the training arguments
  decide), with optional CPU offload of the optimizer (ZeRO-2/3) and of the
  parameters (ZeRO-3). :func:`write_deepspeed_configs` writes the standard ones
  to ``configs/`` (``ds_zero2.json``, ``ds_zero2_offload.json``, ``ds_zero3.json``,
  ``ds_zero3_offload.json``); :func:`config_for_plan` gives the one the planner chose.
- :func:`validate_deepspeed_config` fills the ``"auto"`` values the way HF Trainer
  does and has DeepSpeed's own parser check the result.
- :func:`train_with_trainer` runs a stage through HF ``Trainer`` with
  ``deepspeed=<config>`` — the DeepSpeed path of the recipe. The hand-written
  loop in :mod:`helpers.train.recipe` is the single-GPU path (exact resume, Drive-safe
  checkpoints); with DeepSpeed, checkpoints and resume follow HF Trainer's
  ``checkpoint-N`` folders (``resume_from_checkpoint=True`` picks the newest),
  because ZeRO shards optimizer state across ranks and only DeepSpeed can write
  and read those shards. :func:`launch_command` prints how to start it on N GPUs.

Why no DeepSpeed ``optimizer`` section by default: HF Trainer then creates its
own torch AdamW and DeepSpeed wraps it, so nothing needs compiling. With CPU
offload the config asks DeepSpeed for its ``AdamW`` (``DeepSpeedCPUAdam``, a
C++/AVX kernel built on first use; ~10× faster than torch AdamW on the CPU).

Importing this module imports neither deepspeed nor a model.
"""
from __future__ import annotations

import copy
import json
import math
import os
import shlex
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

from ..profiles import HF_TRAINER_DIR, REPO_ROOT
from .plan_memory import ZERO_BUCKET_ELEMENTS
from .runtime import TrainResult, barrier, free_port
from . import checkpoints as ckpt
from ..colab import drive

__all__ = [
    "AUTO",
    "STANDARD_CONFIGS",
    "deepspeed_config",
    "config_for_plan",
    "config_name_for",
    "resolve_config_path",
    "zero_settings",
    "write_deepspeed_configs",
    "resolve_auto",
    "validate_deepspeed_config",
    "launch_command",
    "PackedBinsDataset",
    "packed_collator",
    "train_with_trainer",
    "train_recipe",
]

AUTO = "auto"
REPO_CONFIGS = REPO_ROOT / "configs"

# file name -> deepspeed_config() arguments of the configs kept in configs/
STANDARD_CONFIGS: dict[str, dict[str, Any]] = {
    "ds_zero2.json": dict(zero_stage=2),
    "ds_zero2_offload.json": dict(zero_stage=2, offload_optimizer=True),
    "ds_zero3.json": dict(zero_stage=3),
    "ds_zero3_offload.json": dict(zero_stage=3, offload_optimizer=True, offload_params=True),
}


def deepspeed_config(zero_stage: int, offload_optimizer: bool = False, offload_params: bool = False, *,
                     bf16: bool | str = AUTO, grad_accum: int | str = AUTO, micro_batch: int | str = AUTO,
                     grad_clip: float | str = AUTO, bucket_elements: int = ZERO_BUCKET_ELEMENTS,
                     ds_optimizer: bool | None = None, pin_memory: bool = True) -> dict:
    """A DeepSpeed config (dict) for ZeRO stage 2 or 3.

    Args:
        zero_stage: 2 (shard optimizer states + gradients) or 3 (also the weights).
        offload_optimizer: keep fp32 master weights, Adam states and fp32 gradients in
            CPU RAM (ZeRO-Offload): frees ~16 B/param of GPU memory, costs PCIe traffic.
        offload_params: ZeRO-3 only, and only with ``offload_optimizer``: bf16 weights in
            CPU RAM too, fetched layer by layer.
        bf16, grad_accum, micro_batch, grad_clip: ``"auto"`` (HF Trainer / accelerate fill
            them from the training arguments) or explicit values.
        bucket_elements: ZeRO reduce / all-gather bucket size in elements (the planner
            counts two buckets in flight: :data:`helpers.train.planner.ZERO_BUCKET_ELEMENTS`).
        ds_optimizer: include DeepSpeed's ``AdamW`` optimizer section (lr/betas/eps/decay
            "auto"). None = only with ``offload_optimizer`` (DeepSpeedCPUAdam); False
            with offload lets torch AdamW run on the CPU partitions (slow, but needs no
            compiled op: used by the CPU tests).
        pin_memory: page-locked host buffers for offload (faster copies, uses RAM).
    Returns:
        JSON-serialisable dict (``json.dump`` it for ``accelerate`` / ``deepspeed``).
    """
    if zero_stage not in (2, 3):
        raise ValueError(f"zero_stage must be 2 or 3, got {zero_stage!r}")
    if offload_params and zero_stage != 3:
        raise ValueError("offload_params needs zero_stage=3 (ZeRO-2 does not partition the weights)")
    if offload_params and not offload_optimizer:
        raise ValueError("offload_params needs offload_optimizer=True (weights on the CPU but optimizer on the "
                         "GPU is not a useful layout)")
    for name, v in (("bf16", bf16), ("grad_accum", grad_accum), ("micro_batch", micro_batch), ("grad_clip", grad_clip)):
        if isinstance(v, str) and v != AUTO:
            raise ValueError(f"{name} must be '{AUTO}' or a value, got {v!r}")
    if int(bucket_elements) < 1:
        raise ValueError(f"bucket_elements must be positive, got {bucket_elements}")
    zero: dict[str, Any] = {
        "stage": zero_stage,
        "overlap_comm": True,  # reduce gradients while the backward pass goes on
        "contiguous_gradients": True,  # copy gradients into one buffer: less fragmentation
        "reduce_bucket_size": int(bucket_elements),
    }
    if zero_stage == 2:
        zero.update(allgather_partitions=True, allgather_bucket_size=int(bucket_elements), reduce_scatter=True)
    else:
        zero.update(
            stage3_prefetch_bucket_size=AUTO,  # HF: 0.9 h² elements
            stage3_param_persistence_threshold=AUTO,  # HF: 10 h; smaller params stay gathered (norms)
            stage3_max_live_parameters=int(1e9),
            stage3_max_reuse_distance=int(1e9),
            sub_group_size=int(1e9),
            # save_pretrained needs whole bf16 weights, not shards, at the end of a stage
            stage3_gather_16bit_weights_on_model_save=True,
        )
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": bool(pin_memory)}
    if offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": bool(pin_memory)}
    cfg: dict[str, Any] = {
        "bf16": {"enabled": bf16},
        "fp16": {"enabled": False},
        "zero_optimization": zero,
        "gradient_accumulation_steps": grad_accum,
        "gradient_clipping": grad_clip,
        "train_batch_size": AUTO,
        "train_micro_batch_size_per_gpu": micro_batch,
        "steps_per_print": 1_000_000,  # the recipe logs; DeepSpeed's own step prints are noise
        "wall_clock_breakdown": False,
    }
    if ds_optimizer is None:
        ds_optimizer = offload_optimizer
    if ds_optimizer:
        cfg["optimizer"] = {"type": "AdamW", "params": {"lr": AUTO, "betas": AUTO, "eps": AUTO,
                                                        "weight_decay": AUTO}}
    elif offload_optimizer:
        cfg["zero_force_ds_cpu_optimizer"] = False  # allow torch AdamW on the offloaded partitions
    return cfg


def config_for_plan(plan, **overrides) -> dict | None:
    """The DeepSpeed config of a planner :class:`~helpers.train.planner.TrainPlan` (None when it uses no ZeRO)."""
    if not plan.zero_stage:
        return None
    return deepspeed_config(plan.zero_stage, plan.offload_optimizer, plan.offload_params, **overrides)


def config_name_for(zero_stage: int, offload_optimizer: bool = False, offload_params: bool = False) -> str:
    """The file name in ``configs/`` (:data:`STANDARD_CONFIGS`) of a ZeRO layout, e.g. ``ds_zero2_offload.json``."""
    want = dict(zero_stage=int(zero_stage), offload_optimizer=bool(offload_optimizer),
                offload_params=bool(offload_params))
    for name, kwargs in STANDARD_CONFIGS.items():
        if dict(dict(offload_optimizer=False, offload_params=False), **kwargs) == want:
            return name
    raise ValueError(f"no standard DeepSpeed config for {want}; known: {sorted(STANDARD_CONFIGS)}")


def resolve_config_path(path: str | os.PathLike) -> Path:
    """An existing DeepSpeed JSON: absolute, relative to the working directory, or relative to the
    repository root (so ``"configs/ds_zero2.json"`` works from ``notebooks/`` too)."""
    p = Path(path).expanduser()
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, REPO_CONFIGS.parent / p]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise FileNotFoundError(f"DeepSpeed config {str(path)!r} not found (looked at {', '.join(map(str, candidates))}); "
                            f"expected e.g. 'configs/ds_zero2.json' (standard ones: {sorted(STANDARD_CONFIGS)})")


def zero_settings(config) -> tuple[int, bool, bool]:
    """``(zero_stage, offload_optimizer, offload_params)`` of a DeepSpeed config (dict or path)."""
    cfg = _load(resolve_config_path(config) if isinstance(config, (str, os.PathLike)) else config)
    zero = cfg.get("zero_optimization")
    if not isinstance(zero, dict) or zero.get("stage") not in (0, 1, 2, 3):
        raise ValueError(f"DeepSpeed config {config if not isinstance(config, dict) else '(dict)'} has no "
                         "zero_optimization.stage in 0..3")

    def offloaded(key):
        return isinstance(zero.get(key), dict) and zero[key].get("device", "none") != "none"

    return int(zero["stage"]), offloaded("offload_optimizer"), offloaded("offload_param")


def write_deepspeed_configs(folder: str | os.PathLike = REPO_CONFIGS) -> dict[str, Path]:
    """Write :data:`STANDARD_CONFIGS` as JSON files into ``folder``; returns name -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, kwargs in STANDARD_CONFIGS.items():
        path = folder / name
        path.write_text(json.dumps(deepspeed_config(**kwargs), indent=2, sort_keys=True) + "\n")
        out[name] = path
    return out


def _load(config) -> dict:
    if isinstance(config, dict):
        return copy.deepcopy(config)
    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"DeepSpeed config {path} does not exist (expected a dict or a JSON file)")
    return json.loads(path.read_text())


def resolve_auto(config, *, world_size: int = 1, micro_batch: int = 1, grad_accum: int = 1, bf16: bool = False,
                 grad_clip: float = 1.0, lr: float = 1e-5, betas: Sequence[float] = (0.9, 0.95), eps: float = 1e-8,
                 weight_decay: float = 0.01, hidden_size: int = 3072) -> dict:
    """A copy of ``config`` with every ``"auto"`` replaced the way HF Trainer fills it.

    ``train_batch_size = world_size × micro_batch × grad_accum``; ZeRO-3 bucket sizes
    from ``hidden_size`` (reduce h², prefetch 0.9 h², persistence 10 h). Any
    ``"auto"`` left over raises (a key this function does not know).
    """
    cfg = _load(config)
    values = {
        ("bf16", "enabled"): bool(bf16),
        ("gradient_accumulation_steps",): int(grad_accum),
        ("gradient_clipping",): float(grad_clip),
        ("train_micro_batch_size_per_gpu",): int(micro_batch),
        ("train_batch_size",): int(world_size) * int(micro_batch) * int(grad_accum),
        ("optimizer", "params", "lr"): float(lr),
        ("optimizer", "params", "betas"): [float(b) for b in betas],
        ("optimizer", "params", "eps"): float(eps),
        ("optimizer", "params", "weight_decay"): float(weight_decay),
        ("zero_optimization", "reduce_bucket_size"): hidden_size * hidden_size,
        ("zero_optimization", "stage3_prefetch_bucket_size"): int(0.9 * hidden_size * hidden_size),
        ("zero_optimization", "stage3_param_persistence_threshold"): 10 * hidden_size,
    }
    for keys, value in values.items():
        node = cfg
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict) and node.get(keys[-1]) == AUTO:
            node[keys[-1]] = value

    def leftover(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from leftover(v, f"{path}.{k}" if path else k)
        elif node == AUTO:
            yield path

    left = list(leftover(cfg, ""))
    if left:
        raise ValueError(f"DeepSpeed config keys {left} are 'auto' but resolve_auto does not know how to fill them")
    return cfg


def validate_deepspeed_config(config, **resolve_kwargs):
    """Parse ``config`` (dict or JSON path) with DeepSpeed's own ``DeepSpeedConfig`` after
    :func:`resolve_auto`; returns the parsed object. Raises on any invalid entry or
    inconsistent batch sizes (``train_batch_size != micro × accum × world``)."""
    from deepspeed.runtime.config import DeepSpeedConfig

    world_size = int(resolve_kwargs.get("world_size", 1))
    resolved = resolve_auto(config, **resolve_kwargs)
    micro, accum = resolved["train_micro_batch_size_per_gpu"], resolved["gradient_accumulation_steps"]
    if resolved["train_batch_size"] != world_size * micro * accum:
        raise ValueError(f"invalid DeepSpeed config: train_batch_size {resolved['train_batch_size']} != "
                         f"micro batch {micro} x accumulation {accum} x world size {world_size}")
    # Without an initialised process group DeepSpeed parses as world size 1: give it that view.
    local = dict(resolved, train_batch_size=micro * accum)
    try:
        parsed = DeepSpeedConfig(local)
    except AssertionError as e:  # DeepSpeed reports config inconsistencies with bare asserts
        raise ValueError(f"invalid DeepSpeed config: {e}") from e
    return parsed


def launch_command(script: str, config_path: str | os.PathLike, n_gpus: int, *, launcher: str = "accelerate",
                   script_args: Sequence[str] = (), module: bool = False) -> str:
    """The shell command that runs ``script`` on ``n_gpus`` GPUs of one machine with DeepSpeed.

    ``launcher``: ``"accelerate"`` (``accelerate launch --use_deepspeed``; the script
    passes the same JSON to ``train_with_trainer(deepspeed=...)``), ``"deepspeed"``
    (the DeepSpeed launcher) or ``"torchrun"``. Every process runs the same script;
    HF Trainer reads RANK/WORLD_SIZE/LOCAL_RANK that the launcher sets. ``module=True``:
    ``script`` is a module name run like ``python -m`` (e.g. ``helpers.train.recipe``, whose CLI
    trains a stage from its ``config.json``).
    """
    if n_gpus < 1:
        raise ValueError(f"n_gpus must be >= 1, got {n_gpus}")
    cfg, args = str(config_path), [str(a) for a in script_args]
    mod = ["--module"] if module else []  # accelerate, deepspeed and torchrun all spell it --module
    if launcher == "accelerate":
        parts = ["accelerate", "launch", "--num_processes", str(n_gpus), "--num_machines", "1",
                 "--use_deepspeed", "--deepspeed_config_file", cfg, *mod, script, *args]
    elif launcher == "deepspeed":
        parts = ["deepspeed", "--num_gpus", str(n_gpus), *mod, script, *args]
    elif launcher == "torchrun":
        parts = ["torchrun", "--standalone", "--nproc_per_node", str(n_gpus), *mod, script, *args]
    else:
        raise ValueError(f"launcher must be 'accelerate', 'deepspeed' or 'torchrun', got {launcher!r}")
    return shlex.join(parts)


# ============================================================================ HF Trainer path


class PackedBinsDataset:
    """Packed training rows for HF Trainer: item ``i`` is :func:`helpers.train.packing.collate` of bin ``i``.

    ``examples``: :class:`helpers.train.sequences.Example` list; ``bins``: lists of example
    indices (from :func:`helpers.train.packing.shuffled_bins`). Items are dicts of (N,)
    int64 tensors ``input_ids``, ``labels``, ``position_ids`` (batch dim removed).
    """

    def __init__(self, examples, bins: Sequence[Sequence[int]]):
        if not bins:
            raise ValueError("no bins: nothing to train on")
        n = len(examples)
        bad = [i for b in bins for i in b if not 0 <= i < n]
        if bad:
            raise ValueError(f"bins refer to examples {bad[:5]} but there are only {n}")
        self.examples, self.bins = list(examples), [list(b) for b in bins]

    def __len__(self) -> int:
        return len(self.bins)

    def __getitem__(self, i: int) -> dict:
        from .packing import collate

        batch = collate([self.examples[j] for j in self.bins[i]])
        return {k: batch[k][0] for k in ("input_ids", "labels", "position_ids")}


def packed_collator(items: Sequence[dict]) -> dict:
    """Collate for ``per_device_train_batch_size=1``: one packed row -> (1, N) tensors."""
    if len(items) != 1:
        raise ValueError(f"packed rows are already batches: use per_device_train_batch_size=1 (got {len(items)} rows)")
    return {k: v.unsqueeze(0) for k, v in items[0].items()}


def _chunked_trainer_class():
    from transformers import Trainer

    from .memory import causal_lm_loss

    class ChunkedCETrainer(Trainer):
        """HF Trainer whose loss is :func:`helpers.train.memory.causal_lm_loss` (chunked CE).

        Normalisation matches HF: the summed loss over the micro-batch divided by
        the target tokens of the whole accumulation step (``num_items_in_batch``),
        scaled by the process count when tokens are averaged across devices.
        Under ZeRO-3 the LM-head weight is a partitioned shard outside its module's
        forward, so that case uses the model's own (full-logits) loss.
        """

        ce_chunk = 1024

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            ds = getattr(self.accelerator.state, "deepspeed_plugin", None)
            zero3 = ds is not None and ds.zero_stage == 3
            if zero3 or self.ce_chunk <= 0:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inner = self.accelerator.unwrap_model(model)
            loss_sum, n = causal_lm_loss(inner, inputs["input_ids"], inputs["labels"],
                                         position_ids=inputs.get("position_ids"), chunk_size=self.ce_chunk,
                                         reduction="sum")
            denom = num_items_in_batch if num_items_in_batch is not None else max(n, 1)
            loss = loss_sum / denom
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            return (loss, None) if return_outputs else loss

    return ChunkedCETrainer


def train_with_trainer(model, train_dataset, *, output_dir: str | os.PathLike, learning_rate: float,
                       max_steps: int, deepspeed: dict | str | os.PathLike | None = None, collator=packed_collator,
                       grad_accum: int = 1, weight_decay: float = 0.01, adam_betas: Sequence[float] = (0.9, 0.95),
                       adam_eps: float = 1e-8, max_grad_norm: float = 1.0, warmup_steps: int = 0,
                       min_lr_ratio: float = 0.1, bf16: bool | None = None, gradient_checkpointing: bool = False,
                       ce_chunk: int = 1024, seed: int = 1234, logging_steps: int = 1, save_steps: int = 500,
                       save_total_limit: int = 2, resume: bool = True, extra_args: dict | None = None,
                       callbacks: Sequence | None = None):
    """Train ``model`` on packed rows with HF Trainer, through DeepSpeed when ``deepspeed`` is given.

    The same hyper-parameters as :class:`helpers.train.config.StageConfig` (cosine schedule
    with warmup to ``min_lr_ratio``, AdamW, clipping, accumulation). Launched with
    ``accelerate launch`` / ``deepspeed`` (see :func:`launch_command`) every process
    calls this; in a plain Python process it trains on one device (one-process
    DeepSpeed needs RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT set; on CPU
    the gloo backend is used).

    Args:
        train_dataset: e.g. :class:`PackedBinsDataset`; ``collator`` turns one item into (1, N).
        deepspeed: config dict or JSON path (:func:`deepspeed_config`), or None.
        bf16: None = on when CUDA is available (DeepSpeed ``bf16`` "auto" follows it).
        ce_chunk: tokens per chunk of :func:`helpers.train.memory.causal_lm_loss`; 0 = HF's loss.
        resume: continue from the newest ``output_dir/checkpoint-N`` if any (HF semantics:
            model, optimizer/ZeRO shards, scheduler, RNG and data position).
        callbacks: extra ``transformers.TrainerCallback`` objects (the stage recipe publishes each
            saved checkpoint to the run directory from one).
    Returns:
        ``(train_output, log_history)``: HF's ``TrainOutput`` and the Trainer's list of
        logged dicts (``loss``, ``learning_rate``, ``grad_norm`` per ``logging_steps``).
    """
    import torch
    from transformers import TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    output_dir = Path(output_dir)
    if bf16 is None:
        bf16 = torch.cuda.is_available()
    if bf16 and not torch.cuda.is_available():
        raise ValueError("bf16=True needs a CUDA GPU (HF Trainer refuses bf16 on CPU); pass bf16=False")
    ds = None if deepspeed is None else (_load(deepspeed) if isinstance(deepspeed, (str, os.PathLike)) else
                                         copy.deepcopy(deepspeed))
    model.config.use_cache = False  # packed rows are masked per example only without a KV cache
    kwargs = dict(
        output_dir=str(output_dir), max_steps=int(max_steps), per_device_train_batch_size=1,
        gradient_accumulation_steps=int(grad_accum), learning_rate=float(learning_rate),
        weight_decay=float(weight_decay), adam_beta1=float(adam_betas[0]), adam_beta2=float(adam_betas[1]),
        adam_epsilon=float(adam_eps), max_grad_norm=float(max_grad_norm), warmup_steps=int(warmup_steps),
        lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": float(min_lr_ratio)},
        bf16=bool(bf16), gradient_checkpointing=bool(gradient_checkpointing),
        gradient_checkpointing_kwargs={"use_reentrant": False}, logging_steps=int(logging_steps),
        save_steps=int(save_steps), save_total_limit=int(save_total_limit), seed=int(seed), data_seed=int(seed),
        report_to=[], remove_unused_columns=False, dataloader_num_workers=0, deepspeed=ds,
        use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
    )
    kwargs.update(extra_args or {})
    args = TrainingArguments(**kwargs)
    trainer_cls = _chunked_trainer_class()
    trainer = trainer_cls(model=model, args=args, train_dataset=train_dataset, data_collator=collator,
                          callbacks=list(callbacks or []))
    trainer.ce_chunk = int(ce_chunk)
    last = get_last_checkpoint(str(output_dir)) if (resume and output_dir.is_dir()) else None
    out = trainer.train(resume_from_checkpoint=last)
    return out, list(trainer.state.log_history)


# ----------------------------------------------------------------------------- the stage recipe on this path
def train_recipe(recipe):
    """Train a :class:`helpers.train.recipe.StageRecipe` through HF Trainer + DeepSpeed (``cfg.deepspeed``) on the
    same packed bins and schedule; returns its ``TrainResult``.

    Launched with :func:`helpers.train.recipe.launch_command` every process runs this; in a notebook it forms a
    one-process group (ZeRO offload on one GPU). With N processes each optimizer step consumes
    N × grad_accum bins, so the step count is ``ceil(total_steps / N)``. metrics.csv is rewritten
    from the Trainer's log on rank 0 (tokens per step are not tracked on this path).
    """
    from torch.utils.data import ConcatDataset


    cfg = recipe.cfg
    if "WORLD_SIZE" not in os.environ:  # not under a launcher: a one-process DeepSpeed group
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(free_port()))
    world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ.get("RANK", "0"))
    ds_path = resolve_config_path(cfg.deepspeed)
    recipe._zero3 = zero_settings(ds_path)[0] == 3
    steps = max(1, math.ceil(recipe.total_steps / world))
    # Bins of enough epochs for the planned steps (each epoch has its own reference clips and order).
    n_epochs = (max(1, math.ceil(cfg.epochs)) if cfg.max_steps is None else
                max(1, math.ceil(cfg.max_steps * cfg.grad_accum / len(recipe._epoch.bins))))
    parts = [PackedBinsDataset(recipe._epoch.examples, recipe._epoch.bins)]
    for e in range(1, n_epochs):
        ep = recipe._build_epoch(e)
        parts.append(PackedBinsDataset(ep.examples, ep.bins))
    data = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    recipe.log(f"stage {cfg.stage}: DeepSpeed {ds_path.name}, {world} process(es), {steps} steps")
    # HF Trainer writes its checkpoints to local scratch; a callback publishes each one into the run
    # directory (manifest, atomic copy, the same retention policy); resume restores the newest one.
    local_out = recipe._local_root() / HF_TRAINER_DIR
    _restore_hf_checkpoint(recipe, local_out, rank)
    out, logs = train_with_trainer(
        recipe.model, data, output_dir=local_out, deepspeed=str(ds_path),
        learning_rate=cfg.learning_rate, max_steps=steps, grad_accum=cfg.grad_accum,
        weight_decay=cfg.weight_decay, adam_betas=cfg.adam_betas, adam_eps=cfg.adam_eps,
        max_grad_norm=cfg.max_grad_norm, warmup_steps=recipe.warmup_steps, min_lr_ratio=cfg.min_lr_ratio,
        bf16=cfg.precision != "fp32", gradient_checkpointing=False,  # already set up by enable_checkpointing
        ce_chunk=cfg.ce_chunk, seed=cfg.seed, logging_steps=cfg.log_every, save_steps=cfg.save_every or steps,
        save_total_limit=1, resume=True, callbacks=[_hf_publisher(recipe, rank, steps)])
    recipe.step = recipe.total_steps if out.global_step >= steps else out.global_step
    rows = [r for r in logs if "loss" in r]
    if rank == 0:
        recipe.metrics.truncate_after(0)
        elapsed = float(out.metrics.get("train_runtime", 0.0))
        for r in rows:
            recipe.metrics.append({"step": int(r["step"]), "epoch": int(float(r.get("epoch", 0))),
                                 "loss": repr(float(r["loss"])), "lr": repr(float(r.get("learning_rate", 0.0))),
                                 "grad_norm": repr(float(r.get("grad_norm", float("nan")))),
                                 "elapsed_s": f"{elapsed * int(r['step']) / max(1, steps):.2f}"})
        if cfg.eval_every and not recipe._zero3:  # ZeRO-3 weights are sharded: no generation here
            recipe.evaluate()
    return TrainResult(cfg.stage, recipe.step, recipe.resumed_from, float(rows[-1]["loss"]) if rows else None,
                       recipe.metrics.published)


def _restore_hf_checkpoint(recipe, local_out: Path, rank: int) -> None:
    """Copy the newest complete published HF checkpoint back to local scratch (rank 0; the others wait)."""

    marker = local_out / f".restored-{os.environ.get('MASTER_PORT', '0')}"
    if rank == 0:
        path = ckpt.find_resume_path(recipe.stage_dir / HF_TRAINER_DIR, log=recipe.log, api=recipe.remover.api)
        if path is not None:
            step = ckpt.read_manifest_step(path)
            target = local_out / f"checkpoint-{step}"
            if not (target.is_dir() and ckpt.verify(target, hashes=False) is None):
                shutil.rmtree(local_out, ignore_errors=True)
                shutil.copytree(path, target)
            recipe.resumed_from = str(path)
            recipe.log(f"resumed stage {recipe.cfg.stage} (DeepSpeed) from {path.name}")
        local_out.mkdir(parents=True, exist_ok=True)
        marker.write_text("ok")
        return
    deadline = time.monotonic() + 3600
    while not marker.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {rank}: rank 0 did not restore the checkpoint into {local_out} within 1 h")
        time.sleep(1.0)


def _hf_publisher(recipe, rank: int, steps: int):
    """TrainerCallback: saves by wall clock and at the end; publishes every save like the main loop's."""
    from transformers import TrainerCallback

    recipe, cfg = recipe, recipe.cfg

    class Publisher(TrainerCallback):
        last = time.monotonic()

        def on_step_end(self, args, state, control, **kw):
            minutes = cfg.save_every_minutes
            if state.global_step >= steps or (minutes and time.monotonic() - self.last >= minutes * 60):
                control.should_save = True
            return control

        def on_save(self, args, state, control, **kw):
            barrier()  # every rank has written its shards
            if rank == 0:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                ckpt.write_manifest(folder, state.global_step)
                recipe.checkpoint_saves += 1
                try:
                    dest = ckpt.publish(folder, recipe.stage_dir / HF_TRAINER_DIR, cfg.keep_last,
                                        remover=recipe.remover, step=state.global_step)
                except ckpt.UploadPending as e:  # the previous one still uploads: this one stays local
                    recipe.log(f"DeepSpeed checkpoint {folder.name}: {e}")
                else:
                    recipe.checkpoint_bytes = drive.tree_bytes(dest)
                    recipe.log(f"published DeepSpeed checkpoint {dest.name} ({recipe.checkpoint_bytes / 1e9:.3f} GB)")
            barrier()
            self.last = time.monotonic()
            return control

    return Publisher()
