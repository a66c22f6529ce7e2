"""The CPU's extensions (albert.core.cpu) and the one-line precision hint the runners print on a CPU, with
faked flag sets for the CPU kinds the rule tells apart, and once through the command line on this machine."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
import tensorflow as tf
from absl import flags as absl_flags

from albert.cli import flags
from albert.core import cpu, precision
from conftest import run_cli

# /proc/cpuinfo flags of the CPU kinds (abridged to what matters, plus some that do not).
AVX2_AMD = frozenset("fpu sse2 avx f16c fma avx2".split())  # AMD EPYC Zen 2/3
SAPPHIRE_RAPIDS = frozenset(("fpu avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 avx512_fp16 amx_tile amx_bf16 "
                             "amx_int8").split())
ZEN4 = frozenset("fpu avx2 fma avx512f avx512bw avx512_vnni avx512_bf16".split())
SKYLAKE_SERVER = frozenset("fpu avx2 fma avx512f avx512bw".split())
ARROW_LAKE = frozenset("fpu avx2 fma avx_vnni avx_ne_convert".split())  # float16 via oneDNN, no avx512


def test_cpuinfo_gives_the_model_and_the_first_processors_flags(tmp_path):
  info = tmp_path / "cpuinfo"
  info.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx2 amx_bf16\n\n"
                  "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n", encoding="utf-8")
  assert cpu._cpuinfo(str(info)) == ("Intel(R) Xeon(R) Platinum 8480+", frozenset({"fpu", "avx2", "amx_bf16"}))
  model, cpu_flags = cpu._cpuinfo(str(tmp_path / "missing"))
  assert model and cpu_flags == frozenset()


def test_isa_and_kind_of_each_cpu_kind():
  assert cpu.isa(AVX2_AMD) == ["avx2", "fma"]
  assert cpu.isa(SAPPHIRE_RAPIDS) == ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
                                      "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8"]
  kinds = {flag_set: cpu.kind(flag_set) for flag_set in (AVX2_AMD, SAPPHIRE_RAPIDS, ZEN4, SKYLAKE_SERVER)}
  assert list(kinds.values()) == ["AVX2", "AMX", "AVX-512 BF16", "AVX-512"]
  assert cpu.kind(frozenset()) == "unknown"


def test_float16_on_a_cpu_whose_float16_goes_to_onednn_warns_of_the_cliff():
  for flag_set, named in ((SAPPHIRE_RAPIDS, "avx512_fp16"), (ARROW_LAKE, "avx_ne_convert")):
    line = precision.cpu_hint("float16", flag_set)
    assert line.startswith(f"warning: --precision=float16 on a CPU with {named} ") and "many times slower" in line
  assert "use --precision=bfloat16 (native here: amx_bf16/avx512_bf16) or float32" in precision.cpu_hint(
      "float16", SAPPHIRE_RAPIDS)
  assert precision.cpu_hint("float16", ARROW_LAKE).endswith("use --precision=float32")


def test_float16_elsewhere_warns_that_it_is_emulated():
  for flag_set in (AVX2_AMD, SKYLAKE_SERVER, ZEN4):
    line = precision.cpu_hint("float16", flag_set)
    assert line.startswith("warning: --precision=float16: no native float16 on this CPU") and "emulated" in line
    assert "many times" not in line
  assert precision.cpu_hint("float16", AVX2_AMD).endswith("use --precision=float32")
  assert precision.cpu_hint("float16", ZEN4).endswith("use --precision=bfloat16 (native here: avx512_bf16) or float32")


def test_bfloat16_warns_only_without_native_bfloat16():
  for flag_set in (AVX2_AMD, SKYLAKE_SERVER, ARROW_LAKE):
    assert precision.cpu_hint("bfloat16", flag_set).startswith(
        "warning: --precision=bfloat16: no native bfloat16 on this CPU")
  for flag_set in (SAPPHIRE_RAPIDS, ZEN4):
    assert precision.cpu_hint("bfloat16", flag_set) is None


def test_float32_suggests_bfloat16_only_where_it_is_native():
  assert precision.cpu_hint("float32", SAPPHIRE_RAPIDS).startswith(
      "hint: this CPU computes bfloat16 natively (amx_bf16/avx512_bf16): --precision=bfloat16")
  assert "(avx512_bf16)" in precision.cpu_hint("float32", ZEN4)
  for flag_set in (AVX2_AMD, SKYLAKE_SERVER, ARROW_LAKE):
    assert precision.cpu_hint("float32", flag_set) is None


def test_unknown_flags_give_no_hint_and_every_hint_is_one_line():
  for name in precision.PRECISIONS:
    assert precision.cpu_hint(name, frozenset()) is None
    for flag_set in (AVX2_AMD, SAPPHIRE_RAPIDS, ZEN4, SKYLAKE_SERVER, ARROW_LAKE):
      assert "\n" not in (precision.cpu_hint(name, flag_set) or "")


@pytest.fixture
def avx2_cpu(monkeypatch):
  """This process sees an AVX2-only CPU, and has printed no hint yet."""
  monkeypatch.setattr(cpu, "flags", lambda: AVX2_AMD)
  monkeypatch.setattr(precision, "_printed", set())


def test_the_hint_is_printed_once_and_not_when_an_accelerator_computes(avx2_cpu, capsys):
  asked = []
  on_gpu = lambda: asked.append(True) or True  # noqa: E731
  precision.print_cpu_hint("float16", on_gpu)
  assert capsys.readouterr().err == "" and asked == [True]
  precision.print_cpu_hint("float32", on_gpu)  # nothing to say: the devices are not asked
  assert asked == [True]
  for _ in range(2):
    precision.print_cpu_hint("float16", lambda: False)
  assert capsys.readouterr().err == precision.cpu_hint("float16", AVX2_AMD) + "\n"


def test_the_precision_flag_prints_the_hint_when_parsed_unless_a_tpu_computes(avx2_cpu, capsys):
  def parse(*argv):
    fv = absl_flags.FlagValues()
    flags.define_tpu_flags(fv)
    flags.define_execution_flags(fv)
    flags.define_inference_flags(fv)  # --precision again: skipped, one hook
    fv(["prog", *argv])
    return fv

  parse("--precision=bfloat16", "--use_tpu")
  assert capsys.readouterr().err == ""
  parse("--precision=bfloat16")
  expected = "" if tf.config.list_physical_devices("GPU") else precision.cpu_hint("bfloat16", AVX2_AMD) + "\n"
  assert capsys.readouterr().err == expected
  unparsed = absl_flags.FlagValues()
  flags.define_inference_flags(unparsed)
  unparsed.precision = "float16"  # a program setting the value before any parsing: no start-up hint
  assert capsys.readouterr().err == ""


def test_float16_on_this_machine_prints_the_hint_once_at_start_up(tmp_path):
  expected = precision.cpu_hint("float16", cpu.flags())
  if expected is None or tf.config.list_physical_devices("GPU"):
    pytest.skip("no CPU hint for float16 here (flags unknown, or a GPU computes)")
  result = run_cli("albert.run_squad_v1", "--precision=float16", f"--output_dir={tmp_path}", "--do_predict",
                   check=False, timeout=300)
  assert result.returncode == 2  # no --albert_config_file: the run ends after the flags, as a user error
  lines = result.stderr.splitlines()
  assert lines.count(expected) == 1 and lines[-1].startswith("error:")
  assert sum("--precision" in line for line in lines) == 1
