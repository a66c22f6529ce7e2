r"""The genuine article: tf-models-official and keras-hub make tiny ALBERT artifacts; albert must reproduce them.

Run by scripts/compat_model_garden.sh inside a virtual environment that has tensorflow 2.21, tf-keras,
tensorflow-text, keras-hub and tf-models-official (installed without its pins), with this repository on
PYTHONPATH. It
1. writes a tiny original-layout ALBERT (our SentencePiece trainer on the quickstart corpus, random weights);
2. converts it with Model Garden's own converter into TF2 object checkpoints (encoder, pretrainer) and
   exports both through Model Garden's export_tfhub_lib (without and with the MLM head), plus a
   preprocessing model and a BERT encoder for the bad-input rows;
3. saves a tiny keras-hub AlbertBackbone preset (2 groups x 2 blocks) with its tokenizer, and a BertBackbone;
4. checks our forward pass against each artifact's own outputs (hub.KerasLayer, keras-hub predict) on the
   same ids, keras-hub loading what `albert.convert --to=keras_hub` writes, run_classifier fine-tuning from
   each form, and the one-line errors; then prints the table (artifact x check -> max abs diff or error).

    python scripts/compat_model_garden.py --work_dir=DIR
Exit status 1 when a check fails.
"""

import argparse
import os
import re
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(REPO, "albert", "data", "quickstart", "corpus.txt")
TOLERANCE = 1e-5
ROWS = []
FAILURES = []


def record(artifact, check, value, ok=None):
  """One table row; a float is a max abs difference (ok when <= TOLERANCE), a string a result or error."""
  if isinstance(value, float):
    ok = value <= TOLERANCE if ok is None else ok
    shown = f"{value:.2e}"
  else:
    shown = str(value)
  ROWS.append((artifact, check, shown, "ok" if ok else "FAIL"))
  if not ok:
    FAILURES.append(f"{artifact} / {check}: {shown}")
  print(f"[{'ok' if ok else 'FAIL'}] {artifact} / {check}: {shown}", flush=True)


def diff(a, b):
  return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def run(module, *args):
  """`python -m module args` with this repository on PYTHONPATH; returns the CompletedProcess."""
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  return subprocess.run([sys.executable, "-m", module, *map(str, args)], env=env, capture_output=True, text=True,
                        timeout=900, check=False)


def last_line(proc):
  lines = proc.stderr.strip().splitlines()
  return lines[-1] if lines else f"(exit {proc.returncode}, no message)"


