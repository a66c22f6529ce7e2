"""ONNX export and INT8: the file computes what TensorFlow computes, stores the shared block once, runs
behind albert.answer / albert.classify / run_squad_v1 with --engine=onnx, and refuses bad input in one line.

The extra (onnx, onnxruntime) is optional: without it every test here skips, saying so. The INT8
agreement on a model fine-tuned on the real SQuAD sample costs minutes, so it is marked heavy.
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from conftest import REPO_ROOT, SQUAD_TINY_CONFIG, run_cli, shared_path, subset_file

pytest.importorskip("onnx", reason="the [onnx] extra is not installed (pip install 'albert[onnx]'): no ONNX tests")
pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed (pip install 'albert[onnx]'): "
                    "no ONNX tests")

from albert import answer, classify, export_onnx  # noqa: E402
from albert.core.errors import UserError  # noqa: E402
from albert.export import onnx as onnx_export  # noqa: E402
from albert.inference.onnx_engine import OnnxEngine  # noqa: E402
from albert.io import checkpoint  # noqa: E402
from albert.model.config import AlbertConfig  # noqa: E402
from albert.model.encoder import AlbertModel  # noqa: E402
from albert.tasks.classification.task import ClassifierTask, prediction_outputs  # noqa: E402
from albert.tasks.squad import runner as squad_runner  # noqa: E402
from albert.tasks.squad.task import SquadV1Task, SquadV2Task  # noqa: E402

# Two groups of two blocks over four layers: sharing is exercised both ways.
SMALL = dict(vocab_size=300, embedding_size=16, hidden_size=32, num_hidden_layers=4, num_hidden_groups=2,
             num_attention_heads=4, intermediate_size=64, inner_group_num=2, hidden_act="gelu",
             max_position_embeddings=64, type_vocab_size=2)
WINDOW = ["--max_seq_length=128", "--doc_stride=64", "--max_query_length=32"]


def _task(name, config, seed=1):
  """A built task (or encoder) with every weight, biases and LayerNorms included, drawn away from its initializer."""
  tf.random.set_seed(seed)
  task = {"squad_v1": lambda: SquadV1Task(config), "squad_v2": lambda: SquadV2Task(config, start_n_top=3, end_n_top=4),
          "classifier": lambda: ClassifierTask(config, 3), "regression": lambda: ClassifierTask(config, 1),
          "encoder": lambda: AlbertModel(config)}[name]()
  if hasattr(task, "build"):
    task.build()
  for variable in task.named_variables().values():
    variable.assign_add(tf.random.normal(variable.shape, stddev=0.05))
  return task


def _inputs(batch, length, seed):
  """int32 ids, a mask with padding in the first row, and two segments (the padding in segment 0)."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, SMALL["vocab_size"], (batch, length)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[0, length - 5:] = 0
  segments = np.zeros_like(ids)
  segments[:, 6:] = 1
  segments[0, length - 5:] = 0
  return {"input_ids": ids, "input_mask": mask, "segment_ids": segments}


def _tensorflow_outputs(name, task, inputs):
  if name.startswith("squad"):
    return task.answer_outputs(task.serving_features(*(tf.constant(inputs[key]) for key in onnx_export.INPUT_NAMES)))
  if name == "encoder":
    outputs = task(inputs["input_ids"], inputs["input_mask"], inputs["segment_ids"])
    return {"sequence_output": outputs.sequence_output, "pooled_output": outputs.pooled_output}
  logits = task.logits(inputs, training=False)
  return {"logits": logits, **prediction_outputs(logits, task.is_regression)}


