"""benchmarks/gpu_check.py runs end to end on the CPU with tiny sizes.

On a CUDA machine the script is run by hand with its defaults (see its
docstring); here only its CPU path is exercised, and its CUDA path skips with
a message when there is no CUDA.
"""

import importlib.util
import pathlib

import pytest
import torch

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_on_cpu_with_tiny_sizes(gpu_check, capsys):
    args = ["--device", "cpu", "--sizes", "3000", "--n-train", "200", "--epochs", "1", "--batch", "20", "--sample", "5"]
    assert gpu_check.main(args) == 0
    out = capsys.readouterr().out
    assert "pickle on a CPU-only process" in out and "-> OK" in out
    assert "same neighbours as numpy on 5 queries: OK" in out
    assert "inverted lists, 3e+03 codes" in out
    assert "ALL OK" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_check_skips_cuda_without_it(gpu_check, capsys):
    assert gpu_check.main([]) == 0
    assert "SKIPPED" in capsys.readouterr().out
