"""The CPU's model and the instruction-set extensions that decide which compute precision is fast on it.

TensorFlow's oneDNN kernels run bfloat16 matrix products natively only with avx512_bf16 or amx_bf16;
without them bfloat16 is emulated. For float16 TensorFlow takes oneDNN's own kernels on CPUs with
avx512_fp16, amx_fp16 or avx_ne_convert (its `IsDataTypeSupportedByOneDNNOnThisCPU`) and Eigen's
emulation elsewhere. The flags come from /proc/cpuinfo, read once per process; where it has none
(not Linux, or an ARM CPU, whose extensions it lists under other names) they are unknown: empty.
"""

import functools
import platform

# The extensions benchmarks record and the precision hints read, in a fixed order.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_ne_convert",
             "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")
NATIVE_BFLOAT16 = ("amx_bf16", "avx512_bf16")
ONEDNN_FLOAT16 = ("amx_fp16", "avx512_fp16", "avx_ne_convert")


@functools.lru_cache(maxsize=None)
def _cpuinfo(path="/proc/cpuinfo"):
  """(model name, frozenset of flags) of the first processor listed; (platform.processor(), {}) without one."""
  model, cpu_flags = None, frozenset()
  try:
    with open(path, encoding="utf-8", errors="replace") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model is None:
          model = value.strip()
        elif key.strip() == "flags" and not cpu_flags:
          cpu_flags = frozenset(value.split())
        if model is not None and cpu_flags:
          break
  except OSError:
    pass
  return model or platform.processor() or "unknown", cpu_flags


def model():
  """The CPU's model name, e.g. "AMD EPYC 7B13"."""
  return _cpuinfo()[0]


def flags():
  """All flags /proc/cpuinfo lists for the CPU (a frozenset; empty when unknown)."""
  return _cpuinfo()[1]


def present(names, cpu_flags=None):
  """Those of `names` the CPU has (`cpu_flags`: this CPU's unless given), in the order of `names`."""
  cpu_flags = flags() if cpu_flags is None else cpu_flags
  return [name for name in names if name in cpu_flags]


def isa(cpu_flags=None):
  """The extensions of ISA_FLAGS the CPU has."""
  return present(ISA_FLAGS, cpu_flags)


def kind(cpu_flags=None):
  """The CPU kind that decides the precision to pick: "AMX", "AVX-512 BF16", "AVX-512", "AVX2" or "unknown"."""
  cpu_flags = flags() if cpu_flags is None else cpu_flags
  for name, label in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX-512 BF16"), ("avx512f", "AVX-512"), ("avx2", "AVX2")):
    if name in cpu_flags:
      return label
  return "unknown"
