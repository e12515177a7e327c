"""golfkit bundle: concatenation rules on a small fake package, loud errors, byte stability, and
the real record/ as a one-file program that runs alone and measures its own code bytes."""

from __future__ import annotations

import ast
import hashlib
import io
import random
import subprocess
import sys
from pathlib import Path

import pytest

from golfkit.cli import run as cli_run
from golfkit.errors import GolfkitError
from golfkit.pr.bundle import RECORD_DIR, build_program
from record.shipform import escape_payload, estimate_code_size, positional_only, wrap_self_extracting
from record.sizes import code_size_of_file, unwrap_self_extracting

MODULES = {
    "__init__.py": 'BUNDLE_ORDER: tuple[str, ...] = ("alpha", "beta")\n',
    "alpha.py": (
        '"""Alpha."""\n\nfrom __future__ import annotations\n\nVALUE = 20\n\n\ndef main() -> int:\n    return 0\n'
    ),
    "beta.py": (
        '"""Beta."""\n\nfrom __future__ import annotations\n\nimport math\n\nfrom record.alpha import (\n'
        '    VALUE,\n    main,\n)\n\n\ndef doubled() -> int:\n    """Twice VALUE."""\n'
        "    return int(math.fsum([VALUE, VALUE]))\n"
    ),
}


def fake_record(tmp_path: Path, **changes: str | None) -> Path:
    root = tmp_path / "record"
    root.mkdir()
    for name, text in {**MODULES, **changes}.items():
        if text is not None:
            (root / name).write_text(text)
    return root


def test_plain_bundle_drops_record_imports_and_hoists_future(tmp_path):
    program, sizes = build_program(fake_record(tmp_path), wrap="plain")
    text = program.decode()
    assert "from record" not in text and text.count("from __future__ import annotations") == 1
    assert text.index("# ---- record/alpha.py ----") < text.index("# ---- record/beta.py ----")
    assert text.splitlines()[1] == "from __future__ import annotations"
    namespace: dict = {"__name__": "bundled"}
    exec(compile(text, "train_gpt.py", "exec"), namespace)
    assert namespace["doubled"]() == 40
    assert sizes == {"plain": len(program)}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"beta.py": None}, r"names 'beta' but record/beta.py does not exist"),
        ({"gamma.py": "X = 1\n"}, r"record/gamma.py: is not in BUNDLE_ORDER"),
        ({"beta.py": "VALUE = 3\n"}, r"redefines 'VALUE' of record/alpha.py"),
        ({"beta.py": "from .alpha import VALUE\n"}, r"relative import"),
        ({"beta.py": "def f():\n    from record.alpha import VALUE\n    return VALUE\n"}, r"inside a block"),
        ({"alpha.py": "from record.beta import doubled\n"}, r"not bundled before it"),
    ],
)
def test_bundle_errors_are_loud(tmp_path, changes, message):
    with pytest.raises(GolfkitError, match=message):
        build_program(fake_record(tmp_path, **changes))


def test_missing_module_can_be_left_out_only_with_a_warning(tmp_path):
    err = io.StringIO()
    text, _ = build_program(fake_record(tmp_path, **{"beta.py": None}), wrap="plain", allow_missing=True, err=err)
    assert "WARNING: record/beta.py is missing" in err.getvalue() and b"record/beta.py ----" not in text


def test_real_record_bundles_byte_stable_and_picks_the_smallest_form(tmp_path):
    allow = not (RECORD_DIR / "train.py").exists()
    first, sizes = build_program(wrap="auto", allow_missing=allow)
    second, _ = build_program(wrap="auto", allow_missing=allow)
    assert first == second
    assert len(first) == min(sizes.values()) and sizes["plain"] > 3 * len(first)
    inner = unwrap_self_extracting(first)
    assert inner is not None and "\ndef main(" in inner
    target = tmp_path / "train_gpt.py"
    target.write_bytes(first)
    assert code_size_of_file(target).compressed == target.stat().st_size
    assert code_size_of_file(target).uncompressed == len(inner.encode())


def _awkward_payloads() -> list[bytes]:
    """Byte strings that stress the latin-1 literal: quote runs at either end, backslashes, NUL before
    an octal digit, CR/LF, and random bytes of many lengths."""
    rng = random.Random(16)
    edge = [b"", b'"', b'""', b'"""', b'""""', b"\\", b'\\"', b'"\\', b"\0", b"\x007", b"\0\0", b"\r", b"\r\n", b"\n"]
    mixed = [bytes(rng.choice(b'"\\\0\r\n07a\xff') for _ in range(rng.randrange(1, 40))) for _ in range(2000)]
    noise = [rng.randbytes(n) for n in [*range(1, 300), 4096, 65_536]]
    return edge + mixed + noise


