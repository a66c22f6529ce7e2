"""Model Garden TF2 ALBERT: encoder SavedModels as --albert_hub_module_handle and object checkpoints as
--init_checkpoint, checked against fixtures in Model Garden's exact layout that compute their own outputs.

The fixtures are made here, by code independent of the package: the Keras variable names and [H, N, D]
attention layouts of the Model Garden table (docs/compatibility.md §16.1) written out by hand, and a
forward pass in that layout (einsum over heads, tanh GELU, post-LN blocks sharing one set of weights).
The genuine article (tf-models-official exporting a tiny AlbertEncoder) is checked by
scripts/compat_model_garden.sh in its own environment.
"""

import json
import logging

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_cli

from albert.cli import model_loader
from albert.core.errors import UserError
from albert.io import checkpoint
from albert.model import hub, model_garden, variables
from albert.model.config import AlbertConfig
from albert.model.encoder import AlbertModel
from albert.tokenization import FullTokenizer

CONFIG = AlbertConfig(vocab_size=2000, embedding_size=16, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=64)
LAYER_OUTPUT_PREFIX = "albert_encoder"  # the serving signature's generated output names


# ---- Model Garden's layout, written out by hand ----

def garden_weights(config, seed, mlm=True, bert=False):
  """{Keras variable name: value} of a Model Garden AlbertEncoder (+ its MLM head); `bert` gives a BertEncoder's
  per-layer names instead. Values are N(0, 0.3), LayerNorm gammas near 1, so texts get distinct outputs."""
  h, e, i, n = config.hidden_size, config.embedding_size, config.intermediate_size, config.num_attention_heads
  d = h // n
  shapes = {"word_embeddings/embeddings": [config.vocab_size, e],
            "position_embedding/embeddings": [config.max_position_embeddings, e],
            "type_embeddings/embeddings": [config.type_vocab_size, e],
            "embeddings/layer_norm/gamma": [e], "embeddings/layer_norm/beta": [e]}
  if e != h:
    shapes.update({"embedding_projection/kernel": [e, h], "embedding_projection/bias": [h]})
  blocks = [f"transformer/layer_{k}/" for k in range(config.num_hidden_layers)] if bert else ["transformer/"]
  for block in blocks:
    for part in ("query", "key", "value"):
      shapes[f"{block}self_attention/{part}/kernel"] = [h, n, d]
      shapes[f"{block}self_attention/{part}/bias"] = [n, d]
    shapes.update({f"{block}self_attention/attention_output/kernel": [n, d, h],
                   f"{block}self_attention/attention_output/bias": [h],
                   f"{block}self_attention_layer_norm/gamma": [h], f"{block}self_attention_layer_norm/beta": [h],
                   f"{block}intermediate/kernel": [h, i], f"{block}intermediate/bias": [i],
                   f"{block}output/kernel": [i, h], f"{block}output/bias": [h],
                   f"{block}output_layer_norm/gamma": [h], f"{block}output_layer_norm/beta": [h]})
  shapes.update({"pooler_transform/kernel": [h, h], "pooler_transform/bias": [h]})
  if mlm:
    shapes.update({"bert/cls/predictions/transform/dense/kernel": [h, e],
                   "bert/cls/predictions/transform/dense/bias": [e],
                   "bert/cls/predictions/transform/LayerNorm/gamma": [e],
                   "bert/cls/predictions/transform/LayerNorm/beta": [e],
                   "bert/cls/predictions/output_bias/bias": [config.vocab_size]})
  rng = np.random.RandomState(seed)
  weights = {}
  for name, shape in shapes.items():
    value = rng.normal(0.0, 0.3, shape).astype(np.float32)
    if name.endswith(("gamma", "beta")):
      value = value / 10 + (1.0 if name.endswith("gamma") else 0.0)
    weights[name] = value
  return weights


def _gelu(x):
  return 0.5 * x * (1.0 + tf.tanh(np.sqrt(2.0 / np.pi).astype(np.float32) * (x + 0.044715 * x ** 3)))


def _layer_norm(x, w, scope):
  mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
  return (x - mean) * tf.math.rsqrt(variance + 1e-12) * w[scope + "gamma"] + w[scope + "beta"]


