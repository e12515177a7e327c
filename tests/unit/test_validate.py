"""golfkit validate: both schema profiles on every real submission.json, strict mutations, the CLI contract."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from golfkit.check.validate import SCHEMA_PATH, json_path, load_schema, validate_document, validator_for

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
# Collection-time twin of conftest's shared_data fixture: parametrization needs the file list up front.
SHARED_DATA = Path(os.environ.get("GOLFKIT_SHARED", REPO.parent / "shared")).resolve() / "data"

HISTORICAL = SHARED_DATA / "all-submission-json"
RECORDS = SHARED_DATA / "records"
KIT_EXAMPLE = REPO / "submission.json"


def _historical_files() -> list[str]:
    return sorted(str(p.relative_to(HISTORICAL)) for p in HISTORICAL.glob("*/*/*.json")) if HISTORICAL.is_dir() else []


def _record_folders() -> list[str]:
    return sorted(p.parent.name for p in RECORDS.glob("*/submission.json")) if RECORDS.is_dir() else []


# Historical files the lenient profile rejects, each after reading it: why it is defective, and the JSON
# path the validator must name.
LENIENT_REJECTS: dict[str, tuple[str, str]] = {
    "track_10min_16mb/2026-03-19_smeargate_orthoinit_muonwd/submission.json": (
        "no author, github_id, name or date: the rules ask for a name and GitHub ID, and it carries neither",
        "$.date",
    ),
    "track_10min_16mb/2026-03-20_10L_Int5MLP_MuonWD04_SWA50/submission.json": (
        "no val_bpb at all; the score 1.14276 (per its blurb a BPB mean) sits under val_loss, mislabeled",
        "$",
    ),
    "track_non_record_16mb/2026-03-19_SwiGLU_WarmdownFix_QuarterBatch_1x5090/submission.json": (
        "author and github_id are empty strings: nobody is named",
        "$.author",
    ),
    "track_non_record_16mb/2026-03-23_DGAttention_DavidGao/submission.json": (
        "bytes_total 16,638,468 is over the 16,000,000-byte cap that both 16mb tracks share",
        "$.bytes_total",
    ),
}

# April 2026 record files under the strict profile (what a NEW submission must carry). Only 2026-04-27
# carries everything; for each other file, the first thing it lacks and the path that must be named.
STRICT_REJECTS: dict[str, tuple[str, str]] = {
    "2026-04-01_Vocab4096_MLPMult4_WD085": ("no val_loss_std, byte summaries or per-seed eval time", "$.val_loss_std"),
    "2026-04-03_MuonEqR_DepthRecurrence_WD090_AllInt6": ("no track and no per-seed results", "$.seed_results"),
    "2026-04-04_SP4096_DepthRecurrence_ParallelResid_MuonEqR": ("no val_loss anywhere (nats)", "$.val_loss"),
    "2026-04-05_SP8192_GPTQ-Embeddings_SDClip_Loop45x2": ("no per-seed eval time", "$.seed_results['42'].eval_time_s"),
    "2026-04-06_SP8192_HessianSDClip_ProgressiveRecurrence": ("a date-time for date; val_loss off its seeds", "$.date"),
    "2026-04-08_SP8192_ParallelResid_ScoreFirstTTT": ("no val_loss, no blurb", "$.val_loss"),
    "2026-04-09_A2_Muon097_3Seed": ("per-seed results under seeds (an object), no track", "$.seeds"),
    "2026-04-09_SP8192_3LayerRecur_ParResid_QK525_LegalTTT": ("no val_loss (nats)", "$.seed_results['42'].val_loss"),
    "2026-04-14_MultiPhaseGlobalSGD_PhasedTTT": ("no top-level val_loss, no per-seed steps", "$.val_loss"),
    "2026-04-18_PR1626_CaseOps_Taper": ("no per-seed val_loss", "$.seed_results['0'].val_loss"),
    "2026-04-22_SP8192_CaseOps_GatedAttn_QuantGate_Loop45_PhasedTTT_MLPClip12": (
        "complete except pytorch_version (versions are part of a reproducible submission)",
        "$.pytorch_version",
    ),
    "2026-04-23_SP8192_CaseOps_SparseGate_QuantGate_Loop45_PhasedTTT_PolarNS_MinLR_FusedCE": (
        "per-seed eval time under another key (ttt_eval_time_s), no bytes_total or pytorch_version",
        "$.bytes_total",
    ),
}
STRICT_ACCEPTS = {"2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"}


def _paths(document: Any, profile: str = "strict") -> list[str]:
    return [p.path for p in validate_document(document, profile)]


def test_schema_file_is_valid_draft_2020_12() -> None:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema")
    assert {"strict", "lenient"} <= set(schema["$defs"])


@pytest.mark.parametrize("relative", _historical_files())
def test_lenient_accepts_every_well_formed_historical_file(run_cli, shared_data: Path, relative: str) -> None:
    path = shared_data / "all-submission-json" / relative
    code, out, err = run_cli("validate", "--profile", "lenient", str(path))
    if relative in LENIENT_REJECTS:
        reason, expected_path = LENIENT_REJECTS[relative]
        assert code == 1, f"expected rejection ({reason})"
        assert f"{path}: {expected_path}:" in out, out
    else:
        assert code == 0, f"{relative} rejected:\n{out}{err}"


def test_every_expected_lenient_rejection_exists(shared_data: Path) -> None:
    # A renamed fixture must not turn an expected rejection into a silent no-op.
    assert set(LENIENT_REJECTS) <= set(_historical_files())


@pytest.mark.parametrize("folder", _record_folders())
def test_strict_on_april_2026_records(run_cli, shared_data: Path, folder: str) -> None:
    path = shared_data / "records" / folder / "submission.json"
    code, out, _ = run_cli("validate", str(path))
    if folder in STRICT_ACCEPTS:
        assert code == 0, out
        return
    reason, expected_path = STRICT_REJECTS[folder]
    assert code == 1, f"expected strict rejection: {reason}"
    assert f"{path}: {expected_path}:" in out, out


def test_every_record_is_decided(shared_data: Path) -> None:
    assert set(_record_folders()) == set(STRICT_REJECTS) | STRICT_ACCEPTS


def test_kit_example_is_strict_valid() -> None:
    assert validate_document(json.loads(KIT_EXAMPLE.read_text()), "strict") == []


def test_strict_document_passes_lenient_too() -> None:
    assert validate_document(json.loads(KIT_EXAMPLE.read_text()), "lenient") == []


def test_historical_fixture_is_lenient_not_strict() -> None:
    document = json.loads((FIXTURES / "submissions" / "historical_minimal.json").read_text())
    assert validate_document(document, "lenient") == []
    assert "$.seed_results" in _paths(document, "strict")


def _drop(key: str):
    return lambda d: d.pop(key)


def _set(value: Any, *keys: str):
    def apply(d: dict) -> None:
        for key in keys[:-1]:
            d = d[key]
        d[keys[-1]] = value

    return apply


def _drop_seed_field(seed: str, key: str):
    return lambda d: d["seed_results"][seed].pop(key)


def _grow_all_bytes(d: dict) -> None:
    for entry in d["seed_results"].values():
        entry["artifact_bytes"] += 30_000
    d["artifact_bytes_max"] += 30_000
    d["artifact_bytes_mean"] += 30_000
    d["bytes_total"] += 30_000


# (id, mutation of the kit's example, JSON path that must be named)
MUTATIONS = [
    ("val_bpb as string", _set("1.05993", "val_bpb"), "$.val_bpb"),
    ("missing per-seed bytes", _drop_seed_field("42", "artifact_bytes"), "$.seed_results['42'].artifact_bytes"),
    (
        "per-seed bytes over cap",
        _set(16_000_001, "seed_results", "314", "artifact_bytes"),
        "$.seed_results['314'].artifact_bytes",
    ),
    ("bytes_total over cap", _grow_all_bytes, "$.bytes_total"),
    ("seeds disagree with results", _set([42, 314, 7], "seeds"), "$.seeds"),
    (
        "extra per-seed entry",
        lambda d: d["seed_results"].update({"7": dict(d["seed_results"]["42"])}),
        "$.seed_results['7']",
    ),
    ("negative eval time", _set(-1.0, "seed_results", "999", "eval_time_s"), "$.seed_results['999'].eval_time_s"),
    ("negative train time", _set(-598.9, "seed_results", "42", "train_time_s"), "$.seed_results['42'].train_time_s"),
    ("bad date", _set("2026-02-30", "date"), "$.date"),
    ("date-time for date", _set("2026-04-29T00:00:00Z", "date"), "$.date"),
    ("bad track", _set("10min-16mb", "track"), "$.track"),
    ("missing author", _drop("author"), "$.author"),
    ("bad github id", _set("not a login", "github_id"), "$.github_id"),
    ("empty name", _set("   ", "name"), "$.name"),
    ("mean disagrees with seeds", _set(1.0590, "val_bpb"), "$.val_bpb"),
    ("loss mean disagrees", _set(2.33, "val_loss"), "$.val_loss"),
    ("std disagrees", _set(0.01, "val_bpb_std"), "$.val_bpb_std"),
    ("max disagrees", _set(15_982_000, "artifact_bytes_max"), "$.artifact_bytes_max"),
    ("mean bytes disagree", _set(15_000_000, "artifact_bytes_mean"), "$.artifact_bytes_mean"),
    ("steps as float", _set(4984.5, "seed_results", "42", "steps"), "$.seed_results['42'].steps"),
    ("seed as string", _set(["42", 314, 999], "seeds"), "$.seeds[0]"),
    (
        "too few seeds for a record",
        lambda d: (d.update(seeds=[42]), d.update(seed_results={"42": d["seed_results"]["42"]})),
        "$.seeds",
    ),
    ("non-record without reason", _set("non_record_16mb", "track"), "$.non_record_reason"),
    ("delta inconsistent", _set(-0.05, "delta_vs_leaderboard_bpb"), "$.delta_vs_leaderboard_bpb"),
    ("missing pytorch version", _drop("pytorch_version"), "$.pytorch_version"),
    ("duplicate seeds", _set([42, 42, 999], "seeds"), "$.seeds"),
]


@pytest.mark.parametrize(("label", "mutate", "expected_path"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_strict_rejects_mutation_naming_the_field(label: str, mutate, expected_path: str) -> None:
    document = copy.deepcopy(json.loads(KIT_EXAMPLE.read_text()))
    mutate(document)
    problems = validate_document(document, "strict")
    assert problems, f"{label}: accepted"
    assert expected_path in [p.path for p in problems], [p.line("f") for p in problems]


def test_at_least_fifteen_distinct_mutations() -> None:
    assert len({m[2] for m in MUTATIONS}) >= 15


def test_cli_lines_are_file_path_what_fix(run_cli, tmp_path: Path) -> None:
    document = json.loads(KIT_EXAMPLE.read_text())
    document["val_bpb"] = "1.05993"
    bad = tmp_path / "submission.json"
    bad.write_text(json.dumps(document))
    code, out, _ = run_cli("validate", str(bad))
    lines = out.strip().splitlines()
    assert code == 1
    assert (
        lines[0]
        == f'{bad}: $.val_bpb: expected number, got string "1.05993" (write bits per byte as a positive JSON number)'
    )
    assert lines[-1].startswith("FAIL: 0 valid, 1 invalid")


def test_cli_best_match_first() -> None:
    document = json.loads(KIT_EXAMPLE.read_text())
    document["seed_results"]["42"]["val_bpb"] = "x"
    document.pop("hardware")
    first = validate_document(document, "strict")[0]
    assert first.path in {"$.hardware", "$.seed_results['42'].val_bpb"}


def test_cli_exit_codes(run_cli, tmp_path: Path) -> None:
    assert run_cli("validate", str(KIT_EXAMPLE))[0] == 0
    assert (
        run_cli("validate", "--profile", "lenient", str(FIXTURES / "submissions" / "historical_minimal.json"))[0] == 0
    )
    assert run_cli("validate", str(FIXTURES / "submissions" / "historical_minimal.json"))[0] == 1
    code, _out, err = run_cli("validate", str(KIT_EXAMPLE), str(FIXTURES / "submissions" / "truncated.json"))
    assert code == 2
    assert err.count("\n") == 1 and "truncated.json: not valid JSON at line" in err and "(fix the JSON syntax)" in err
    code, _, err = run_cli("validate", str(tmp_path / "absent.json"))
    assert code == 2 and "absent.json: cannot read" in err


def test_unknown_profile_is_a_usage_error(run_cli) -> None:
    # argparse reports the bad choice itself (on the process's stderr) and the CLI exits 2.
    assert run_cli("validate", "--profile", "loose", str(KIT_EXAMPLE))[0] == 2


def test_json_path_matches_jsonschema() -> None:
    validator = validator_for("strict")
    document = json.loads(KIT_EXAMPLE.read_text())
    document["seed_results"]["42"]["steps"] = "many"
    document["seeds"][1] = "x"
    for error in validator.iter_errors(document):
        assert json_path(error.absolute_path) == error.json_path


def test_schema_path_is_inside_the_repo() -> None:
    assert SCHEMA_PATH == REPO / "schemas" / "submission.schema.json"


# ---- bad input: numbers JSON cannot hold, invisible characters, files that cannot be read -------------


def _write_example(tmp_path: Path, edit) -> Path:
    """The kit's example as text, edited as text (so tokens Python's json would never write can go in)."""
    path = tmp_path / "submission.json"
    path.write_bytes(edit(KIT_EXAMPLE.read_text(encoding="utf-8")).encode("utf-8", "surrogatepass"))
    return path


def _replace_value(text: str, key: str, token: str) -> str:
    """Put `token` as the first value of `key` in the JSON text."""
    marker = f'"{key}": '
    start = text.index(marker) + len(marker)
    end = min(i for i in (text.find(",", start), text.find("\n", start), text.find("}", start)) if i >= 0)
    return text[:start] + token + text[end:]


@pytest.mark.parametrize("profile", ["strict", "lenient"])
@pytest.mark.parametrize("token", ["1e999", "-1e999", "Infinity", "-Infinity", "NaN"])
def test_non_finite_score_is_refused_naming_its_path(run_cli, tmp_path: Path, token: str, profile: str) -> None:
    path = _write_example(tmp_path, lambda text: _replace_value(text, "val_bpb", token))
    code, out, err = run_cli("validate", "--profile", profile, str(path))
    assert code == 1 and err == ""
    assert (
        out.splitlines()[0]
        == f"{path}: $.val_bpb: {token} is not a finite number (write the measured value as a number)"
    )
    assert len(out.splitlines()) == 2, out  # the one problem, then the summary: nothing else about $.val_bpb


def test_non_finite_per_seed_value_is_refused(run_cli, tmp_path: Path) -> None:
    def edit(text: str) -> str:
        seeds_at = text.index('"seed_results"')
        return text[:seeds_at] + _replace_value(text[seeds_at:], "val_loss", "NaN")

    code, out, _ = run_cli("validate", str(_write_example(tmp_path, edit)))
    first_seed = next(iter(json.loads(KIT_EXAMPLE.read_text())["seed_results"]))
    assert code == 1
    assert f"$.seed_results['{first_seed}'].val_loss: NaN is not a finite number" in out


def test_non_finite_in_a_built_document_is_named() -> None:
    document = json.loads(KIT_EXAMPLE.read_text())
    document["val_bpb_std"] = float("inf")
    document["seed_results"]["42"]["eval_time_s"] = float("nan")
    problems = validate_document(document)
    assert [(p.path, p.what) for p in problems[:2]] == [
        ("$.val_bpb_std", "Infinity is not a finite number"),
        ("$.seed_results['42'].eval_time_s", "NaN is not a finite number"),
    ]


# (label, JSON string literal as the file writes it, what the line must name)
REFUSED_TEXT = [
    ("NUL", '"Golf\\u0000Kit"', "U+0000, a control character, at character 5"),
    ("BEL", '"\\u0007GolfKit"', "U+0007, a control character, at character 1"),
    ("ESC", '"Golf\\u001b[31mKit"', "U+001B, a control character"),
    ("DEL-C1", '"Golf\\u0085Kit"', "U+0085, a control character"),
    ("right-to-left override", '"Golf\u202eKit"', "U+202E RIGHT-TO-LEFT OVERRIDE, a bidirectional control"),
    ("right-to-left isolate", '"Golf\\u2067Kit\\u2069"', "U+2067 RIGHT-TO-LEFT ISOLATE, a bidirectional control"),
    ("lone surrogate", '"Golf\\ud800Kit"', "U+D800, a lone surrogate, at character 5"),
    ("line separator", '"Golf\\u2028Kit"', "U+2028 LINE SEPARATOR, a line separator"),
    ("newline in a title", '"Golf\\nKit"', "U+000A, a control character"),
    ("several", '"\\u0000\\u0007\\u202e"', "U+0000, a control character, at character 1 and 2 more"),
]


@pytest.mark.parametrize(("label", "literal", "named"), REFUSED_TEXT, ids=[r[0] for r in REFUSED_TEXT])
@pytest.mark.parametrize("field", ["name", "author", "hardware"])
def test_refused_characters_in_free_text(
    run_cli, tmp_path: Path, field: str, label: str, literal: str, named: str
) -> None:
    path = _write_example(tmp_path, lambda text: _replace_value(text, field, literal))
    code, out, err = run_cli("validate", str(path))
    assert code == 1 and err == "", label
    first = out.splitlines()[0]
    assert first.startswith(f"{path}: $.{field}: the text holds {named}"), first
    assert first.isprintable(), "the error line itself must not carry the character"


def test_refused_character_in_a_key_is_named(run_cli, tmp_path: Path) -> None:
    path = _write_example(
        tmp_path, lambda text: text.replace('"hardware":', '"versions": {"tri\\u202eton": "3.5.1"}, "hardware":')
    )
    code, out, _ = run_cli("validate", str(path))
    assert code == 1
    assert f"{path}: $.versions['tri\\u202eton']: the key holds U+202E RIGHT-TO-LEFT OVERRIDE" in out


def test_a_document_that_is_only_bad_text_is_named_at_the_root() -> None:
    first = validate_document("\u202e")[0]
    assert (first.path, first.what) == (
        "$",
        "the text holds U+202E RIGHT-TO-LEFT OVERRIDE, a bidirectional control, at character 1",
    )


def test_lines_break_in_the_blurb_but_not_in_the_name() -> None:
    document = json.loads(KIT_EXAMPLE.read_text())
    document["blurb"] = "First line.\n\tSecond line, indented.\r\n"
    assert validate_document(document) == []
    document["name"] = "Two\tcolumns"
    assert [p.path for p in validate_document(document)] == ["$.name"]


def test_other_schema_messages_escape_invisible_characters() -> None:
    document = json.loads(KIT_EXAMPLE.read_text())
    document["track"] = "10min\u202e_16mb"
    lines = [p.line("f") for p in validate_document(document)]
    assert all(line.isprintable() for line in lines), lines


@pytest.mark.parametrize(
    ("label", "content", "named"),
    [
        ("not UTF-8 (a lone surrogate as raw bytes)", b'{"name": "\xed\xa0\x80"}', "not UTF-8 at byte 10"),
        ("nested too deeply", b"[" * 100_000 + b"]" * 100_000, "nested too deeply to read"),
        ("a 5,000-digit integer", b'{"seeds": [' + b"9" * 5000 + b"]}", "an integer has too many digits to read"),
    ],
)
def test_unreadable_files_are_one_line_exit_2(run_cli, tmp_path: Path, label: str, content: bytes, named: str) -> None:
    path = tmp_path / "submission.json"
    path.write_bytes(content)
    code, out, err = run_cli("validate", str(path))
    assert code == 2, label
    assert err.count("\n") == 1 and err.startswith(f"{path}: {named}") and "Traceback" not in err
    assert out.startswith("FAIL: 0 valid, 0 invalid, 1 unreadable")
    assert path.read_bytes() == content  # validate never writes