def test_payload_literal_round_trips_byte_exact(tmp_path):
    """Each payload, escaped into a triple-quoted string of a latin-1 file, reads back byte for byte:
    through the file parser (`python file.py`), compile() of the bytes (runpy) and the size reader."""
    payloads = _awkward_payloads()
    literals = b",".join(b'"""' + escape_payload(p) + b'"""' for p in payloads)
    program = b"#coding:latin-1\nimport hashlib\nX=[" + literals + b"]\n"
    program += b"print(hashlib.sha256(b''.join(x.encode('latin-1') + b'|' for x in X)).hexdigest())\n"
    (tmp_path / "p.py").write_bytes(program)
    done = subprocess.run([sys.executable, "p.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == hashlib.sha256(b"".join(p + b"|" for p in payloads)).hexdigest()
    namespace: dict = {}
    exec(compile(program, "p.py", "exec"), namespace)
    assert [x.encode("latin-1") for x in namespace["X"]] == payloads
    assert all(escape_payload(p).decode("unicode_escape").encode("latin-1") == p for p in payloads)


@pytest.mark.parametrize("codec", ["brotli", "lzma"])
@pytest.mark.parametrize("encoding", ["base85", "latin1"])
def test_self_extracting_program_runs_and_unwraps(tmp_path, codec, encoding):
    odd = '\\ """ \r \x00 \u00e9'
    source = f"import sys\nprint('ok', len(sys.argv), ascii({odd!r}))\n"
    (tmp_path / "w.py").write_bytes(wrap_self_extracting(source, codec, encoding))
    done = subprocess.run([sys.executable, "w.py", "x"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == f"ok 2 {odd!a}\n", done.stderr[-2000:]
    assert unwrap_self_extracting((tmp_path / "w.py").read_bytes()) == source
    assert unwrap_self_extracting(source.encode()) is None


REFERENCE_CODE_BYTES = 31_999  # PR #1934's logged `Code size (compressed)`


@pytest.fixture(scope="module")
def shipped() -> tuple[bytes, str]:
    """(the train_gpt.py `golfkit bundle` writes for today's record/, the source it carries)."""
    text, _ = build_program(wrap="auto", allow_missing=not (RECORD_DIR / "train.py").exists())
    return text, unwrap_self_extracting(text)


def test_counted_code_bytes_fit_the_reference_budget(shipped):
    """Issue 16: the file `golfkit bundle` ships (latin-1 payload by default) counts no more code bytes
    than the reference's 31,999, and carries the whole program."""
    assert len(shipped[0]) <= REFERENCE_CODE_BYTES
    assert "\ndef main(" in shipped[1]


def test_base85_payload_stays_available_and_unwraps():
    """The pure-ASCII form (25% over the compressed bytes) for anyone who needs a UTF-8 file."""
    program, _ = build_program(wrap="brotli", payload="base85", allow_missing=not (RECORD_DIR / "train.py").exists())
    assert program.isascii() and len(program) > REFERENCE_CODE_BYTES
    assert "\ndef main(" in unwrap_self_extracting(program)


def test_minified_bundle_compiles_and_defines_main(shipped):
    tree = ast.parse(shipped[1])
    compile(tree, "train_gpt.py", "exec")
    assert any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)
    assert "\n# ---- record/" not in shipped[1]  # banners gone
    scopes = [n for n in ast.walk(tree) if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef)]
    assert len(scopes) > 100 and not [n for n in scopes if ast.get_docstring(n) is not None]  # docstrings too


def _annotations_read_at_run_time(source: str) -> list[str]:
    """Signatures of functions under a decorator that reads annotations, and class-level annotations
    (dataclass fields), in source order: the names around them may be renamed, these may not."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and any(
            "custom_op" in ast.unparse(d) or "jit" in ast.unparse(d) for d in node.decorator_list
        ):
            found.append(ast.unparse(node.args) + " -> " + ast.unparse(node.returns or ast.Constant(None)))
        elif isinstance(node, ast.ClassDef):
            found += [
                f"{ast.unparse(s.target)}: {ast.unparse(s.annotation)}"
                for s in node.body
                if isinstance(s, ast.AnnAssign)
            ]
    return found


def test_minifying_keeps_the_annotations_custom_op_triton_and_dataclasses_read(shipped):
    plain, _ = build_program(wrap="plain", allow_missing=not (RECORD_DIR / "train.py").exists())
    expected = _annotations_read_at_run_time(plain.decode())
    assert any("constexpr" in sig for sig in expected) and any(sig.startswith("seed: int") for sig in expected)
    assert _annotations_read_at_run_time(shipped[1]) == expected


def test_only_parameters_no_call_can_name_become_positional_only():
    source = (
        "def plain(a, b=1):\n    return a\n"
        "def named(a, b, c):\n    return a\n"
        "def callback(a):\n    return a\n"
        "def splatted(a):\n    return a\n"
        "def main(a):\n    return a\n"
        "class Box:\n    def __init__(self, size):\n        self.size = size\n"
        "    def forward(self, x):\n        return x\n"
        "plain(1, b=2); named(1, b=2, c=3); run(callback); splatted(**{'a': 1}); Box(size=2)\n"
    )
    signatures = {
        f.name: (len(f.args.posonlyargs), len(f.args.args))
        for f in ast.walk(ast.parse(positional_only(source)))
        if isinstance(f, ast.FunctionDef)
    }
    assert signatures == {
        "plain": (1, 1),  # b is passed by keyword
        "named": (1, 2),  # after b, c must stay nameable too
        "callback": (0, 1),  # handed to other code, which may name its parameters
        "splatted": (0, 1),
        "main": (0, 1),  # OUTSIDE_NAMES
        "__init__": (1, 1),  # Box(size=...) names size
        "forward": (0, 2),  # torch calls it (FRAMEWORK_CALLED)
    }


def test_package_run_estimates_the_bundle_within_a_few_bytes(shipped):
    estimate = estimate_code_size(RECORD_DIR)
    assert estimate.note == "" and abs(estimate.compressed - len(shipped[0])) <= 64


def test_bundled_program_imports_alone_and_measures_itself(tmp_path):
    """Copied alone into an empty folder: defines the program without the record package."""
    allow = not (RECORD_DIR / "train.py").exists()
    text, _ = build_program(wrap="auto", allow_missing=allow)
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / "train_gpt.py").write_bytes(text)
    probe = (
        "import runpy, sys; g = runpy.run_path('train_gpt.py', run_name='probe');"
        "assert 'record' not in sys.modules, 'bundle imported the package';"
        "print(g['code_size_of_running_program']().compressed)"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip()) == (folder / "train_gpt.py").stat().st_size


def test_cli_writes_the_file(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    code = cli_run(["bundle", "--out", str(tmp_path / "t.py"), "--record-dir", str(fake_record(tmp_path))], out, err)
    assert code == 0 and (tmp_path / "t.py").is_file() and "wrote" in out.getvalue()


@pytest.mark.slow
@pytest.mark.skipif(not (RECORD_DIR / "train.py").exists(), reason="record/train.py (the trainer) is not written yet")
def test_bundled_program_trains_alone_and_logs_its_own_byte_count(tmp_path):
    """End to end on CPU: the bundle alone in a folder trains the demo model, exports and evaluates;
    the code bytes it logs are its own file size and the total adds up."""
    import os
    import re

    from golfkit.runs import presets
    from golfkit.runs.demo import prepare_demo_data

    data = prepare_demo_data(tmp_path / "data", io.StringIO())
    text, _ = build_program()
    folder = tmp_path / "submission"
    folder.mkdir()
    program = folder / "train_gpt.py"
    program.write_bytes(text)
    env = {**os.environ, **presets.DEMO_SETTINGS, "DATA_DIR": str(data.data_dir), "TOKENIZER_PATH": str(data.tokenizer)}
    env |= {"ITERATIONS": "10", "MAX_WALLCLOCK_SECONDS": "30", "COMPRESSOR": "lzma"}
    done = subprocess.run(
        [sys.executable, "train_gpt.py"], cwd=folder, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    code = int(re.search(r"^Code size \(compressed\): (\d+) bytes$", done.stdout, re.M).group(1))
    model = int(re.search(r"^Serialized model quantized\+lzma: (\d+) bytes$", done.stdout, re.M).group(1))
    total = int(re.search(r"^Total submission size quantized\+lzma: (\d+) bytes$", done.stdout, re.M).group(1))
    assert code == program.stat().st_size
    assert total == code + model