def garden_forward(w, num_layers, ids, mask, types, block=lambda layer: "transformer/"):
  """Model Garden's encoder math on {Keras name: tensor}: sequence_output, pooled_output, encoder_outputs."""
  seq_length = tf.shape(ids)[1]
  x = (tf.gather(w["word_embeddings/embeddings"], ids) + w["position_embedding/embeddings"][None, :seq_length]
       + tf.gather(w["type_embeddings/embeddings"], types))
  x = _layer_norm(x, w, "embeddings/layer_norm/")
  if "embedding_projection/kernel" in w:
    x = tf.einsum("bsx,xy->bsy", x, w["embedding_projection/kernel"]) + w["embedding_projection/bias"]
  # [B, 1, T(query), S(key)]: a query attends to the real keys only.
  adder = (1.0 - tf.cast(mask, tf.float32))[:, None, None, :] * -10000.0
  outputs = []
  for layer in range(num_layers):
    p = block(layer)
    q, k, v = (tf.einsum("bsh,hnd->bsnd", x, w[f"{p}self_attention/{part}/kernel"])
               + w[f"{p}self_attention/{part}/bias"] for part in ("query", "key", "value"))
    head_size = w[f"{p}self_attention/query/kernel"].shape[-1]
    scores = tf.einsum("bsnd,btnd->bnts", k, q) / np.sqrt(head_size).astype(np.float32) + adder
    context = tf.einsum("bnts,bsnd->btnd", tf.nn.softmax(scores, axis=-1), v)
    attention = tf.einsum("btnd,ndh->bth", context, w[f"{p}self_attention/attention_output/kernel"])
    x = _layer_norm(x + attention + w[f"{p}self_attention/attention_output/bias"], w, f"{p}self_attention_layer_norm/")
    inner = _gelu(tf.einsum("bsh,hi->bsi", x, w[f"{p}intermediate/kernel"]) + w[f"{p}intermediate/bias"])
    x = _layer_norm(x + tf.einsum("bsi,ih->bsh", inner, w[f"{p}output/kernel"]) + w[f"{p}output/bias"], w,
                    f"{p}output_layer_norm/")
    outputs.append(x)
  pooled = tf.tanh(tf.matmul(x[:, 0], w["pooler_transform/kernel"]) + w["pooler_transform/bias"])
  return x, pooled, outputs


class GardenMLM(tf.Module):
  """The `.mlm` object: the encoder plus the masked-LM head, called with `masked_lm_positions` too."""
  variables = None  # plain attributes (tf.Module's properties of these names are not saved)
  trainable_variables = None

  def __init__(self, encoder, weights):
    super().__init__(name="mlm")
    self.encoder = encoder
    self._head = {name: tf.Variable(value, name=name) for name, value in weights.items()
                  if name.startswith("bert/cls/")}
    self.variables = list(encoder.variables) + list(self._head.values())
    self.trainable_variables = list(self.variables)

  @tf.function
  def __call__(self, inputs, training=False):
    outputs = self.encoder(inputs, training=training)
    w = {**self.encoder.weights, **self._head}
    p = "bert/cls/predictions/"
    x = tf.gather(outputs["sequence_output"], inputs["masked_lm_positions"], batch_dims=1)
    x = _gelu(tf.einsum("bph,he->bpe", x, w[p + "transform/dense/kernel"]) + w[p + "transform/dense/bias"])
    x = _layer_norm(x, w, p + "transform/LayerNorm/")
    logits = tf.einsum("bpe,ve->bpv", x, w["word_embeddings/embeddings"]) + w[p + "output_bias/bias"]
    return dict(outputs, mlm_logits=logits)