def sample_inputs(vocab_size, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(5, vocab_size, size=(3, 16)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[0, 10:] = 0
  segments = np.zeros_like(ids)
  segments[:, 8:] = 1
  return ids, mask, segments


# ---- 1. the tiny original ALBERT ----

def make_original(work):
  from albert.io import checkpoint
  from albert.model.config import AlbertConfig
  from albert.model.pretraining import AlbertPretrainingModel
  directory = os.path.join(work, "original")
  os.makedirs(directory, exist_ok=True)
  proc = run("albert.train_spm", f"--input={CORPUS}", f"--model_prefix={os.path.join(directory, '30k-clean')}",
             "--vocab_size=1000", "--num_threads=2")
  if proc.returncode:
    raise SystemExit(f"train_spm failed: {last_line(proc)}")
  config = AlbertConfig(vocab_size=1000, embedding_size=16, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
  config.to_json_file(os.path.join(directory, "albert_config.json"))
  rng = np.random.default_rng(1)
  values = {}
  for name, variable in AlbertPretrainingModel(config).named_variables().items():
    value = rng.normal(0.0, 0.3, variable.shape).astype(np.float32)
    if "LayerNorm" in name:
      value = value / 10 + (1.0 if name.endswith("gamma") else 0.0)
    values[name] = value
  checkpoint.save_checkpoint(os.path.join(directory, "model.ckpt-best"), {**values, "global_step": np.int64(0)})
  return directory, config


# ---- 2. Model Garden's artifacts ----

def make_model_garden(work, original, config):
  from official.legacy.albert import configs as albert_configs
  from official.legacy.bert import configs as bert_configs
  from official.nlp.configs import encoders
  from official.nlp.tools import export_tfhub_lib
  from official.nlp.tools import tf2_albert_encoder_checkpoint_converter as converter
  garden_config = albert_configs.AlbertConfig.from_json_file(os.path.join(original, "albert_config.json"))
  paths = {}
  # The converter's default --checkpoint_model_name=encoder nests a pretrainer under encoder/encoder_network/ (which
  # export_tfhub_lib cannot restore); "pretrainer" gives the top-level encoder/ and masked_lm/ it restores.
  for kind, model_name in (("encoder", "encoder"), ("pretrainer", "pretrainer"), ("pretrainer_default", "encoder")):
    out = os.path.join(work, f"mg_checkpoint_{kind}")
    os.makedirs(os.path.join(out, "temp_v1"), exist_ok=True)  # the converter needs it
    converter.convert_checkpoint(garden_config, os.path.join(out, "bert_model.ckpt"),
                                 os.path.join(original, "model.ckpt-best"), model_name,
                                 converted_model=kind.split("_")[0])
    paths[f"checkpoint_{kind}"] = tf.train.latest_checkpoint(out)
  encoder_config = encoders.EncoderConfig(type="albert", albert=encoders.AlbertEncoderConfig(
      vocab_size=config.vocab_size, embedding_width=config.embedding_size, hidden_size=config.hidden_size,
      num_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
      intermediate_size=config.intermediate_size, hidden_activation="gelu", dropout_rate=0.0,
      attention_dropout_rate=0.0, max_position_embeddings=config.max_position_embeddings,
      type_vocab_size=config.type_vocab_size, initializer_range=config.initializer_range))
  spm = os.path.join(original, "30k-clean.model")
  for mlm in (False, True):
    path = os.path.join(work, "albert_en_tiny_mlm" if mlm else "albert_en_tiny")
    export_tfhub_lib.export_model(path, encoder_config=encoder_config, with_mlm=mlm, sp_model_file=spm,
                                  model_checkpoint_path=paths["checkpoint_pretrainer" if mlm else "checkpoint_encoder"])
    paths["hub_mlm" if mlm else "hub"] = path
  paths["preprocess"] = os.path.join(work, "albert_en_preprocess")
  export_tfhub_lib.export_preprocessing(paths["preprocess"], sp_model_file=spm, do_lower_case=True,
                                        tokenize_with_offsets=False, default_seq_length=32)
  # A BERT encoder, the module users confuse with ALBERT's.
  bert_config = bert_configs.BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=64, max_position_embeddings=64)
  bert = export_tfhub_lib.get_bert_encoder(bert_config)
  bert_checkpoint = tf.train.Checkpoint(encoder=bert).save(os.path.join(work, "bert_checkpoint", "ckpt"))
  vocab = os.path.join(work, "bert_vocab.txt")
  with open(vocab, "w", encoding="utf-8") as f:
    f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{k}" for k in range(35)]) + "\n")
  paths["bert"] = os.path.join(work, "bert_en_uncased")
  export_tfhub_lib.export_model(paths["bert"], bert_config=bert_config, model_checkpoint_path=bert_checkpoint,
                                with_mlm=False, vocab_file=vocab, do_lower_case=True)
  return paths


# ---- 3. keras-hub's artifacts ----

def make_keras_hub(work, original):
  import keras_hub
  paths = {}
  backbone = keras_hub.models.AlbertBackbone(vocabulary_size=1000, num_layers=4, num_heads=4, embedding_dim=16,
                                             hidden_dim=32, intermediate_dim=64, num_groups=2, num_inner_repetitions=2,
                                             max_sequence_length=64)
  paths["preset"] = os.path.join(work, "albert_tiny_en_uncased")
  backbone.save_to_preset(paths["preset"])
  keras_hub.models.AlbertTokenizer(proto=os.path.join(original, "30k-clean.model")).save_to_preset(paths["preset"])
  paths["bert_preset"] = os.path.join(work, "bert_tiny_en_uncased")
  keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=2, num_heads=4, hidden_dim=32, intermediate_dim=64,
                                max_sequence_length=64).save_to_preset(paths["bert_preset"])
  return paths


# ---- 4. the checks ----

def check_module(name, path, config):
  """Our loader on a Model Garden encoder vs hub.KerasLayer of the same module."""
  import tensorflow_hub as tfhub

  from albert.model import hub
  try:
    inferred, model = hub.load_model(path)
  except Exception as e:  # noqa: BLE001  (a row of the table, not a crash)
    record(name, "load as --albert_hub_module_handle", f"error: {e}", ok=False)
    return None
  same = {key: getattr(inferred, key) for key in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers",
                                                 "num_attention_heads", "intermediate_size", "max_position_embeddings")}
  equal = same == {key: getattr(config, key) for key in same}
  record(name, "config inferred from shapes + encoder_outputs", "equal" if equal else f"differs: {same}", ok=equal)
  ids, mask, segments = sample_inputs(config.vocab_size)
  layer = tfhub.KerasLayer(path, trainable=False)
  theirs = layer({"input_word_ids": ids, "input_mask": mask, "input_type_ids": segments})
  ours = model(ids, mask, segments)
  worst = max([diff(ours.sequence_output, theirs["sequence_output"]), diff(ours.pooled_output, theirs["pooled_output"]),
               diff(ours.pooled_output, theirs["default"])]
              + [diff(a, b) for a, b in zip(ours.all_encoder_layers, theirs["encoder_outputs"], strict=True)])
  record(name, "forward vs hub.KerasLayer (sequence, pooled, default, encoder_outputs)", worst)
  return ours


