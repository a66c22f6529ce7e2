"""export_to_tfhub's drop-in outputs (issue 23 part 4): the encoder's Model Garden outputs and the text
preprocessing SavedModel with the interface of albert_en_preprocess/3, used the TF-Hub tutorials' way in a
process where albert cannot be imported."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import run_cli
from test_export import write_model_directory

pytest.importorskip("tensorflow_text")
import tensorflow as tf  # noqa: E402

from albert.core.errors import UserError  # noqa: E402
from albert.export import preprocess  # noqa: E402
from albert.model.config import AlbertConfig  # noqa: E402
from albert.text.tokenizer import FullTokenizer  # noqa: E402

CONFIG = AlbertConfig(vocab_size=2000, embedding_size=16, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                      intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                      max_position_embeddings=128)


@pytest.fixture(scope="module")
def exports(tmp_path_factory, spm_model_file):
  """Both SavedModels, written by one command line run (cased, so casing is seen to reach the tokenizer)."""
  root = tmp_path_factory.mktemp("exports")
  directory = str(root / "albert")
  write_model_directory(directory, CONFIG, spm_model_file)
  encoder, preprocessor = str(root / "encoder"), str(root / "preprocess")
  result = run_cli("albert.export_to_tfhub", f"--albert_directory={directory}", f"--export_path={encoder}",
                   f"--export_preprocess_path={preprocessor}", "--nodo_lower_case")
  assert "text preprocessing model" in result.stdout
  return {"encoder": encoder, "preprocess": preprocessor, "tokenizer": FullTokenizer(spm_model_file=spm_model_file,
                                                                                     do_lower_case=False)}


def _ids(tokenizer, text):
  return tokenizer.convert_tokens_to_ids([token.piece for token in tokenizer.tokenize_with_offsets(text)])


@pytest.mark.slow
def test_encoder_returns_model_garden_outputs(exports):
  loaded = tf.saved_model.load(exports["encoder"])
  ids = np.array([[2, 50, 60, 70, 3, 0], [2, 80, 3, 90, 91, 3]], np.int32)
  inputs = {"input_word_ids": ids, "input_mask": (ids > 0).astype(np.int32),
            "input_type_ids": np.array([[0] * 6, [0, 0, 0, 1, 1, 1]], np.int32)}
  outputs = loaded(inputs, training=False)
  assert outputs["default"].dtype == tf.float32 and outputs["default"].shape == (2, CONFIG.hidden_size)
  np.testing.assert_array_equal(outputs["default"], outputs["pooled_output"])
  layers = outputs["encoder_outputs"]
  assert isinstance(layers, list) and len(layers) == CONFIG.num_hidden_layers
  assert all(layer.shape == (2, 6, CONFIG.hidden_size) and layer.dtype == tf.float32 for layer in layers)
  np.testing.assert_array_equal(layers[-1], outputs["sequence_output"])
  assert not np.allclose(layers[0], layers[1])
  serving = loaded.signatures["serving_default"](**{key: tf.constant(value) for key, value in inputs.items()})
  assert {"default", "pooled_output", "sequence_output"} <= set(serving)
  for i, layer in enumerate(layers):
    np.testing.assert_allclose(serving[f"encoder_outputs_{i}"], layer, atol=1e-6)
  np.testing.assert_allclose(serving["default"], outputs["pooled_output"], atol=1e-6)


@pytest.mark.slow
def test_preprocess_interface(exports):
  tokenizer = exports["tokenizer"]
  loaded = tf.saved_model.load(exports["preprocess"])
  texts = ["The Normans gave their name to Normandy.", "Éric  lives in Zürich, 1,000 km away", ""]
  expected = [_ids(tokenizer, text) for text in texts]
  assert expected[0] and expected[1]
  assert loaded.tokenize(tf.constant(texts)).to_list() == expected
  special = {key: int(value) for key, value in loaded.tokenize.get_special_tokens_dict().items()}
  assert special == {"vocab_size": 2000, "start_of_sequence_id": tokenizer.cls_id,
                     "end_of_segment_id": tokenizer.sep_id, "padding_id": 0, "mask_id": tokenizer.mask_id}
  cls, sep = tokenizer.cls_id, tokenizer.sep_id
  # The default call: one text, [CLS] text [SEP], length 128.
  packed = loaded(tf.constant(texts))
  assert all(packed[key].shape == (3, 128) and packed[key].dtype == tf.int32 for key in packed)
  for row, ids in enumerate(expected):
    full = [cls] + ids + [sep]
    assert packed["input_word_ids"][row].numpy().tolist() == full + [0] * (128 - len(full))
    assert packed["input_mask"][row].numpy().tolist() == [1] * len(full) + [0] * (128 - len(full))
  np.testing.assert_array_equal(packed["input_type_ids"], 0)
  # Two segments, trimmed round-robin: at length 9 there is room for 6 pieces, 3 from each.
  first, second = loaded.tokenize(tf.constant(texts[:2])), loaded.tokenize(tf.constant(texts[1:]))
  pair = loaded.bert_pack_inputs([first, second], seq_length=9)
  a, b = expected[0], expected[1]
  assert pair["input_word_ids"][0].numpy().tolist() == [cls] + a[:3] + [sep] + b[:3] + [sep]
  assert pair["input_type_ids"][0].numpy().tolist() == [0] * 5 + [1] * 4
  # The second pair's second segment is empty: the first takes all the room.
  assert pair["input_word_ids"][1].numpy().tolist() == [cls] + b[:6] + [sep, sep]
  assert pair["input_mask"][1].numpy().tolist() == [1] * 9
  single = loaded.bert_pack_inputs([first])
  assert single["input_word_ids"].shape == (2, 128)


def test_preprocess_export_needs_tensorflow_text(monkeypatch, tmp_path):
  monkeypatch.setattr(preprocess.in_graph, "available", lambda: False)
  with pytest.raises(UserError, match=r"--export_preprocess_path: needs tensorflow-text.*\[serving\]"):
    preprocess.export_preprocess_module(str(tmp_path), str(tmp_path / "out"), True)


TUTORIAL = """
import sys
sys.modules["albert"] = None  # the environment has no albert: importing it fails
try:
  import pkg_resources  # noqa: F401