@pytest.mark.parametrize("fused_attention", [False, True], ids=["standard_attention", "fused_attention"])
@pytest.mark.parametrize("name", ["squad_v1", "squad_v2", "classifier", "regression", "encoder"])
def test_float32_onnx_equals_tensorflow_for_any_batch_and_length(name, fused_attention):
  """Both graphs: standard operators (float32 files) and onnxruntime's fused Attention (what INT8 files quantize)."""
  config = AlbertConfig.from_dict(SMALL)
  task = _task(name, config)
  spec = onnx_export.spec_for(task)
  assert spec.task == {"regression": "classifier"}.get(name, name)
  model = onnx_export.build_model(config, onnx_export.task_weights(task), spec, fused_attention=fused_attention)
  attention_nodes = sum(node.op_type == "Attention" for node in model.graph.node)
  assert attention_nodes == (config.num_hidden_layers * config.inner_group_num if fused_attention else 0)
  engine = OnnxEngine(onnx_export.to_bytes(model), name="test model")
  assert engine.task == spec.task and engine.outputs == list(onnx_export.TASK_OUTPUTS[spec.task])
  for batch, length in ((1, 9), (3, 37), (2, 64)):
    inputs = _inputs(batch, length, seed=length)
    expected = {key: value.numpy() for key, value in _tensorflow_outputs(name, task, inputs).items()}
    got = engine(**inputs)
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
      assert got[key].shape == value.shape and got[key].dtype == value.dtype, key
      if value.dtype.kind == "f":
        masked = np.abs(value) > 1e20  # v2 positions that cannot hold an answer: -1e30 in both
        assert np.all(np.abs(got[key][masked]) > 1e20)
        np.testing.assert_allclose(got[key][~masked], value[~masked], atol=1e-4, rtol=0, err_msg=key)
      else:
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_the_file_holds_the_shared_block_once_and_int8_is_smaller(tmp_path):
  # Twelve layers share one block whose matmul weights outweigh the embeddings, as in the released models.
  config = AlbertConfig.from_dict(dict(SMALL, hidden_size=128, intermediate_size=512, num_hidden_layers=12,
                                       num_hidden_groups=1, inner_group_num=1))
  task = _task("squad_v1", config)
  arrays = onnx_export.task_weights(task)
  spec = onnx_export.spec_for(task)
  float32 = onnx_export.export(config, arrays, spec, str(tmp_path / "model.onnx"))
  int8 = onnx_export.export(config, arrays, spec, str(tmp_path / "model_int8.onnx"), quantize="int8")
  parameters = sum(array.size for name, array in arrays.items() if "/pooler/" not in name)  # squad heads skip it
  block = sum(array.size for name, array in arrays.items() if "/transformer/" in name)
  assert float32.parameters == parameters
  size = os.path.getsize(tmp_path / "model.onnx")
  assert size == float32.bytes
  # The file is the parameters in float32 plus a small graph; one copy of the block per layer would add 11 more.
  assert 4 * parameters < size < 4 * parameters * 1.02 + 30_000
  assert size < 4 * (parameters + 11 * block) / 5
  # INT8: the matmul weights (nearly all of the block) take one byte instead of four.
  assert int8.bytes < 0.4 * float32.bytes
  assert OnnxEngine(str(tmp_path / "model_int8.onnx")).quantization == "int8"
  # Every projection is int8: q/k/v inside each layer's QAttention, the other three and the embedding
  # projection as MatMulInteger; only the two products of activations per layer stay float32 (in QAttention).
  import onnx
  ops = [node.op_type for node in onnx.load(str(tmp_path / "model_int8.onnx")).graph.node]
  assert ops.count("QAttention") == 12 and ops.count("MatMulInteger") == 3 * 12 + 2 and "MatMul" not in ops
  print(f"parameters {parameters:,} ({4 * parameters / 1e6:.2f} MB float32); file {size / 1e6:.2f} MB, int8 "
        f"{int8.bytes / 1e6:.2f} MB; per-layer copies would be {4 * (parameters + 11 * block) / 1e6:.2f} MB")