def check_mlm(name, path, config):
  """fill_mask's masked-LM probabilities vs softmax of the module's `.mlm` logits."""
  from absl import flags

  from albert.cli import model_loader
  fv = flags.FlagValues()
  model_loader.define_encoder_flags(flag_values=fv)
  fv(["compat", f"--albert_hub_module_handle={path}", "--spm_model_file=from_tf_hub", "--max_seq_length=32"])
  encoder = model_loader.load_encoder(fv, with_mlm_head=True)
  batch = [encoder.encode_text("the river flows north"), encoder.encode_text("music and football")]
  positions = [[1, 2], [2, 3]]
  ours = encoder.masked_lm_probabilities(batch, positions)
  ids, mask, segments = encoder._pad(batch)  # noqa: SLF001  (the same padded batch)
  loaded = tf.saved_model.load(path)
  logits = loaded.mlm({"input_word_ids": ids, "input_mask": mask, "input_type_ids": segments,
                       "masked_lm_positions": np.asarray(positions, np.int32)}, training=False)["mlm_logits"]
  record(name, "fill_mask probabilities vs .mlm logits", diff(ours, tf.nn.softmax(logits, axis=-1)))


def check_checkpoint(name, prefix, config, reference_module, with_mlm):
  """--init_checkpoint loading of a Model Garden TF2 checkpoint vs the module exported from it."""
  from albert.io import checkpoint
  from albert.model.encoder import AlbertModel
  from albert.model.pretraining import MaskedLMHead
  model = AlbertModel(config)
  head = MaskedLMHead(config, model.word_embeddings)
  named = {**model.named_variables(), **(head.named_variables() if with_mlm else {})}
  report = checkpoint.load_variables(named, prefix)
  if report.missing:
    record(name, "load by object-graph names", f"missing {report.missing}", ok=False)
    return
  record(name, "load by object-graph names", f"{len(report.loaded)} variables", ok=True)
  ids, mask, segments = sample_inputs(config.vocab_size, seed=2)
  theirs = tf.saved_model.load(reference_module)({"input_word_ids": ids, "input_mask": mask,
                                                  "input_type_ids": segments}, training=False)
  ours = model(ids, mask, segments)
  record(name, "forward vs the module exported from it",
         max(diff(ours.sequence_output, theirs["sequence_output"]), diff(ours.pooled_output, theirs["pooled_output"])))
  if with_mlm:
    positions = np.asarray([[1, 2]] * 3, np.int32)
    logits = tf.saved_model.load(reference_module).mlm({"input_word_ids": ids, "input_mask": mask,
                                                         "input_type_ids": segments, "masked_lm_positions": positions},
                                                        training=False)["mlm_logits"]
    # Our head flattens [B * P, V] as the original's does.
    record(name, "MLM logits vs the module's .mlm", diff(head(ours.sequence_output, positions),
                                                         tf.reshape(logits, [-1, config.vocab_size])))


