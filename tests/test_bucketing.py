"""Length buckets: bucketed SQuAD prediction (--bucket_prediction) and --group_by_length training.

The comparisons run run_squad_v1/v2 in this process (flags parsed into their own FlagValues) on the
real samples, at the real 384/128 windows, with a tiny model whose position table covers 384.
"""

import json

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from conftest import SQUAD_TINY_CONFIG, shared_path, subset_file

from albert.io.input_pipeline import MEGA_BATCH_BATCHES, Bucketing, bucketed_dataset_fn
from albert.tasks.squad import records, runner
from albert.tasks.squad.task import SquadTask

WINDOW = ["--max_seq_length=384", "--doc_stride=128", "--max_query_length=64"]
BUCKETS = [64, 128, 192, 256, 320, 384]
QUESTIONS = 100


# ---- the bucket rule, by hand ----

def test_bucket_lengths_and_assignment_by_hand():
  bucketing = Bucketing(384)
  assert bucketing.lengths() == BUCKETS
  lengths = [0, 1, 63, 64, 65, 128, 129, 237, 320, 321, 383, 384]
  expected = [64, 64, 64, 64, 128, 128, 192, 256, 320, 384, 384, 384]
  assert bucketing.length_of(tf.constant(lengths)).numpy().tolist() == expected
  # A head needing 100 positions (a v2 beam) never gets a shorter bucket; a length that is no multiple
  # of the step is its own last bucket.
  assert Bucketing(384, minimum=100).lengths() == [128, 192, 256, 320, 384]
  assert int(Bucketing(384, minimum=100).length_of(5)) == 128
  assert Bucketing(150).lengths() == [64, 128, 150]
  assert Bucketing(150).length_of(tf.constant([129, 150])).numpy().tolist() == [150, 150]
  assert Bucketing(40).lengths() == [40] and int(Bucketing(40).length_of(3)) == 40


def test_cut_keeps_the_rows_and_cuts_the_sequences_to_the_longest_rows_bucket():
  mask = tf.constant([[1] * 70 + [0] * 314, [1] * 3 + [0] * 381])
  batch = {"input_mask": mask, "input_ids": mask * 7, "unique_ids": tf.constant([5, 6])}
  cut = Bucketing(384).cut(batch, keys={"input_mask", "input_ids"})
  assert cut["input_ids"].shape == (2, 128) and cut["unique_ids"].numpy().tolist() == [5, 6]
  assert Bucketing(384, trim=False).cut(batch, keys={"input_mask"})["input_mask"].shape == (2, 384)


# ---- end to end on the real samples ----

@pytest.fixture(scope="module")
def assets(spm_model_file, tmp_path_factory):
  work = tmp_path_factory.mktemp("bucketing")
  config = work / "albert_config.json"
  config.write_text(json.dumps(dict(SQUAD_TINY_CONFIG, max_position_embeddings=384)))
  return {"work": work, "config": str(config), "spm": spm_model_file,
          "v1": subset_file(shared_path("squad", "dev-v1.1-sample.json"), work / "v1.json", QUESTIONS),
          "v2": subset_file(shared_path("squad", "dev-v2.0-sample.json"), work / "v2.json", QUESTIONS)}


def run_squad(version, assets, output_dir, *args):
  fv = flags.FlagValues()
  runner.define_flags(version, fv)
  fv(["run_squad", f"--albert_config_file={assets['config']}", f"--spm_model_file={assets['spm']}",
      f"--output_dir={output_dir}", "--seed=1", *WINDOW, *args])
  runner.run(version, fv)
  return output_dir


@pytest.fixture(scope="module")
def trained(assets, monkeypatch_module):
  """Two optimizer steps of v1 training with --group_by_length and two micro-batches per step.

  v1 post-processing needs weights that have seen training: the v1 head does not mask padding (like the
  original), so with fresh weights padding logits past a window's bucket can take n-best slots in the
  padded run, which the bucketed run never computes (README, --bucket_prediction)."""
  seen = []
  original = records.input_fn_builder
  monkeypatch_module.setattr(records, "input_fn_builder",
                             lambda *a, **k: seen.append(k.get("bucketing")) or original(*a, **k))
  output_dir = run_squad(1, assets, assets["work"] / "train", f"--train_file={assets['v1']}", "--do_train",
                         "--group_by_length", "--gradient_accumulation_steps=2", "--train_batch_size=16",
                         "--num_train_epochs=0.33", "--learning_rate=1e-3", "--warmup_proportion=0")
  assert seen == [Bucketing(384, minimum=1, trim=True)]
  return output_dir / "model.ckpt-2"


@pytest.fixture(scope="module")
def monkeypatch_module():
  with pytest.MonkeyPatch.context() as patch:
    yield patch


@pytest.fixture(scope="module")
def traced_lengths(monkeypatch_module):
  """The sequence lengths every prediction graph was traced for (predict_step runs only while tracing)."""
  lengths = []
  original = SquadTask.predict_step

  def recording(self, features):
    lengths.append(features["input_ids"].shape[1])
    return original(self, features)

  monkeypatch_module.setattr(SquadTask, "predict_step", recording)
  return lengths