def test_the_engine_keeps_residual_adds_and_layer_norms_apart(monkeypatch, tmp_path):
  """onnxruntime fuses an INT8 file's residual Add + LayerNormalization into SkipLayerNormalization, whose CPU
  kernel is slower than the pair; the engine's session turns that fusion off (and keeps the outputs)."""
  import onnx
  import onnxruntime as ort
  config = AlbertConfig.from_dict(SMALL)
  task = _task("squad_v1", config)
  path = str(tmp_path / "model_int8.onnx")
  onnx_export.export(config, onnx_export.task_weights(task), onnx_export.spec_for(task), path, quantize="int8")

  def optimized_ops(make_session, name):
    """The operators of the graph a session runs, from the optimized model it is told to write."""
    written = str(tmp_path / f"{name}.onnx")
    original = ort.SessionOptions

    def writing_options():
      options = original()
      options.optimized_model_filepath = written
      return options
    with monkeypatch.context() as patch:
      patch.setattr(ort, "SessionOptions", writing_options)
      session = make_session()
    return session, {node.op_type for node in onnx.load(written).graph.node}

  default, default_ops = optimized_ops(lambda: ort.InferenceSession(path, ort.SessionOptions(),
                                                                    providers=["CPUExecutionProvider"]), "default")
  engine, engine_ops = optimized_ops(lambda: OnnxEngine(path), "engine")
  assert "SkipLayerNormalization" in default_ops  # what the engine avoids does happen by default
  assert "SkipLayerNormalization" not in engine_ops and "LayerNormalization" in engine_ops
  inputs = _inputs(2, 20, seed=3)
  expected = default.run(["start_logits"], inputs)[0]
  np.testing.assert_allclose(engine(**inputs)["start_logits"], expected, atol=1e-2)


# ---- the commands ----

def _run(command, *args):
  """`command.run` with a fresh FlagValues parsed from `args` (what `python -m albert.<command>` does)."""
  fv = flags.FlagValues()
  command.define_flags(fv)
  fv(["prog", *map(str, args)])
  return command.run(fv)


class _Background:
  """`python -m <module> args` running while the test goes on; `wait()` checks it succeeded and returns stdout."""

  def __init__(self, module, *args):
    self.module = module
    self.out, self.err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
    self.process = subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=REPO_ROOT, env=env,
                                    stdout=self.out, stderr=self.err, text=True)

  def wait(self):
    try:
      self.process.wait(timeout=300)
    finally:
      if self.process.poll() is None:
        self.process.kill()
    self.err.seek(0)
    assert self.process.returncode == 0, f"{self.module} failed:\n{self.err.read()[-4000:]}"
    self.out.seek(0)
    return self.out.read()


def _records(path):
  return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def squad_run(tmp_path_factory):
  """A run directory holding a SQuAD v1 checkpoint (random weights of SQUAD_TINY_CONFIG) and its config."""
  run_dir = tmp_path_factory.mktemp("onnx_squad_run")
  task = _task("squad_v1", AlbertConfig.from_dict(SQUAD_TINY_CONFIG), seed=3)
  checkpoint.save_checkpoint(str(run_dir / "model.ckpt-7"), {n: v.numpy() for n, v in task.named_variables().items()})
  (run_dir / "albert_config.json").write_text(json.dumps(SQUAD_TINY_CONFIG))
  return run_dir


def _questions(path, count):
  with open(shared_path("squad", "dev-v1.1-sample.json"), encoding="utf-8") as f:
    data = json.load(f)["data"]
  questions = [{"id": qa["id"], "question": qa["question"], "context": paragraph["context"]}
               for article in data for paragraph in article["paragraphs"] for qa in paragraph["qas"]][:count]
  path.write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")
  return path


