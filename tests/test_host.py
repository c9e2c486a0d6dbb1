"""Every bench result and every training session names its host: this project's CPU machines
differ 2.5x in speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from atari_dqn.artifacts import SESSION_FIELDS, RunDir
from atari_dqn.cli import main
from atari_dqn.host import cpu_flags_and_model, host_info, host_line, session_record

ZEN5 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni

processor\t: 1
cpu family\t: 26
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx2
"""
ZEN3 = "cpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx2 fma\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


def test_flags_and_model_are_the_first_processors() -> None:
    flags, model = cpu_flags_and_model(ZEN5)
    assert "avx512_bf16" in flags and model == "AMD EPYC (family 26, model 2)"
    assert cpu_flags_and_model(ZEN3) == (
        {"fpu", "avx2", "fma"},
        "AMD EPYC 7B13 (family 25, model 1)",
    )
    assert cpu_flags_and_model(GRAVITON3) == ({"fp", "asimd", "sve", "bf16", "i8mm"}, "")
    assert cpu_flags_and_model("") == (set(), "")


@pytest.mark.parametrize(("text", "bf16"), [(ZEN5, True), (ZEN3, False), (GRAVITON3, True)])
def test_host_info_says_whether_bf16_is_in_hardware(tmp_path: Path, text: str, bf16: bool) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    host = host_info(str(path))
    assert host["bf16_native"] is bf16
    assert host["torch"] == torch.__version__ and host["cores"] >= 1
    assert ("bf16 in hardware: yes" if bf16 else "bf16 in hardware: no") in host_line(host)


def test_unreadable_cpuinfo_is_unknown_not_no(tmp_path: Path) -> None:
    host = host_info(str(tmp_path / "missing"))
    assert host["bf16_native"] is None and host["cpu"]
    assert "bf16 in hardware: unknown" in host_line(host)


@pytest.mark.slow
def test_json_and_table_both_end_with_the_host(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "memory", "--steps", "700", "--buffer-size", "300"]
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["host"]) == {"cpu", "cores", "bf16_native", "torch", "torch_cpu_isa"}
    assert main(argv) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == host_line(result["host"])


def test_sessions_csv_keeps_a_line_per_start_and_force_removes_it(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "run", force=False)
    assert run.sessions() == []
    run.append_session(session_record(0, torch.device("cpu")))
    run.append_session({**session_record(1200, torch.device("cpu")), "cpu": 'Odd, CPU "X"'})
    first, second = run.sessions()
    assert list(first) == list(SESSION_FIELDS)
    assert (first["step"], second["step"]) == ("0", "1200")
    assert second["cpu"] == 'Odd, CPU "X"'  # a comma or a quote in a CPU name stays one field
    assert first["bf16_native"] == str(host_info()["bf16_native"])
    assert RunDir.holds_run(run.path)  # a started run counts, even before its config is there
    RunDir.create(run.path, force=True)
    assert not run.sessions_path.exists()
