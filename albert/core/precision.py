"""The compute precisions the suite offers (`--precision`), in one table, and the one-line hint a run on
a CPU prints about its choice.

Weights always stay float32; a precision is the dtype activations are computed in. The model, the
trainer, the inference tools and the flag definitions all read this table.
"""

import sys

from albert.core import cpu

PRECISIONS = ("float32", "bfloat16", "float16")


def compute_dtype(precision):
  """The TensorFlow dtype of `precision` (a name from PRECISIONS, or a dtype of one of them)."""
  import tensorflow as tf

  from albert.core.errors import UserError
  name = precision if isinstance(precision, str) else tf.as_dtype(precision).name
  if name not in PRECISIONS:
    raise UserError(f"--precision: compute dtype {name} is not one of {', '.join(PRECISIONS)}")
  return tf.as_dtype(name)


def cpu_hint(precision, cpu_flags):
  """The line to print when `precision` computes on a CPU with `cpu_flags` (no GPU or TPU), or None.

  The rule, from the CPU's extensions (albert.core.cpu) and measurements of the albert-base forward pass:
  - float16 where TensorFlow takes oneDNN's float16 kernels (avx512_fp16, amx_fp16, avx_ne_convert): a
    cliff, not finished after 5 minutes on an AMX Xeon with avx512_fp16 (float32: 2.3 s);
  - float16 elsewhere, and bfloat16 without avx512_bf16/amx_bf16: emulated, about 1.2x slower than
    float32 on an AVX2-only AMD EPYC;
  - float32 with avx512_bf16/amx_bf16: bfloat16 ran 1.75x as fast on an AMX Xeon, so say so.
  Unknown flags (not Linux on x86) give None.
  """
  if not cpu_flags:
    return None
  bfloat16 = cpu.present(cpu.NATIVE_BFLOAT16, cpu_flags)
  if precision == "float16":
    instead = (f"use --precision=bfloat16 (native here: {'/'.join(bfloat16)}) or float32" if bfloat16
               else "use --precision=float32")
    onednn = cpu.present(cpu.ONEDNN_FLOAT16, cpu_flags)
    if onednn:
      return (f"warning: --precision=float16 on a CPU with {'/'.join(onednn)} (TensorFlow takes oneDNN's float16 "
              "kernels there) measured many times slower than float32: an albert-base forward pass unfinished after "
              f"5 minutes on an AMX Xeon (float32: 2.3 s); {instead}")
    return ("warning: --precision=float16: no native float16 on this CPU (no avx512_fp16/amx_fp16), so it is "
            f"emulated, about 1.2x slower than float32 on an AVX2-only AMD EPYC; float16 pays only on GPUs: {instead}")
  if precision == "bfloat16" and not bfloat16:
    return ("warning: --precision=bfloat16: no native bfloat16 on this CPU (no avx512_bf16/amx_bf16), so it is "
            "emulated, about 1.2x slower than float32 on an AVX2-only AMD EPYC: use --precision=float32")
  if precision == "float32" and bfloat16:
    return (f"hint: this CPU computes bfloat16 natively ({'/'.join(bfloat16)}): --precision=bfloat16 (weights stay "
            "float32) ran an albert-base forward pass 1.75x as fast as float32 on an AMX Xeon")
  return None


_printed = set()


def print_cpu_hint(precision, on_accelerator):
  """Prints cpu_hint for this CPU to stderr, once per process, unless `on_accelerator()` (asked only when there
  is something to print) says the run computes on a GPU or TPU."""
  line = cpu_hint(precision, cpu.flags())
  if line and line not in _printed and not on_accelerator():
    _printed.add(line)
    print(line, file=sys.stderr, flush=True)