@pytest.mark.slow
def test_cli_export_then_answer_with_the_onnx_engine_gives_tensorflows_answers(squad_run, squad_assets, tmp_path):
  onnx_file = tmp_path / "squad.onnx"
  exported = run_cli("albert.export_onnx", f"--model_dir={squad_run}", f"--output={onnx_file}", timeout=300)
  assert "stored weights for" in exported.stdout and onnx_file.is_file()
  questions = _questions(tmp_path / "questions.jsonl", 6)
  common = [f"--spm_model_file={squad_assets['spm']}", *WINDOW, f"--input_file={questions}"]
  cli = _Background("albert.answer", "--engine=onnx", f"--onnx_model={onnx_file}", *common,
                    f"--output_file={tmp_path / 'onnx.jsonl'}")
  # Meanwhile here: TensorFlow, and the checkpoint exported in memory.
  _run(answer, f"--model_dir={squad_run}", *common, f"--output_file={tmp_path / 'tf.jsonl'}")
  _run(answer, f"--model_dir={squad_run}", "--engine=onnx", *common, f"--output_file={tmp_path / 'memory.jsonl'}")
  assert "answered 6 questions" in cli.wait()
  reference = _records(tmp_path / "tf.jsonl")
  for name in ("onnx.jsonl", "memory.jsonl"):
    records = _records(tmp_path / name)
    assert [r["answer"] for r in records] == [r["answer"] for r in reference]
    assert [(r["start"], r["end"]) for r in records] == [(r["start"], r["end"]) for r in reference]
    np.testing.assert_allclose([r["probability"] for r in records], [r["probability"] for r in reference], atol=1e-4)


def test_classify_runs_an_exported_classifier_with_its_labels(squad_assets, tmp_path):
  config = dict(SQUAD_TINY_CONFIG, max_position_embeddings=64)
  run_dir = tmp_path / "classifier_run"
  task = _task("classifier", AlbertConfig.from_dict(config))
  checkpoint.save_checkpoint(str(run_dir / "model.ckpt-3"), {n: v.numpy() for n, v in task.named_variables().items()})
  (run_dir / "albert_config.json").write_text(json.dumps(config))
  (run_dir / "labels.json").write_text(json.dumps({"labels": ["fact", "tale", "other"]}))
  onnx_file = tmp_path / "exported" / "classifier_int8.onnx"  # away from the run: the labels travel in the file
  _run(export_onnx, f"--init_checkpoint={run_dir}", f"--output={onnx_file}", "--quantize=int8")
  texts = tmp_path / "texts.jsonl"
  texts.write_text("".join(json.dumps({"id": str(i), "text_a": text}) + "\n" for i, text in enumerate(
      ["The river rises in the hills and reaches the sea at the old port.",
       "Once upon a time a miller had three sons and a cat.", "Short."])), encoding="utf-8")
  common = [f"--spm_model_file={squad_assets['spm']}", "--max_seq_length=48", f"--input_file={texts}"]
  _run(classify, f"--model_dir={run_dir}", *common, f"--output_file={tmp_path / 'tf.jsonl'}")
  _run(classify, "--engine=onnx", f"--onnx_model={onnx_file}", *common, f"--output_file={tmp_path / 'int8.jsonl'}")
  _run(classify, f"--model_dir={run_dir}", "--engine=onnx", *common, f"--output_file={tmp_path / 'float.jsonl'}")
  reference = _records(tmp_path / "tf.jsonl")
  for name, tolerance in (("float.jsonl", 1e-5), ("int8.jsonl", 0.05)):
    records = _records(tmp_path / name)
    assert [sorted(r["probabilities"]) for r in records] == [["fact", "other", "tale"]] * 3
    for record, expected in zip(records, reference):
      np.testing.assert_allclose([record["probabilities"][label] for label in ("fact", "tale", "other")],
                                 [expected["probabilities"][label] for label in ("fact", "tale", "other")],
                                 atol=tolerance, err_msg=name)