class GardenEncoder(tf.Module):
  """A module with Model Garden's interface: the call, its outputs, the variables' names, `sp_model_file`."""
  variables = None  # plain attributes, as hub.KerasLayer reads them (tf.Module's properties are not saved)
  trainable_variables = None
  regularization_losses = None

  def __init__(self, weights, num_layers, sp_model_file, mlm=False, bert=False, legacy=False):
    super().__init__(name="albert_encoder")
    self._legacy = legacy  # versions 1 and 2: [ids, mask, type ids] -> [pooled_output, sequence_output]
    self.weights = {name: tf.Variable(value, name=name) for name, value in weights.items()
                    if not name.startswith("bert/cls/")}
    self.variables = list(self.weights.values())
    self.trainable_variables = list(self.variables)
    self.regularization_losses = []
    self.sp_model_file = tf.saved_model.Asset(sp_model_file)
    self._num_layers = num_layers
    self._block = self._bert_block if bert else self._albert_block
    if mlm:
      self.mlm = GardenMLM(self, weights)

  @staticmethod
  def _albert_block(layer):
    return "transformer/"

  @staticmethod
  def _bert_block(layer):
    return f"transformer/layer_{layer}/"

  @tf.function
  def __call__(self, inputs, training=False):
    if self._legacy:
      sequence, pooled, _ = garden_forward(self.weights, self._num_layers, *inputs, self._block)
      return [pooled, sequence]
    sequence, pooled, layers = garden_forward(self.weights, self._num_layers, inputs["input_word_ids"],
                                              inputs["input_mask"], inputs["input_type_ids"], self._block)
    return {"sequence_output": sequence, "pooled_output": pooled, "default": pooled, "encoder_outputs": layers}

  def serving(self, inputs):
    """The outputs flattened under generated names, in the order of the sorted keys."""
    outputs = self(inputs)
    flat = [outputs["default"], *outputs["encoder_outputs"], outputs["pooled_output"], outputs["sequence_output"]]
    return {LAYER_OUTPUT_PREFIX + (f"_{k}" if k else ""): tensor for k, tensor in enumerate(flat)}


def _ids_spec():
  return {name: tf.TensorSpec([None, None], tf.int32, name=name)
          for name in ("input_word_ids", "input_mask", "input_type_ids")}


def write_garden_module(path, weights, num_layers, sp_model_file, mlm=False, bert=False, legacy=False):
  """Saves a `GardenEncoder` as a TF2 SavedModel at `path` (str)."""
  module = GardenEncoder(weights, num_layers, sp_model_file, mlm, bert, legacy)
  spec = _ids_spec()
  if legacy:
    module.__call__.get_concrete_function(list(spec.values()), training=False)
    tf.saved_model.save(module, path)
    return path
  for training in (False, True):
    module.__call__.get_concrete_function(spec, training=training)
  if mlm:
    mlm_spec = dict(spec, masked_lm_positions=tf.TensorSpec([None, None], tf.int32, name="masked_lm_positions"))
    module.mlm.__call__.get_concrete_function(mlm_spec, training=False)
  serving = tf.function(module.serving, input_signature=[spec])
  tf.saved_model.save(module, path, signatures={"serving_default": serving})
  return path


def write_garden_checkpoint(prefix, weights, pretrainer=False):
  """A TF2 object-based checkpoint laid out as Model Garden's converter writes one (`encoder/layer_with_weights-N/
  ...`); `pretrainer` also tracks the masked-LM head, whose table is the word embedding variable itself."""
  created = {name: tf.Variable(value, name=name) for name, value in weights.items()}
  encoder = tf.Module()
  layer_of = {"word_embeddings": 0, "position_embedding": 1, "type_embeddings": 2, "embeddings": 3,
              "embedding_projection": 4, "transformer": 5, "pooler_transform": 6}
  attributes = {"self_attention_layer_norm": "_attention_layer_norm", "intermediate": "_intermediate_dense",
                "output": "_output_dense", "output_layer_norm": "_output_layer_norm"}
  layers = {}
  for name, variable in created.items():
    if name.startswith("bert/cls/"):
      continue
    top, *path = name.split("/")
    layer = layers.setdefault(top, tf.Module())
    if top == "transformer" and path[0] == "self_attention":
      part = {"attention_output": "_output_dense"}.get(path[1], f"_{path[1]}_dense")
      path = ["_attention_layer", part, path[2]]
    elif top == "transformer":
      path = [attributes[path[0]], path[1]]
    elif top == "embeddings":
      path = path[1:]  # embeddings/layer_norm/gamma -> gamma
    parent = layer
    for step in path[:-1]:
      if not hasattr(parent, step):
        setattr(parent, step, tf.Module())
      parent = getattr(parent, step)
    setattr(parent, path[-1], variable)
  for top, layer in layers.items():
    setattr(encoder, f"layer_with_weights-{layer_of[top]}", layer)
  objects = {"encoder": encoder}
  if pretrainer:
    masked_lm = tf.Module()
    masked_lm.embedding_table = created["word_embeddings/embeddings"]
    p = "bert/cls/predictions/"
    masked_lm.dense = tf.Module()
    masked_lm.dense.kernel = created[p + "transform/dense/kernel"]
    masked_lm.dense.bias = created[p + "transform/dense/bias"]
    masked_lm.layer_norm = tf.Module()
    masked_lm.layer_norm.gamma = created[p + "transform/LayerNorm/gamma"]
    masked_lm.layer_norm.beta = created[p + "transform/LayerNorm/beta"]
    setattr(masked_lm, "output_bias/bias", created[p + "output_bias/bias"])
    objects["masked_lm"] = masked_lm
  return tf.train.Checkpoint(**objects).write(prefix)