except ImportError:  # setuptools >= 81 removed it; tensorflow_hub 0.16 only needs parse_version from it
  import types
  from packaging.version import parse
  sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)
import numpy as np
import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_text  # noqa: F401  (the tutorials import it: it registers the preprocessing ops)
import tf_keras as keras

preprocess_path, encoder_path = sys.argv[1:3]
texts = tf.constant(["the movie was great", "a terrible , boring film", "I loved it", "worst plot ever"])
labels = np.array([1, 0, 1, 0])
preprocess = hub.KerasLayer(preprocess_path)
encoder = hub.KerasLayer(encoder_path, trainable=True)
print("pooled", encoder(preprocess(texts))["pooled_output"].shape)

loaded = preprocess.resolved_object  # what hub.load(preprocess_path) returns
tokenize = hub.KerasLayer(loaded.tokenize)
pack = hub.KerasLayer(loaded.bert_pack_inputs, arguments=dict(seq_length=32))
packed = pack([tokenize(texts), tokenize(texts[::-1])])
print("packed", packed["input_word_ids"].shape, int(tf.reduce_max(packed["input_type_ids"])))

keras.utils.set_random_seed(0)
text_input = keras.layers.Input(shape=(), dtype=tf.string)
pooled = encoder(preprocess(text_input))["pooled_output"]
model = keras.Model(text_input, keras.layers.Dense(2)(pooled))
model.compile(optimizer=keras.optimizers.Adam(1e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
losses = model.fit(texts, labels, epochs=5, batch_size=4, verbose=0).history["loss"]
print("losses", " ".join(f"{loss:.4f}" for loss in losses))
"""


@pytest.mark.slow
def test_tutorial_pattern_without_albert(exports, tmp_path):
  pytest.importorskip("tf_keras")
  script = tmp_path / "tutorial.py"
  script.write_text(textwrap.dedent(TUTORIAL))
  env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  proc = subprocess.run([sys.executable, str(script), exports["preprocess"], exports["encoder"]], cwd=str(tmp_path),
                        env=env, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
  assert lines["pooled"] == f"(4, {CONFIG.hidden_size})"
  assert lines["packed"] == "(4, 32) 1"
  losses = [float(x) for x in lines["losses"].split()]
  assert all(later < earlier for earlier, later in zip(losses, losses[1:])) and losses[-1] < losses[0] - 0.05, losses