@pytest.mark.slow
def test_run_squad_predicts_with_the_onnx_engine_and_scores_as_usual(squad_run, squad_assets, tmp_path):
  predict_file = subset_file(shared_path("squad", "dev-v1.1-sample.json"), tmp_path / "predict.json", 20)
  common = [f"--albert_config_file={squad_run / 'albert_config.json'}", f"--spm_model_file={squad_assets['spm']}",
            f"--init_checkpoint={squad_run / 'model.ckpt-7'}", f"--predict_file={predict_file}", "--do_predict",
            *WINDOW]
  onnx_run = _Background("albert.run_squad_v1", *common, f"--output_dir={tmp_path / 'onnx'}", "--engine=onnx")
  fv = flags.FlagValues()  # meanwhile, TensorFlow in this process
  squad_runner.define_flags(1, fv)
  fv(["run_squad_v1", *common, f"--output_dir={tmp_path / 'tf'}"])
  squad_runner.run(1, fv)
  onnx_run.wait()
  tf_scores = json.loads((tmp_path / "tf" / "eval_results.json").read_text())
  onnx_scores = json.loads((tmp_path / "onnx" / "eval_results.json").read_text())
  assert onnx_scores["engine"] == "onnx" and onnx_scores["onnx_quantization"] == "none"
  assert onnx_scores["exact_match"] == tf_scores["exact_match"] and onnx_scores["f1"] == tf_scores["f1"]
  assert (json.loads((tmp_path / "onnx" / "predictions.json").read_text())
          == json.loads((tmp_path / "tf" / "predictions.json").read_text()))


# ---- one-line errors ----

def test_a_checkpoint_of_another_task_is_one_line(squad_run, tmp_path):
  with pytest.raises(UserError) as error:
    _run(export_onnx, f"--model_dir={squad_run}", "--task=classifier", f"--output={tmp_path / 'x.onnx'}")
  assert str(error.value) == (f"--task=classifier: checkpoint {squad_run / 'model.ckpt-7'} is a SQuAD v1 model "
                              "(albert.answer); export it with --task=squad_v1 or --task=encoder")
  assert not (tmp_path / "x.onnx").exists()


def test_an_onnx_model_of_another_task_is_one_line(squad_assets, tmp_path):
  config = AlbertConfig.from_dict(SMALL)
  path = str(tmp_path / "encoder.onnx")
  onnx_export.export(config, onnx_export.task_weights(_task("encoder", config)), onnx_export.OnnxSpec("encoder"), path)
  with pytest.raises(UserError) as error:
    _run(answer, "--engine=onnx", f"--onnx_model={path}", f"--spm_model_file={squad_assets['spm']}",
         "--question=Who?", "--context=Nobody knows.")
  assert str(error.value) == (f"ONNX model {path} is an encoder without a task head, not a SQuAD model fine-tuned "
                              "with run_squad_v1 or run_squad_v2")
  with pytest.raises(UserError) as error:
    _run(classify, f"--onnx_model={path}", f"--spm_model_file={squad_assets['spm']}", "--text_a=Hi.")
  assert str(error.value) == "--onnx_model needs --engine=onnx"


def test_an_unsupported_opset_is_one_line(squad_run, tmp_path):
  # absl rejects it while parsing; run_main prints the message as "error: <message>" (test_structure).
  with pytest.raises(flags.IllegalFlagValueError) as error:
    _run(export_onnx, f"--model_dir={squad_run}", f"--output={tmp_path / 'x.onnx'}", "--opset=13")
  assert str(error.value) == "flag --opset=13: must be in [17, 21]"
  with pytest.raises(UserError, match=r"^flag --opset=22: must be in \[17, 21\] \(LayerNormalization needs 17"):
    onnx_export.check_opset(22)


@pytest.mark.parametrize("module", ["onnx", "onnxruntime"])
def test_a_missing_extra_is_one_line(module, monkeypatch, squad_run, squad_assets, tmp_path):
  monkeypatch.setitem(sys.modules, module, None)  # `import onnx` now fails as if it were not installed
  with pytest.raises(UserError) as error:
    _run(export_onnx, f"--model_dir={squad_run}", f"--output={tmp_path / 'x.onnx'}")
  message = str(error.value)
  assert message.startswith("albert.export_onnx needs the optional [onnx] extra (onnx, onnxruntime): "
                            "pip install 'albert[onnx]' (") and "\n" not in message
  if module == "onnxruntime":
    with pytest.raises(UserError, match=r"^--engine=onnx needs the optional \[onnx\] extra"):
      _run(answer, f"--model_dir={squad_run}", "--engine=onnx", f"--spm_model_file={squad_assets['spm']}", *WINDOW,
           "--question=Who?", "--context=Nobody knows.")