def inputs(seq_length=12, vocab_size=2000):
  rng = np.random.default_rng(11)
  ids = rng.integers(5, vocab_size, size=(3, seq_length)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[0, 7:] = 0
  segments = np.zeros_like(ids)
  segments[:, 6:] = 1
  return ids, mask, segments


def artifact_outputs(module_path, ids, mask, segments):
  """The module's own outputs, through tf.saved_model.load as a user of the TF-Hub module calls it."""
  loaded = tf.saved_model.load(module_path)
  return loaded({"input_word_ids": ids, "input_mask": mask, "input_type_ids": segments}, training=False)


def max_difference(ours, theirs):
  return float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs))))


# ---- fixtures ----

@pytest.fixture(scope="module")
def garden(tmp_path_factory, spm_model_file):
  """{name: path}: the module with and without the MLM head, a BERT module and a preprocessing model."""
  root = tmp_path_factory.mktemp("model_garden")
  weights = garden_weights(CONFIG, seed=4)
  paths = {"weights": weights,
           "mlm": write_garden_module(str(root / "albert_en_tiny_mlm"), weights, 3, spm_model_file, mlm=True),
           "plain": write_garden_module(str(root / "albert_en_tiny"), weights, 3, spm_model_file)}
  return paths


# ---- the encoder SavedModel ----

def test_module_config_is_inferred_and_logged(garden, caplog):
  with caplog.at_level(logging.WARNING):
    config = hub.module_config(garden["plain"])
  assert config == CONFIG  # dropout and the rest: AlbertConfig's defaults (no released size is this small)
  assert [r.getMessage() for r in caplog.records if "Model Garden" in r.getMessage()] == [(
      f"Model Garden module {garden['plain']} has no assets/albert_config.json: inferred vocab_size 2000, "
      "embedding_size 16, hidden_size 32, intermediate_size 64, max_position_embeddings 64, type_vocab_size 2, "
      "num_hidden_groups 1, inner_group_num 1, num_attention_heads 4, num_hidden_layers 3 from its variable shapes, "
      "len(encoder_outputs) and the query kernel; no released size has this architecture, so the other values are "
      "AlbertConfig's defaults (dropout 0, gelu); pass --albert_config_file to override")]
  # A released architecture takes that size's values; a given config is checked against the module.
  tiny = {"albert_tiny": CONFIG.copy(vocab_size=30000, max_position_embeddings=512, hidden_dropout_prob=0.1)}
  assert model_garden.module_config(garden["plain"], presets=tiny) == CONFIG.copy(hidden_dropout_prob=0.1)
  assert hub.module_config(garden["plain"], CONFIG.copy(attention_probs_dropout_prob=0.2)) == CONFIG.copy(
      attention_probs_dropout_prob=0.2)
  with pytest.raises(UserError, match=r"does not match --albert_config_file \(module vs file\): "
                                      r"num_attention_heads 4 vs 8; num_hidden_layers 3 vs 2$"):
    hub.module_config(garden["plain"], CONFIG.copy(num_attention_heads=8, num_hidden_layers=2))


