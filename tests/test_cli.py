"""The command line, through main(argv) and as a subprocess."""

import subprocess
import sys

import pytest

from skdqn.__main__ import main


def test_demo_through_main(capsys):
    assert main(["demo", "--epochs", "2", "--M", "1", "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "8-bit codes" in out
    assert "PQ of the pixels" in out and "DQN (DeepQuantizer)" in out and "queries/s" in out


def test_unknown_command_and_bad_option_exit_with_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["demo", "--M", "3"])
    assert "invalid choice" in capsys.readouterr().err


def test_module_help_as_subprocess():
    result = subprocess.run(
        [sys.executable, "-m", "skdqn", "demo", "--help"], capture_output=True, text=True, check=True
    )
    assert "digits" in result.stdout and "--epochs" in result.stdout
