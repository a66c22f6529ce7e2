"""benchmarks/onnx_inference.py's INT8 ceiling: the matrix products it times are exactly the forward pass's,
int8 where our INT8 file has them int8, and the goals' summary derives the ceiling from the medians."""

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the [onnx] extra (onnx, onnxruntime) is not installed")

from benchmarks import onnx_inference  # noqa: E402
from benchmarks.harness import forward_flops  # noqa: E402
from benchmarks.run_all import model_config  # noqa: E402


def test_the_timed_products_are_the_forward_passes_multiply_adds():
  config = model_config("tiny")  # embedding 16 != hidden 32: the embedding projection is counted too
  batch, length = 2, 24
  macs = 0
  for name, model, feeds, times in onnx_inference._matmul_models(config, batch, length):
    if name == "attention_products":
      scores = np.prod(feeds["query"].shape) * feeds["key_t"].shape[-1]
      contexts = np.prod(feeds["probs"].shape) * feeds["value"].shape[-1]
      macs += times * (scores + contexts)
    else:
      macs += times * np.prod(feeds["x"].shape) * model.graph.initializer[0].dims[1]
  # forward_flops counts 2 x multiply-adds, with the pooler, which a SQuAD head does not use.
  assert 2 * macs == forward_flops(config, batch, length) - 2 * batch * config.hidden_size ** 2


def test_the_int8_products_are_int8_where_our_file_has_them_and_agree_with_float32():
  import onnx
  import onnxruntime as ort
  config = model_config("tiny").to_dict()
  found = {precision: onnx_inference.matmul_models(config, 2, 24, precision) for precision in ("int8", "float32")}
  names = [name for name, *_ in found["int8"]]
  assert names == ["qkv", "attention_output", "ffn", "ffn_output", "embedding_projection", "attention_products"]
  for (name, int8, feeds, _), (_, float32, _, _) in zip(found["int8"], found["float32"]):
    ops = {node.op_type for node in onnx.load_model_from_string(int8).graph.node}
    products = name == "attention_products"  # of two activations: float32 in our INT8 file too
    assert ("MatMul" in ops) == products and ("MatMulInteger" in ops) != products
    got, expected = (ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
                     for model in (int8, float32))
    for a, b in zip(got, expected):
      assert a.shape == b.shape
      np.testing.assert_allclose(a, b, atol=0.03 * np.abs(b).max())  # per-tensor 8-bit: about 1% of the range
  assert onnx_inference.matmul_contender(config, 2, 24, 1, "int8")() is None  # nothing to compare with logits


def test_the_ceiling_is_tensorflow_over_the_int8_products():
  def timing(seconds):
    return {"median_seconds": seconds, "examples_per_sec": 8 / seconds, "examples_per_cpu_sec": 4 / seconds}
  contenders = {"ours_tensorflow_float32": timing(4.0), "ours_onnx_int8": timing(2.5),
                "transformers_onnx_int8": timing(3.0), "matmuls_only_int8": timing(2.0),
                "matmuls_only_float32": timing(3.6)}
  goals = onnx_inference.goals({"shapes": {"batch_8_length_384": {"contenders": contenders}}})
  assert goals["int8_vs_tensorflow_float32"]["ratio"] == 1.6 and not goals["int8_vs_tensorflow_float32"]["met"]
  assert goals["int8_ceiling"] == {"most_int8_vs_tensorflow_float32": 2.0, "matmuls_int8_vs_float32": 1.8,
                                   "share_of_int8_forward_in_its_matmuls": 0.8,
                                   "share_of_tensorflow_float32_in_float32_matmuls": 0.9}
  del contenders["matmuls_only_int8"]  # a run without the ceiling's contenders (another shape, or one failed)
  assert "int8_ceiling" not in onnx_inference.goals({"shapes": {"batch_8_length_384": {"contenders": contenders}}})