def test_versions_1_and_2_take_the_layer_count_from_the_released_size(garden, tmp_path, spm_model_file, caplog):
  path = write_garden_module(str(tmp_path / "albert_en_tiny_1"), garden["weights"], 3, spm_model_file, legacy=True)
  tiny = {"albert_tiny": CONFIG.copy(vocab_size=30000, max_position_embeddings=512)}
  with caplog.at_level(logging.WARNING):
    config = model_garden.module_config(path, presets=tiny)
  assert config == CONFIG
  assert "its call returns no encoder_outputs: using the albert_tiny preset (3 layers, 4 heads, dropout 0)" in \
      caplog.text
  ids, mask, segments = inputs()
  ours = hub.load_encoder(path, config)(ids, mask, segments)
  pooled, sequence = tf.saved_model.load(path)([ids, mask, segments])
  assert max(max_difference(ours.pooled_output, pooled), max_difference(ours.sequence_output, sequence)) < 1e-5
  with pytest.raises(UserError, match=r"its call returns no encoder_outputs, and its shapes "
                                      r"\(.*num_attention_heads 4\) match no known ALBERT size \(albert_base, "
                                      r"albert_large, albert_xlarge, albert_xxlarge\); pass --albert_config_file$"):
    hub.module_config(path)


@pytest.mark.parametrize("kind", ["plain", "mlm"])
def test_our_forward_pass_equals_the_modules_own_outputs(garden, kind):
  path = garden[kind]
  assert hub.module_format(path) == hub.MODEL_GARDEN
  _, model = hub.load_model(path)
  assert isinstance(model, AlbertModel)  # original names: fine-tuned checkpoints come out in the original layout
  ids, mask, segments = inputs()
  ours = model(ids, mask, segments)
  theirs = artifact_outputs(path, ids, mask, segments)
  assert max_difference(ours.sequence_output, theirs["sequence_output"]) < 1e-5
  assert max_difference(ours.pooled_output, theirs["pooled_output"]) < 1e-5
  assert max_difference(ours.pooled_output, theirs["default"]) < 1e-5
  assert len(ours.all_encoder_layers) == len(theirs["encoder_outputs"]) == 3
  for a, b in zip(ours.all_encoder_layers, theirs["encoder_outputs"]):
    assert max_difference(a, b) < 1e-5
  # The attention kernels were reshaped, not just renamed: [H, N, D] -> [H, N*D].
  query = model.named_variables()[variables.block_prefix(0, 0) + "/attention_1/self/query/kernel"]
  np.testing.assert_array_equal(query.numpy(),
                                garden["weights"]["transformer/self_attention/query/kernel"].reshape([32, 32]))


def test_tokenizer_comes_from_the_sp_model_file_asset(garden, spm_model_file):
  tokenizer = hub.create_tokenizer(garden["plain"])
  reference = FullTokenizer(spm_model_file=spm_model_file, do_lower_case=True)
  assert tokenizer.vocab == reference.vocab and tokenizer.do_lower_case
  text = "The Normans gave their name to Normandy."
  assert tokenizer.tokenize(text) == reference.tokenize(text)


def _encoder_flags(handle, *extra):
  from absl import flags
  fv = flags.FlagValues()
  model_loader.define_encoder_flags(flag_values=fv)
  fv(["test", f"--albert_hub_module_handle={handle}", "--spm_model_file=from_tf_hub", "--max_seq_length=32", *extra])
  return fv


def test_fill_mask_uses_the_mlm_head_when_the_module_has_one(garden):
  from albert.inference import masked_lm as fill_mask
  encoder = model_loader.load_encoder(_encoder_flags(garden["mlm"]), with_mlm_head=True)
  results = fill_mask.predict(encoder, [("a", "The river [MASK] north."), ("b", "Music and [MASK] games")], top_k=3,
                              batch_size=2)
  loaded = tf.saved_model.load(garden["mlm"])
  for result in results:
    ids = np.asarray([encoder.tokenizer.convert_tokens_to_ids(result["tokens"])], np.int32)
    positions = np.asarray([[m["token_index"] for m in result["masks"]]], np.int32)
    logits = loaded.mlm({"input_word_ids": ids, "input_mask": np.ones_like(ids), "input_type_ids": np.zeros_like(ids),
                         "masked_lm_positions": positions}, training=False)["mlm_logits"]
    expected = tf.nn.softmax(logits, axis=-1).numpy()[0, 0]
    predictions = result["masks"][0]["predictions"]
    assert [p["token_id"] for p in predictions] == np.argsort(-expected)[:3].tolist()
    assert max_difference([p["probability"] for p in predictions], np.sort(expected)[::-1][:3]) < 1e-6
  with pytest.raises(UserError, match=r"^--albert_hub_module_handle: .*albert_en_tiny has no masked-LM head \(Model "
                                      r"Garden modules have it when exported with_mlm=True\): it lacks "):
    model_loader.load_encoder(_encoder_flags(garden["plain"]), with_mlm_head=True)