def check_original_against_garden(original, config, module):
  """Our model on the original checkpoint vs Model Garden's conversion of it: both read it alike."""
  from albert.io import checkpoint
  from albert.model.encoder import AlbertModel
  model = AlbertModel(config)
  checkpoint.load_variables(model.named_variables(), os.path.join(original, "model.ckpt-best"))
  ids, mask, segments = sample_inputs(config.vocab_size, seed=3)
  theirs = tf.saved_model.load(module)({"input_word_ids": ids, "input_mask": mask, "input_type_ids": segments},
                                       training=False)
  record("original checkpoint", "forward vs Model Garden's conversion + export of it",
         diff(model(ids, mask, segments).sequence_output, theirs["sequence_output"]))


def check_keras_hub(paths, work, original, config):
  import keras_hub

  from albert.io import checkpoint
  from albert.model.config import AlbertConfig
  from albert.model.encoder import AlbertModel
  name = "keras-hub preset (save_to_preset)"
  out = os.path.join(work, "from_keras_hub")
  proc = run("albert.convert", "--from=keras_hub", f"--keras_hub_dir={paths['preset']}", f"--output_dir={out}")
  if proc.returncode:
    record(name, "convert --from=keras_hub", f"error: {last_line(proc)}", ok=False)
    return None
  record(name, "convert --from=keras_hub", "wrote model.ckpt-best, albert_config.json, 30k-clean.model", ok=True)
  converted = AlbertConfig.from_json_file(os.path.join(out, "albert_config.json"))
  model = AlbertModel(converted)
  checkpoint.load_variables(model.named_variables(), os.path.join(out, "model.ckpt-best"))
  backbone = keras_hub.models.AlbertBackbone.from_preset(paths["preset"])
  ids, mask, segments = sample_inputs(converted.vocab_size)
  theirs = backbone.predict({"token_ids": ids, "segment_ids": segments, "padding_mask": mask}, verbose=0)
  ours = model(ids, mask, segments)
  record(name, "forward vs AlbertBackbone.predict (2 groups x 2 blocks)",
         max(diff(ours.sequence_output, theirs["sequence_output"]), diff(ours.pooled_output, theirs["pooled_output"])))

  name = "our --to=keras_hub preset"
  preset = os.path.join(work, "to_keras_hub")
  proc = run("albert.convert", "--from=original", "--to=keras_hub", f"--input_dir={original}", f"--output_dir={preset}")
  if proc.returncode:
    record(name, "convert --to=keras_hub", f"error: {last_line(proc)}", ok=False)
    return out
  loaded = keras_hub.models.AlbertBackbone.from_preset(preset)
  reference = AlbertModel(config)
  checkpoint.load_variables(reference.named_variables(), os.path.join(original, "model.ckpt-best"))
  ids, mask, segments = sample_inputs(config.vocab_size, seed=4)
  theirs = loaded.predict({"token_ids": ids, "segment_ids": segments, "padding_mask": mask}, verbose=0)
  ours = reference(ids, mask, segments)
  record(name, "keras-hub from_preset forward vs ours on the original",
         max(diff(ours.sequence_output, theirs["sequence_output"]), diff(ours.pooled_output, theirs["pooled_output"])))
  from albert.text.tokenizer import FullTokenizer
  text = "The river flows north to the sea."
  tokenizer = keras_hub.models.AlbertTokenizer.from_preset(preset)
  ours_ids = FullTokenizer(spm_model_file=os.path.join(original, "30k-clean.model"), do_lower_case=True)
  expected = ours_ids.convert_tokens_to_ids([t.piece for t in ours_ids.tokenize_with_offsets(text)])
  got = [int(i) for i in np.asarray(tokenizer([text.lower()]))[0]]
  record(name, "keras-hub AlbertTokenizer ids vs ours", "equal" if got == expected else f"{got} vs {expected}",
         ok=got == expected)
  preprocessor = keras_hub.models.AlbertTextClassifierPreprocessor.from_preset(preset, sequence_length=32)
  classifier = keras_hub.models.AlbertTextClassifier.from_preset(preset, num_classes=2, preprocessor=preprocessor)
  history = classifier.fit(x=["the sun was warm", "the judge spoke"] * 4, y=[0, 1] * 4, batch_size=4, epochs=1,
                           verbose=0)
  record(name, "AlbertTextClassifier.fit on it (2 steps)", f"loss {history.history['loss'][-1]:.4f}", ok=True)
  return out


