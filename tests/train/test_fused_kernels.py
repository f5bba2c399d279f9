"""kernels="liger" (helpers.train.memory.apply_kernels) on the CPU: it refuses, saying why; "none" changes nothing.
Its CUDA behaviour (loss and gradients against the reference) is tests/test_gpu.py::test_liger_kernels_match_the_reference_on_cuda."""
import pytest
import torch

from helpers.tiny_models import build_tiny_llama
from helpers.train import config, memory

torch.set_num_threads(1)


def test_liger_refuses_on_the_cpu_with_the_reason():
    model = build_tiny_llama(300)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    forwards = [type(m).forward for m in model.modules()]
    with pytest.raises(RuntimeError, match=r"kernels='liger' needs a CUDA model.*this model is on cpu.*kernels='none'"):
        memory.apply_kernels(model, "liger")
    assert memory.applied_kernels(model) == "none"  # nothing was patched
    assert [type(m).forward for m in model.modules()] == forwards
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="kernels must be one of"):
        memory.apply_kernels(model, "triton")


def test_no_kernels_is_the_reference_path():
    model = build_tiny_llama(300)
    assert memory.apply_kernels(model, "none") == [] and memory.applied_kernels(model) == "none"
    ids = torch.randint(0, 300, (1, 20))
    loss, n = memory.causal_lm_loss(model, ids, ids.clone())  # the chunked CE (no Liger): equals HF's loss
    assert n == 19 and float(loss) == pytest.approx(float(model(input_ids=ids, labels=ids).loss), rel=1e-5)


def test_kernels_names_agree_and_the_config_checks_them():
    from helpers.train.config import stage_config

    assert config.KERNELS == memory.KERNELS
    assert "kernels" in config.REPLANNABLE_FIELDS  # same math: a resumed run may switch it
    assert stage_config(2, "tiny").kernels == "none"
    with pytest.raises(ValueError, match="kernels"):
        stage_config(2, "tiny", kernels="xformers")
