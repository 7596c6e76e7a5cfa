"""MMSeg's models are imported without modules for features never used here (robust_seg/compat/lean_import.py)."""
import subprocess
import sys

import pytest

from robust_seg.compat import lean_import
from robust_seg.compat.lean_import import HIDDEN, PLACEHOLDERS, lean_mmseg_import


def test_within_the_block_fsdp_is_a_placeholder_and_zero_is_hidden_afterwards_both_are_real(monkeypatch):
    for name in (*PLACEHOLDERS, *HIDDEN, "mmseg.models"):
        monkeypatch.delitem(sys.modules, name, raising=False)  # as in a fresh process (restored after the test)
    with lean_mmseg_import():
        from torch.distributed.fsdp.api import FullStateDictConfig
        assert FullStateDictConfig.__module__.endswith("(placeholder)")
        with pytest.raises(ImportError):
            import torch.distributed.optim  # noqa: F401
    assert not any(name in sys.modules for name in (*PLACEHOLDERS, *HIDDEN))
    import torch.distributed
    assert not hasattr(torch.distributed, "fsdp") or "placeholder" not in repr(torch.distributed.fsdp)


def test_an_imported_fsdp_leaves_the_import_unchanged(monkeypatch):
    marker = object()
    monkeypatch.delitem(sys.modules, "mmseg.models", raising=False)
    monkeypatch.setitem(sys.modules, "torch.distributed.optim", marker)
    with lean_mmseg_import():
        assert sys.modules["torch.distributed.optim"] is marker
    assert sys.modules["torch.distributed.optim"] is marker


@pytest.fixture
def slow_module(tmp_path, monkeypatch):
    """A module ``slow_dependency`` that records its import in a file (returned), and ``its_user``, which imports
    from it as MMSeg imports from SciPy: a function by name and the module itself."""
    (tmp_path / "slow_dependency.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'w').close()\nSCALE = 3\n\ndef scale(x, by=SCALE):\n    return by * x\n")
    (tmp_path / "its_user.py").write_text("from slow_dependency import scale\nimport slow_dependency as whole\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    monkeypatch.setattr(lean_import, "DEFERRED", ("slow_dependency",))
    for name in ("mmseg.models", "slow_dependency", "its_user"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield tmp_path / "imported"
    for name in ("slow_dependency", "its_user"):
        sys.modules.pop(name, None)


def test_a_deferred_module_is_imported_on_first_use_and_computes_the_same(slow_module):
    with lean_mmseg_import():
        import its_user
        assert not slow_module.exists()  # only the stand-in: the module's code has not run
    assert "slow_dependency" not in sys.modules  # the stand-in is gone: a later import gets the real module
    assert its_user.scale(2, by=5) == 10 and its_user.scale.__name__ == "scale"  # forwards to the real function
    real = sys.modules["slow_dependency"]
    assert slow_module.exists() and its_user.whole.SCALE == 3 and its_user.whole.scale is real.scale
    import slow_dependency
    assert slow_dependency is real and slow_dependency.scale(2) == 6


def test_a_module_imported_before_the_block_is_used_as_it_is(slow_module):
    import slow_dependency
    with lean_mmseg_import():
        import its_user
    assert its_user.scale is slow_dependency.scale and its_user.whole is slow_dependency


@pytest.mark.slow  # a fresh interpreter importing torch and MMSeg (about 5 s)
def test_a_fresh_process_builds_the_model_lean_and_mmseg_functions_still_work():
    code = ("import sys\n"
            "from robust_seg.models.embedded import load_embedded_model\n"
            "load_embedded_model()\n"
            "unused = ('sympy', 'torch.distributed.tensor', 'scipy.optimize', 'scipy.ndimage', 'scipy.interpolate',\n"
            "          'mmseg.utils.tokenizer', 'ftfy')\n"
            "assert not any(name in sys.modules for name in unused), [n for n in unused if n in sys.modules]\n"
            "import numpy as np, torch\n"
            "from mmseg.models.assigners import hungarian_assigner\n"
            "from mmseg.datasets.transforms import transforms\n"
            "from mmseg.models.backbones import beit\n"
            "from mmseg import utils\n"
            "import scipy.optimize, scipy.ndimage, scipy.interpolate\n"
            "cost = np.array([[4.0, 1.0], [2.0, 3.0]])\n"
            "assert [a.tolist() for a in hungarian_assigner.linear_sum_assignment(cost)] == [[0, 1], [1, 0]]\n"
            "image = np.arange(25.0).reshape(5, 5)\n"
            "assert (transforms.gaussian_filter(image, 1) == scipy.ndimage.gaussian_filter(image, 1)).all()\n"
            "assert beit.interpolate.interp1d is scipy.interpolate.interp1d\n"
            "from mmseg.utils import tokenizer\n"
            "assert utils.tokenize('a photo of a cat').shape == (1, 77)\n"
            "assert torch.equal(utils.tokenize('a cat'), tokenizer.tokenize('a cat'))\n"
            "from torch.distributed.fsdp import FullyShardedDataParallel\n"
            "from torch.distributed.optim import ZeroRedundancyOptimizer\n"
            "assert issubclass(FullyShardedDataParallel, torch.nn.Module) and 'placeholder' not in repr(torch.distributed.fsdp)\n")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