TOPICS = ("the sun was warm and the sky was clear over the quiet beach",
          "the court heard the judge and the jury about the contract law case")


def write_topic_tsv(path, count=16):
  rng = np.random.default_rng(0)
  with open(path, "w", encoding="utf-8") as f:
    f.write("sentence\tlabel\n")
    for k in range(count):
      f.write(" ".join(rng.choice(TOPICS[k % 2].split(), size=8)) + f"\t{k % 2}\n")
  return path


def check_run_classifier(name, work, tag, model_flags):
  """run_classifier fine-tunes 3 steps from the artifact; the checkpoint has the original names."""
  from albert.io import checkpoint
  out = os.path.join(work, f"classifier_{tag}")
  proc = run("albert.run_classifier", *model_flags, "--task_name=custom",
             f"--train_file={write_topic_tsv(os.path.join(work, 'topics.tsv'))}", "--text_a_column=sentence",
             "--label_column=label", f"--output_dir={out}", "--do_train", "--train_step=3", "--train_batch_size=4",
             "--max_seq_length=24", "--learning_rate=1e-3", "--save_checkpoints_steps=3", "--log_every_n_steps=1")
  if proc.returncode:
    record(name, "run_classifier 3 steps", f"error: {last_line(proc)}", ok=False)
    return
  latest = checkpoint.latest_checkpoint(out)
  names = checkpoint.list_variables(latest)
  original = "bert/encoder/transformer/group_0/inner_group_0/attention_1/self/query/kernel" in names
  losses = re.findall(r"loss (\d+\.\d+)", proc.stderr + proc.stdout)
  initialized = re.search(r"initialized (\d+ of \d+ variables)", proc.stderr)
  detail = f"{os.path.basename(latest)}, original names: {original}, loss {losses[-1] if losses else '?'}"
  if initialized:
    detail += f", {initialized.group(1)} from the checkpoint"
  record(name, "run_classifier 3 steps", detail, ok=original)