def predict_both_ways(version, assets, checkpoint, traced_lengths):
  """(padded, bucketed) output directories, and the lengths the bucketed run traced."""
  work = assets["work"] / f"v{version}"
  cache = [f"--predict_feature_file={work / 'predict.tf_record'}",
           f"--predict_feature_left_file={work / 'predict_left.jsonl'}"]
  common = [f"--predict_file={assets[f'v{version}']}", "--do_predict", f"--init_checkpoint={checkpoint}", *cache]
  padded = run_squad(version, assets, work / "padded", *common, "--bucket_prediction=false")
  traced_lengths.clear()
  bucketed = run_squad(version, assets, work / "bucketed", *common)
  return padded, bucketed, list(traced_lengths)


def assert_same_predictions(padded, bucketed, version):
  def read(directory, name):
    return json.loads((directory / name).read_text())

  assert read(bucketed, "predictions.json") == read(padded, "predictions.json")
  nbest_padded, nbest_bucketed = read(padded, "nbest_predictions.json"), read(bucketed, "nbest_predictions.json")
  assert list(nbest_bucketed) == list(nbest_padded)
  for qid, entries in nbest_padded.items():
    assert [e["text"] for e in nbest_bucketed[qid]] == [e["text"] for e in entries], qid
    for key in ("start_log_prob", "end_log_prob", "probability"):
      np.testing.assert_allclose([e[key] for e in nbest_bucketed[qid]], [e[key] for e in entries], atol=1e-5)
  if version == 2:
    odds_padded, odds_bucketed = read(padded, "null_odds.json"), read(bucketed, "null_odds.json")
    assert list(odds_bucketed) == list(odds_padded)
    np.testing.assert_allclose(list(odds_bucketed.values()), list(odds_padded.values()), atol=1e-5)
  assert read(bucketed, "eval_results.json")["f1"] == read(padded, "eval_results.json")["f1"]


@pytest.mark.parametrize("version", [1, 2])
def test_bucketed_prediction_gives_the_padded_predictions(version, assets, trained, traced_lengths):
  # v2 starts its head fresh from the v1 checkpoint's encoder: its answers mask padding, so any
  # weights give identical results.
  padded, bucketed, lengths = predict_both_ways(version, assets, trained, traced_lengths)
  assert_same_predictions(padded, bucketed, version)
  # Only bucket lengths were traced, once each, and the real samples use several of them.
  assert set(lengths) <= set(BUCKETS) and len(lengths) == len(set(lengths)) >= 3, lengths


def test_bucketed_prediction_returns_every_window_once_without_fillers(assets, trained):
  feature_file = assets["work"] / "v1" / "predict.tf_record"
  spec = records.feature_spec(384, is_training=False, use_p_mask=False)
  padded = [b for b in records.input_fn_builder(str(feature_file), 384, False, False, 8, use_p_mask=False)()]
  ids = np.concatenate([b["unique_ids"].numpy() for b in padded])
  dataset = bucketed_dataset_fn(str(feature_file), spec, 8, Bucketing(384), {"unique_ids": -1})()
  batches = list(dataset)
  assert all(b["unique_ids"].shape == (8,) for b in batches)
  bucketed_ids = np.concatenate([b["unique_ids"].numpy() for b in batches])
  assert sorted(bucketed_ids[bucketed_ids >= 0].tolist()) == sorted(ids.tolist())
  assert 0 < (bucketed_ids == records.FILLER_UNIQUE_ID).sum() < 8 * len(BUCKETS)
  for batch in batches:
    lengths = batch["input_mask"].numpy().sum(axis=1)
    width = batch["input_ids"].shape[1]
    assert width in BUCKETS and int(Bucketing(384).length_of(lengths.max())) == width
    assert (lengths > width - 64).all() or width == 64  # one bucket per batch


# ---- --group_by_length ----

def grouped_batches(feature_file, seed, count):
  dataset_fn = records.input_fn_builder(str(feature_file), 384, is_training=True, drop_remainder=True, batch_size=4,
                                        use_p_mask=True, seed=seed, bucketing=Bucketing(384, minimum=5))
  return [{key: value.numpy() for key, value in batch.items()} for batch in dataset_fn().take(count)]


def test_group_by_length_batches_repeat_under_a_seed_and_are_cut(assets, trained):
  feature_file = assets["work"] / "train" / "train.tf_record"
  count = 2 * MEGA_BATCH_BATCHES
  first, again, other = (grouped_batches(feature_file, seed, count) for seed in (7, 7, 8))
  for a, b in zip(first, again):
    assert a.keys() == b.keys() and all(np.array_equal(a[key], b[key]) for key in a)
  assert [b["unique_ids"].tolist() for b in other] != [b["unique_ids"].tolist() for b in first]
  widths = set()
  for batch in first:
    lengths = batch["input_mask"].sum(axis=1)
    width = batch["input_ids"].shape[1]
    assert batch["input_ids"].shape[0] == 4 and batch["p_mask"].shape[1] == width
    assert width == int(Bucketing(384).length_of(lengths.max()))
    assert (np.diff(lengths) <= 0).all()  # rows of a sorted chunk, longest first
    widths.add(width)
  assert len(widths) >= 3
  # Whole batches are shuffled: their longest rows do not come in sorted order.
  longest = [int(b["input_mask"].sum(axis=1).max()) for b in first]
  assert longest != sorted(longest, reverse=True)