def test_fill_mask_also_reads_a_tf1_modules_mlm_head(tmp_path, spm_model_file):
  """The original's TF1 modules carry cls/predictions too; they load by name like the Model Garden ones."""
  from conftest import write_tf1_hub_module

  from albert.model.pretraining import MaskedLMHead
  module_dir = tmp_path / "albert_tiny_3"
  source = write_tf1_hub_module(module_dir, CONFIG, spm_model_file, seed=5)
  encoder = model_loader.load_encoder(_encoder_flags(str(module_dir)), with_mlm_head=True)
  reference = MaskedLMHead(CONFIG, source.word_embeddings)
  checkpoint.load_variables(reference.named_variables(), str(module_dir / "variables" / "variables"))
  batch = [encoder.encode_text("the river [MASK] north")]
  ids, mask, segments = encoder._pad(batch)
  expected = tf.nn.softmax(reference(source(ids, mask, segments).sequence_output, [[3]]), axis=-1)
  assert max_difference(encoder.masked_lm_probabilities(batch, [[3]])[0], expected) < 1e-6


# ---- the runners and tools through the handle ----

TOPICS = {"0": "the sun was warm and the sky was clear over the quiet beach", "1": "the court heard the judge and the "
          "jury about the contract law case"}


def write_topic_tsv(path, count):
  rng = np.random.default_rng(0)
  rows = ["sentence\tlabel"]
  for k in range(count):
    label = str(k % 2)
    words = TOPICS[label].split()
    rows.append(" ".join(rng.choice(words, size=8)) + f"\t{label}")
  path.write_text("\n".join(rows) + "\n", encoding="utf-8")
  return str(path)


@pytest.mark.slow
def test_run_classifier_fine_tunes_from_the_handle_into_original_names(garden, tmp_path):
  out = tmp_path / "out"
  run_cli("albert.run_classifier", f"--albert_hub_module_handle={garden['plain']}", "--spm_model_file=from_tf_hub",
          "--task_name=custom", f"--train_file={write_topic_tsv(tmp_path / 'train.tsv', 16)}",
          "--text_a_column=sentence", "--label_column=label", f"--output_dir={out}", "--do_train", "--train_step=3",
          "--train_batch_size=4", "--max_seq_length=24", "--learning_rate=1e-3", "--save_checkpoints_steps=3",
          timeout=300)
  latest = checkpoint.latest_checkpoint(str(out))
  names = checkpoint.list_variables(latest)
  assert all(names.get(name) == shape for name, shape in variables.encoder_shapes(CONFIG).items())
  assert "output_weights" in names and not any(name.startswith("transformer/") for name in names)
  # The encoder was trained: its checkpoint differs from the module's weights, in the original layout.
  reader = tf.train.load_checkpoint(latest)
  query = reader.get_tensor(variables.block_prefix(0, 0) + "/attention_1/self/query/kernel")
  assert query.shape == (32, 32)
  assert 0 < max_difference(query, garden["weights"]["transformer/self_attention/query/kernel"].reshape([32, 32])) < 0.1