# ---- INT8 on a fine-tuned model ----

@pytest.mark.heavy
def test_int8_agrees_with_float32_on_a_model_fine_tuned_on_the_real_sample(squad_assets, tmp_path):
  """Fine-tunes the tiny model on 200 real questions (like test_run_squad), then predicts them with TensorFlow,
  ONNX float32 and ONNX INT8 through run_squad_v1 --engine: INT8 gives float32's answer to >= 95% of them."""
  data = subset_file(shared_path("squad", "dev-v1.1-sample.json"), tmp_path / "subset.json", 200)
  model = [f"--albert_config_file={squad_assets['config']}", f"--spm_model_file={squad_assets['spm']}", *WINDOW]
  trained = tmp_path / "trained"
  run_cli("albert.run_squad_v1", *model, f"--output_dir={trained}", f"--train_file={data}", f"--predict_file={data}",
          "--do_train", "--do_predict", "--train_batch_size=16", "--num_train_epochs=30", "--learning_rate=1e-3",
          "--warmup_proportion=0.05", "--save_checkpoints_steps=1000", "--seed=1", timeout=1800)
  prefix = checkpoint.latest_checkpoint(str(trained))
  outputs = {}
  for name, extra in (("float32", []), ("int8", ["--onnx_quantize=int8"])):
    run_cli("albert.run_squad_v1", *model, f"--output_dir={tmp_path / name}", f"--init_checkpoint={prefix}",
            f"--predict_file={data}", "--do_predict", "--engine=onnx", *extra, timeout=600)
    outputs[name] = (json.loads((tmp_path / name / "predictions.json").read_text()),
                     json.loads((tmp_path / name / "eval_results.json").read_text()))
  tf_predictions = json.loads((trained / "predictions.json").read_text())
  tf_scores = json.loads((trained / "eval_results.json").read_text())
  (float_predictions, float_scores), (int8_predictions, int8_scores) = outputs["float32"], outputs["int8"]
  assert float_predictions == tf_predictions
  agreement = np.mean([int8_predictions[key] == float_predictions[key] for key in float_predictions])
  print(f"fine-tuned: TF EM/F1 {tf_scores['exact_match']:.2f}/{tf_scores['f1']:.2f}; ONNX float32 "
        f"{float_scores['exact_match']:.2f}/{float_scores['f1']:.2f}; INT8 {int8_scores['exact_match']:.2f}/"
        f"{int8_scores['f1']:.2f}; INT8 gives float32's answer to {100 * agreement:.1f}% of {len(float_predictions)}")
  assert float_scores["f1"] > 15.0  # learned: the untrained model scores F1 5-8 (test_run_squad)
  assert agreement >= 0.95
  assert abs(int8_scores["f1"] - float_scores["f1"]) < 3.0


def test_int8_projections_do_not_saturate(tmp_path):
  """Projections of normal activations by normal weights through `quantize_int8` stay within 3% of their
  largest output everywhere. With 8-bit weights, CPUs without VNNI (AVX2) saturate the 16-bit pair sums of
  VPMADDUBSW: two of these five were off by 20% and 31% of it there; 7-bit weights cannot saturate."""
  import onnx
  import onnxruntime as ort
  from onnx import TensorProto, helper, numpy_helper
  for seed in range(5):
    rng = np.random.default_rng(seed)
    weights = (rng.standard_normal((32, 32)) * 0.02).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "projection",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [48, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(weights, "w")])
    path = str(tmp_path / f"projection_{seed}.onnx")
    onnx_export.quantize_int8(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), path)
    assert "MatMulInteger" in {node.op_type for node in onnx.load(path).graph.node}
    x = rng.standard_normal((48, 32)).astype(np.float32)
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    expected = x.astype(np.float64) @ weights
    assert np.abs(got - expected).max() < 0.03 * np.abs(expected).max(), f"seed {seed}"
