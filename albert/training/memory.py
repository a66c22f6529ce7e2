"""What one training step needs in memory, counted from the config: `fixed + per_example x micro-batch`.

The runners print this estimate at start-up, and docs/scaling.md's table of what fits where is computed
from it. The two parts are counted, then scaled by factors fitted on `benchmarks/memory.py`'s
measurements (peak resident memory of a fresh process on CPU, benchmarks/results/memory.json):

- fixed: the runtime, the float32 weights with their gradients and two optimizer slots (AdamW and LAMB
  both keep two), and the gradient copies the backward pass holds of a weight shared by several layers
  before it adds them up: one per layer in a plain step (the tape builds early partial sums, but in a
  compiled step they ran late: xlarge and xxlarge peaked above what they would leave, so counting every
  copy errs high, 1.2-1.3x at batch 1, where counting five erred low, 1.5x at xlarge); with `--recompute_grad`,
  the running sum and one layer's gradients;
- per example: what the backward pass keeps of each transformer layer, per token the block input,
  attention and feed-forward activations (`8 H + 4 I` values) and per head the attention probabilities
  (`S` values), plus the embeddings; with `--recompute_grad`, only each layer's input is kept and one
  layer is recomputed at a time.
"""

from __future__ import annotations

import dataclasses

from albert.model import variables as variable_table

MB = 1024 ** 2
GB = 1024 ** 3

# The runtime's own resident memory before any model (TensorFlow on CPU, measured by benchmarks/memory.py).
RUNTIME_BYTES = 575 * MB
# Measured bytes over counted bytes per example (benchmarks/results/memory.json, length 384): plain 1.18
# for both base and large; recompute 0.85 (base) and 0.96 (large). The fixed part is left as counted; with
# --recompute_grad it came out 0.84-1.06x the measured fits from base to xxlarge.
PER_EXAMPLE_FACTOR = {"plain": 1.18, "recompute": 0.9}
FIXED_FACTOR = 1.0
_SLOTS = 2


@dataclasses.dataclass(frozen=True)
class StepMemory:
  """Bytes of one training step: `total(batch) = fixed + per_example x batch`."""
  fixed: float
  per_example: float

  def total(self, micro_batch: int) -> float:
    return self.fixed + self.per_example * micro_batch

  def largest_micro_batch(self, budget_bytes: float) -> int:
    """The largest micro-batch whose step fits `budget_bytes` (0 if not even one example fits)."""
    return max(int((budget_bytes - self.fixed) // self.per_example), 0)


def _layer_values(config, seq_length: int) -> int:
  """Values the backward pass keeps of one transformer layer for one example."""
  h, i, heads = config.hidden_size, config.intermediate_size, config.num_attention_heads
  kept = seq_length * (8 * h + 4 * i) + heads * seq_length * seq_length
  if config.hidden_dropout_prob > 0:
    kept += seq_length * 2 * h  # the two dropout masks of the block's outputs
  if config.attention_probs_dropout_prob > 0:
    kept += heads * seq_length * seq_length  # the kept attention probabilities after dropout
  return kept


def _embedding_values(config, seq_length: int) -> int:
  """Values kept by the embeddings, their projection and a span or classification head, per example."""
  return seq_length * (4 * config.embedding_size + 4 * config.hidden_size)


def per_example_bytes(config, seq_length: int, recompute: bool = False, dtype_bytes: int = 4) -> float:
  """Activation bytes of one example in a training step."""
  layers = config.num_hidden_layers
  layer = _layer_values(config, seq_length)
  if recompute:
    values = layers * seq_length * config.hidden_size + 2 * layer  # inputs kept; one layer and its gradients
  else:
    values = layers * layer
  values += _embedding_values(config, seq_length)
  return values * dtype_bytes * PER_EXAMPLE_FACTOR["recompute" if recompute else "plain"]


def fixed_bytes(config, head_values: int = 0, dtype_bytes: int = 4, recompute: bool = False) -> float:
  """Batch-independent bytes: runtime, weights, their gradients and optimizer slots, shared-weight copies.

  With `recompute`, a shared block's gradients are summed as each layer produces them
  (`albert.model.recompute`): the running sum and one layer's gradients are alive, not one copy per layer.
  """
  encoder = variable_table.encoder_shapes(config)
  params = sum(_count(shape) for shape in encoder.values()) + head_values
  uses = max(config.num_hidden_layers // max(config.num_hidden_groups, 1), 1)
  held = min(uses, 2) if recompute else uses  # gradient copies alive at once of each shared block tensor
  block_bytes = sum(_count(shape) for shape in variable_table.block_shapes(config).values()) * dtype_bytes
  copies = block_bytes * held * config.num_hidden_groups
  return RUNTIME_BYTES + (params * dtype_bytes * (2 + _SLOTS) + copies) * FIXED_FACTOR


def step_memory(config, seq_length: int, recompute: bool = False) -> StepMemory:
  """The memory model of one training step of `config` at `seq_length` (float32 weights, AdamW/LAMB)."""
  return StepMemory(fixed_bytes(config, recompute=recompute), per_example_bytes(config, seq_length, recompute))


def describe(config, seq_length: int, micro_batch: int, accumulation_steps: int = 1,
             recompute: bool = False) -> str:
  """One line for the start of a run: the estimated peak and what would lower it."""
  memory = step_memory(config, seq_length, recompute)
  line = (f"estimated peak memory of a training step: {memory.total(micro_batch) / GB:.1f} GB "
          f"(micro-batch {micro_batch} x {seq_length} tokens"
          f"{f', {accumulation_steps} accumulated' if accumulation_steps > 1 else ''}"
          f"{', recomputed layers' if recompute else ''}: "
          f"{memory.fixed / GB:.1f} GB fixed + {memory.per_example / MB:.0f} MB per example)")
  saved = (memory.per_example - per_example_bytes(config, seq_length, recompute=True)) * micro_batch
  if not recompute and saved >= 0.1 * GB:
    line += f"; --recompute_grad would save {saved / GB:.1f} GB"
  return line


def _count(shape) -> int:
  total = 1
  for dim in shape:
    total *= dim
  return total