def check_error(name, check, proc, expected):
  line = last_line(proc)
  record(name, check, line, ok=proc.returncode == 2 and expected in line)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--work_dir", required=True)
  args = parser.parse_args()
  work = os.path.abspath(args.work_dir)
  os.makedirs(work, exist_ok=True)
  started = time.time()
  original, config = make_original(work)
  garden = make_model_garden(work, original, config)
  keras = make_keras_hub(work, original)
  print(f"artifacts made in {time.time() - started:.0f} s", flush=True)

  check_original_against_garden(original, config, garden["hub"])
  check_module("Model Garden TF2 encoder (export_tfhub_lib)", garden["hub"], config)
  check_module("Model Garden TF2 encoder + MLM", garden["hub_mlm"], config)
  check_mlm("Model Garden TF2 encoder + MLM", garden["hub_mlm"], config)
  check_checkpoint("Model Garden TF2 checkpoint (converter, encoder)", garden["checkpoint_encoder"], config,
                   garden["hub"], with_mlm=False)
  check_checkpoint("Model Garden TF2 checkpoint (converter, pretrainer)", garden["checkpoint_pretrainer"], config,
                   garden["hub_mlm"], with_mlm=True)
  check_checkpoint("Model Garden TF2 checkpoint (converter, pretrainer, default model name)",
                   garden["checkpoint_pretrainer_default"], config, garden["hub_mlm"], with_mlm=True)
  converted = check_keras_hub(keras, work, original, config)

  spm = os.path.join(original, "30k-clean.model")
  config_file = os.path.join(original, "albert_config.json")
  check_run_classifier("Model Garden TF2 encoder (export_tfhub_lib)", work, "hub",
                       [f"--albert_hub_module_handle={garden['hub']}", "--spm_model_file=from_tf_hub"])
  check_run_classifier("Model Garden TF2 checkpoint (converter, encoder)", work, "tf2_checkpoint",
                       [f"--albert_config_file={config_file}", f"--spm_model_file={spm}",
                        f"--init_checkpoint={os.path.dirname(garden['checkpoint_encoder'])}"])
  if converted:
    check_run_classifier("keras-hub preset (save_to_preset)", work, "keras_hub",
                         [f"--albert_config_file={os.path.join(converted, 'albert_config.json')}",
                          f"--spm_model_file={os.path.join(converted, '30k-clean.model')}",
                          f"--init_checkpoint={os.path.join(converted, 'model.ckpt-best')}"])

  texts = os.path.join(work, "texts.txt")
  with open(texts, "w", encoding="utf-8") as f:
    f.write("a text\n")
  features = lambda handle: run("albert.extract_features", f"--albert_hub_module_handle={handle}",
                                "--spm_model_file=from_tf_hub", f"--input_file={texts}",
                                f"--output_dir={os.path.join(work, 'refused_features')}")
  check_error("Model Garden BERT encoder", "as --albert_hub_module_handle", features(garden["bert"]),
              "is a Model Garden BERT encoder")
  check_error("Model Garden preprocess model", "as --albert_hub_module_handle", features(garden["preprocess"]),
              "is a text preprocessing model")
  check_error("keras-hub BertBackbone preset", "convert --from=keras_hub",
              run("albert.convert", "--from=keras_hub", f"--keras_hub_dir={keras['bert_preset']}",
                  f"--output_dir={os.path.join(work, 'refused_bert')}"), "not a keras_hub>AlbertBackbone")
  no_weights = os.path.join(work, "preset_without_weights")
  subprocess.run(["cp", "-r", keras["preset"], no_weights], check=True)
  os.remove(os.path.join(no_weights, "model.weights.h5"))
  check_error("keras-hub preset without model.weights.h5", "convert --from=keras_hub",
              run("albert.convert", "--from=keras_hub", f"--keras_hub_dir={no_weights}",
                  f"--output_dir={os.path.join(work, 'refused_preset')}"), "has no model.weights.h5")

  print("\n| artifact | check | result | |\n|---|---|---|---|")
  for row in ROWS:
    print("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |")
  print(f"\n{len(ROWS) - len(FAILURES)} passed, {len(FAILURES)} failed ({time.time() - started:.0f} s)")
  return 1 if FAILURES else 0


if __name__ == "__main__":
  sys.exit(main())
