"""MMSeg's models are imported without torch's FSDP and ZeRO modules (robust_seg/compat/mmengine_imports.py)."""
import subprocess
import sys

import pytest

from robust_seg.compat.mmengine_imports import HIDDEN, PLACEHOLDERS, mmseg_without_fsdp


def test_within_the_block_fsdp_is_a_placeholder_and_zero_is_hidden_afterwards_both_are_real(monkeypatch):
    for name in (*PLACEHOLDERS, *HIDDEN, "mmseg.models"):
        monkeypatch.delitem(sys.modules, name, raising=False)  # as in a fresh process (restored after the test)
    with mmseg_without_fsdp():
        from torch.distributed.fsdp.api import FullStateDictConfig
        assert FullStateDictConfig.__module__.endswith("(placeholder)")
        with pytest.raises(ImportError):
            import torch.distributed.optim  # noqa: F401
    assert not any(name in sys.modules for name in (*PLACEHOLDERS, *HIDDEN))
    import torch.distributed
    assert not hasattr(torch.distributed, "fsdp") or "placeholder" not in repr(torch.distributed.fsdp)


def test_an_imported_fsdp_leaves_the_import_unchanged(monkeypatch):
    marker = object()
    monkeypatch.setitem(sys.modules, "torch.distributed.optim", marker)
    with mmseg_without_fsdp():
        assert sys.modules["torch.distributed.optim"] is marker
    assert sys.modules["torch.distributed.optim"] is marker


@pytest.mark.slow  # a fresh interpreter importing torch and MMSeg (about 5 s)
def test_a_fresh_process_builds_the_model_without_fsdp_and_can_import_the_real_modules_afterwards():
    code = ("import sys\n"
            "from robust_seg.models.embedded import load_embedded_model\n"
            "load_embedded_model()\n"
            "assert 'sympy' not in sys.modules and 'torch.distributed.tensor' not in sys.modules\n"
            "from torch.distributed.fsdp import FullyShardedDataParallel\n"
            "from torch.distributed.optim import ZeroRedundancyOptimizer\n"
            "import torch\n"
            "assert issubclass(FullyShardedDataParallel, torch.nn.Module) and 'placeholder' not in repr(torch.distributed.fsdp)\n")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