@pytest.mark.slow
def test_extract_features_and_retrieve_take_the_handle_without_a_config(garden, tmp_path):
  import concurrent.futures
  texts = tmp_path / "texts.txt"
  texts.write_text("The river flows north.\nMusic and football.\n", encoding="utf-8")
  documents = tmp_path / "docs.jsonl"
  documents.write_text("".join(json.dumps({"id": f"d{k}", "text": text}) + "\n" for k, text in enumerate(
      ["The river flows north to the sea.", "Football and music on a sunny day.", "The court and the judge."])))
  hub_flags = [f"--albert_hub_module_handle={garden['plain']}", "--spm_model_file=from_tf_hub", "--max_seq_length=32"]
  commands = [("albert.extract_features", *hub_flags, f"--input_file={texts}", f"--output_dir={tmp_path / 'features'}"),
              ("albert.retrieve", "--mode=index", f"--documents={documents}", f"--index_dir={tmp_path / 'index'}",
               "--pooling=pooled", *hub_flags)]
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    list(pool.map(lambda command: run_cli(*command, timeout=300), commands))
  tokenizer = hub.create_tokenizer(garden["plain"])

  def module_pooled(tokens):
    ids = np.asarray([tokenizer.convert_tokens_to_ids(tokens)], np.int32)
    return artifact_outputs(garden["plain"], ids, np.ones_like(ids), np.zeros_like(ids))["pooled_output"][0].numpy()

  records = [json.loads(line) for line in (tmp_path / "features" / "examples.jsonl").read_text().splitlines()]
  pooled = np.load(tmp_path / "features" / "pooled.npy")
  assert max_difference(pooled, [module_pooled(record["tokens"]) for record in records]) < 1e-5
  from albert.inference import retrieval
  index = retrieval.Index(str(tmp_path / "index"))
  assert index.info["model"]["albert_hub_module_handle"] == garden["plain"]
  texts = [json.loads(line)["text"] for line in documents.read_text().splitlines()]
  expected = [module_pooled(["[CLS]", *(t.piece for t in tokenizer.tokenize_with_offsets(text)), "[SEP]"])
              for text in texts]
  expected = [vector / np.linalg.norm(vector) for vector in expected]
  assert max_difference(index.embeddings, expected) < 1e-5


# ---- TF2 object checkpoints as --init_checkpoint ----

@pytest.mark.parametrize("pretrainer", [False, True])
def test_object_checkpoint_loads_by_its_object_graph_names(garden, tmp_path, pretrainer):
  prefix = write_garden_checkpoint(str(tmp_path / "tf2" / "bert_model.ckpt"), garden["weights"], pretrainer)
  stored = [name for name, _ in tf.train.list_variables(prefix)]
  assert "encoder/layer_with_weights-5/_attention_layer/_query_dense/kernel/.ATTRIBUTES/VARIABLE_VALUE" in stored
  model = AlbertModel(CONFIG)
  from albert.model.pretraining import MaskedLMHead
  head = MaskedLMHead(CONFIG, model.word_embeddings)
  named = {**model.named_variables(), **(head.named_variables() if pretrainer else {})}
  report = checkpoint.load_variables(named, prefix)
  assert not report.missing and not report.mismatched
  assert not report.unexpected, report.unexpected
  ids, mask, segments = inputs()
  ours, theirs = model(ids, mask, segments), artifact_outputs(garden["plain"], ids, mask, segments)
  assert max_difference(ours.sequence_output, theirs["sequence_output"]) < 1e-5
  assert max_difference(ours.pooled_output, theirs["pooled_output"]) < 1e-5
  if pretrainer:
    np.testing.assert_array_equal(named["cls/predictions/output_bias"].numpy(),
                                  garden["weights"]["bert/cls/predictions/output_bias/bias"])


def test_init_checkpoint_flag_takes_an_object_checkpoint_beside_a_config(garden, tmp_path, spm_model_file):
  prefix = write_garden_checkpoint(str(tmp_path / "tf2" / "ckpt-1"), garden["weights"])
  config_file = tmp_path / "albert_config.json"
  CONFIG.to_json_file(str(config_file))
  from absl import flags
  fv = flags.FlagValues()
  model_loader.define_encoder_flags(flag_values=fv)
  fv(["test", f"--albert_config_file={config_file}", f"--init_checkpoint={tmp_path / 'tf2'}",
      f"--spm_model_file={spm_model_file}", "--max_seq_length=32"])
  encoder = model_loader.load_encoder(fv)
  assert encoder.source["init_checkpoint"] == prefix
  batch = [encoder.encode_text("The river flows north."), encoder.encode_text("Music and football")]
  ids, mask, segments = encoder._pad(batch)
  theirs = artifact_outputs(garden["plain"], ids, mask, segments)
  assert max_difference(encoder.run(batch).pooled, theirs["pooled_output"]) < 1e-5


