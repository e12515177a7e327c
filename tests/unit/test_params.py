"""`golfkit params`: the dump and parameter count of the default and overridden configs."""

from __future__ import annotations

import io

from golfkit.cli import run


def _params(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(["params", *argv], out, err)
    return code, out.getvalue(), err.getvalue()


def test_default_config_prints_the_record_parameter_count():
    code, out, _ = _params()
    lines = out.splitlines()
    assert code == 0 and lines[0] == "Hyperparameters:" and lines[-1] == "model_params:35945671"
    assert "  num_layers: 11" in lines and "  ttt_lora_rank: 96" in lines


def test_overrides_change_the_count():
    code, out, _ = _params("NUM_LAYERS=9", "LOOP_END=4", "PARALLEL_START_LAYER=7")
    assert code == 0 and "  num_layers: 9" in out.splitlines()
    assert int(out.splitlines()[-1].split(":")[1]) < 35_945_671


def test_unknown_setting_is_one_line_with_a_suggestion():
    code, out, err = _params("MATRIX_LRR=0.1")
    assert code == 2 and out == ""
    assert err.strip() == "golfkit params: MATRIX_LRR: unknown setting (did you mean MATRIX_LR?)"


def test_malformed_argument():
    code, _, err = _params("NUM_LAYERS")
    assert code == 2 and "expected NAME=VALUE" in err
