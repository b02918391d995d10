import argparse
import json
import subprocess
import sys

import pytest
import torch

from dif.commandline import HelpFormatter
from dif_cli import COMMAND_MODULES, build_parser, main


def test_missing_class_folder_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "1_fake").mkdir()
    assert main(["crossval", str(tmp_path), "--json", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "0_real" in err and len(err.splitlines()) == 1


def test_eval_of_missing_artifact_is_a_one_line_error(tmp_path, ltim, capsys):
    assert main(["eval", str(tmp_path / "none"), str(ltim / "mj"), "--json"]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here: test_cuda_device_is_used runs")
def test_unavailable_cuda_is_refused(ltim, capsys):
    assert main(["crossval", str(ltim / "mj"), "--device", "cuda"]) == 2
    assert "--device cpu" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: test_unavailable_cuda_is_refused runs")
def test_cuda_device_is_used(ltim, capsys):
    """On a CUDA machine the same command trains and scores on the GPU (mj separates cleanly)."""
    assert main(["crossval", str(ltim / "mj"), "--device", "cuda", "--folds", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_fake"] == 10 and len(report["folds"]) == 5
    assert report["auc"] >= 0.90, report


def test_blank_experiment_writes_pngs(tmp_path, capsys):
    assert main(["blank", "--out", str(tmp_path), "--steps", "3", "--width", "4", "--device", "cpu"]) == 0
    for name in ("blank_image.png", "blank_spectrum.png", "blank_output.safetensors"):
        assert (tmp_path / name).stat().st_size > 0


def test_train_denoiser_then_use_it(tmp_path, ltim, capsys):
    assert main(["train-denoiser", str(ltim / "mj" / "0_real"), "--out", str(tmp_path / "den"),
                 "--steps", "3", "--depth", "3", "--width", "4", "--quiet", "--device", "cpu"]) == 0
    assert main(["crossval", str(ltim / "mj"), "--extractor", "dncnn@1", "--extractor-dir", str(tmp_path / "den"),
                 "--folds", "2", "--json", "--device", "cpu", "--crops", "1", "--estimator", "mean/z"]) == 0
    assert "accuracy" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


# --- help: fast, complete, and errors with the sub-command's own usage ------------------------------

# The modules whose parsers are built without torch (training.commands still imports it: see below).
LIGHT_MODULES = ("app.cli", "training.commands", "training.import_commands", "training.lineage_commands")
HEAVY = ("torch", "fastapi", "uvicorn", "numpy", "matplotlib")


def imported_by(argv: list[str]) -> set[str]:
    """Top-level packages a real ``dif ARGV`` process imports (``python -X importtime``)."""
    code = "import sys; from dif_cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code, *argv],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines()
            if line.startswith("import time:")}


def command_parsers(modules: tuple[str, ...] | None = None) -> dict[str, argparse.ArgumentParser]:
    parser = build_parser(modules)
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(commands.choices)


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_sub_command_help_imports_no_heavy_module(module: str) -> None:
    for command in COMMAND_MODULES[module]:
        heavy = imported_by([command, "--help"]) & set(HEAVY)
        assert not heavy, f"`dif {command} --help` imports {sorted(heavy)}"


def test_top_level_help_imports_no_heavy_module() -> None:
    heavy = imported_by(["--help"]) & set(HEAVY)
    assert not heavy, f"`dif --help` imports {sorted(heavy)}"


def test_command_modules_names_what_each_module_registers() -> None:
    for module, commands in COMMAND_MODULES.items():
        assert tuple(command_parsers((module,))) == commands, module


def test_every_sub_command_has_a_description() -> None:
    for command, parser in command_parsers().items():
        assert parser.description and len(parser.description) > 20, command


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_positionals_are_documented_and_defaults_shown(module: str) -> None:
    for command in COMMAND_MODULES[module]:
        parser = command_parsers((module,))[command]
        for action in parser._actions:
            if not action.option_strings:
                assert action.help, f"dif {command}: positional {action.dest} has no help"
            elif action.default not in (None, False, [], argparse.SUPPRESS):
                shown = HelpFormatter(command)._get_help_string(action) or ""
                assert "default" in shown, f"dif {command} {action.option_strings[0]}: default not shown"


def test_lineage_defaults_are_the_library_defaults() -> None:
    from dif.lineage import LineageConfig
    from training import lineage_commands

    assert (lineage_commands.DEFAULT_MAX_SHIFT, lineage_commands.DEFAULT_ALPHA) == \
        (LineageConfig().max_shift, LineageConfig().alpha)


def test_serve_help_names_the_settings_a_first_run_needs(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in ("DIF_FINGERPRINTS_DIR", "DIF_API_KEY", "DIF_HOST", "DIF_PORT"):
        assert name in out, name
    from app.settings import Settings

    assert f"else {Settings.model_fields['host'].default})" in out
    assert f"else {Settings.model_fields['port'].default})" in out


@pytest.mark.parametrize("argv", [["serve", "--bogus"], ["lineage", "a", "b", "--bogus"],
                                  ["import-reference", "x", "--out", "y", "--bogus"]])
def test_unknown_flag_prints_the_sub_command_usage_and_one_error_line(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: dif {argv[0]} "), err
    errors = [line for line in err.splitlines() if "error" in line]
    assert errors == [f"dif {argv[0]}: error: unrecognized arguments: --bogus"], err


def test_train_refuses_to_overwrite_an_artifact_without_force(tmp_path, ltim, capsys):
    out = tmp_path / "mj"
    quick = ["--estimator", "flags", "--prior", "mean", "--calibration", "train", "--crops", "1", "--device", "cpu",
             "--quiet"]
    assert main(["train", str(ltim / "mj"), "--out", str(out), *quick]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["train", str(ltim / "mj"), "--out", str(out), "--seed", "1", *quick]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--force" in err and str(out) in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    assert main(["train", str(ltim / "mj"), "--out", str(out), "--seed", "1", "--force", *quick]) == 0
    assert "wrote" in capsys.readouterr().out