# ---- what users pass by mistake: one line each ----

class Preprocessor(tf.Module):
  """A text preprocessing model's interface (albert_en_preprocess): strings in, encoder inputs out."""

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def tokenize(self, texts):
    return tf.strings.to_hash_bucket_fast(tf.strings.split(texts), 1000)

  @tf.function(input_signature=[tf.RaggedTensorSpec([None, None], tf.int64)])
  def bert_pack_inputs(self, tokens):
    ids = tf.cast(tokens.to_tensor(shape=[None, 16]), tf.int32)
    return {"input_word_ids": ids, "input_mask": tf.cast(ids > 0, tf.int32), "input_type_ids": tf.zeros_like(ids)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def __call__(self, texts):
    return self.bert_pack_inputs(self.tokenize(texts))


def test_bad_modules_and_checkpoints_are_one_line_errors(garden, tmp_path, spm_model_file):
  bert_config = CONFIG.copy(embedding_size=32)
  bert_weights = garden_weights(bert_config, seed=1, mlm=False, bert=True)
  bert = write_garden_module(str(tmp_path / "bert_en_uncased"), bert_weights, 3, spm_model_file, bert=True)
  with pytest.raises(UserError, match=r"^--albert_hub_module_handle: .*bert_en_uncased is a Model Garden BERT encoder "
                                      r"\(one transformer/layer_N block per layer\), not ALBERT; use an albert_en_\* "
                                      r"module$"):
    hub.module_config(bert)
  preprocess = str(tmp_path / "albert_en_preprocess")
  tf.saved_model.save(Preprocessor(), preprocess)
  with pytest.raises(UserError, match=r"^--albert_hub_module_handle: .*albert_en_preprocess is a text preprocessing "
                                      r"model \(tokenize, bert_pack_inputs\), not an encoder; pass the encoder module "
                                      r"\(e\.g\. albert_en_base\) here$"):
    hub.module_config(preprocess)
  other = tf.Module()
  other.kernel = tf.Variable(tf.zeros([2, 2]), name="dense/kernel")
  tf.saved_model.save(other, str(tmp_path / "other"))
  with pytest.raises(UserError, match=r"other has no assets/albert_config.json and is no Model Garden ALBERT encoder "
                                      r"\(its variables: dense/kernel\); is it an ALBERT module\?$"):
    hub.module_config(str(tmp_path / "other"))

  prefix = write_garden_checkpoint(str(tmp_path / "bert_ckpt" / "ckpt"), garden["weights"])
  reader = tf.train.load_checkpoint(prefix)
  per_layer = lambda name: name.replace("transformer/", "transformer/layer_0/")
  renamed = {per_layer(name): tf.Variable(reader.get_tensor(key), name=per_layer(name))
             for name, key in model_garden.object_graph_names(reader).items()}
  bert_prefix = tf.train.Checkpoint(encoder=tf.Module(), **{f"v{k}": v for k, v in enumerate(renamed.values())}).write(
      str(tmp_path / "bert_ckpt" / "bert"))
  with pytest.raises(UserError, match=r"^checkpoint .*bert holds a Model Garden BERT encoder"):
    checkpoint.load_variables(AlbertModel(CONFIG).named_variables(), bert_prefix)

  # Through a command: the last line of stderr is the message, exit status 2.
  (tmp_path / "texts.txt").write_text("a text\n", encoding="utf-8")
  result = run_cli("albert.extract_features", f"--albert_hub_module_handle={preprocess}",
                   "--spm_model_file=from_tf_hub", f"--input_file={tmp_path / 'texts.txt'}",
                   f"--output_dir={tmp_path / 'features'}", check=False, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      f"error: --albert_hub_module_handle: {preprocess} is a text preprocessing model (tokenize, bert_pack_inputs), "
      "not an encoder; pass the encoder module (e.g. albert_en_base) here")
