"""Shared flag groups: original names and defaults (docs/compatibility.md §10), parsing, and helpers."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
import tensorflow as tf
from absl import flags as absl_flags

from albert import optimization
from albert.cli import flags
from albert.core.errors import UserError
from albert.model.config import AlbertConfig


def fresh(argv=(), **groups):
  """A new FlagValues with the shared groups (plus runner-specific training flags), parsed from argv."""
  fv = absl_flags.FlagValues()
  flags.define_model_flags(fv, **groups.get("model", {}))
  flags.define_tpu_flags(fv)
  flags.define_execution_flags(fv, **groups.get("execution", {}))
  fv(["prog", *argv])
  return fv


def test_tpu_and_loop_flags_have_the_original_defaults():
  fv = fresh()
  assert {name: fv[name].value for name in ("use_tpu", "tpu_name", "tpu_zone", "gcp_project", "master",
                                            "num_tpu_cores", "iterations_per_loop")} == {
      "use_tpu": False, "tpu_name": None, "tpu_zone": None, "gcp_project": None, "master": None,
      "num_tpu_cores": 8, "iterations_per_loop": 1000}


def test_model_flags_have_the_original_defaults():
  fv = fresh()
  for name in ("albert_config_file", "vocab_file", "spm_model_file", "init_checkpoint",
               "albert_hub_module_handle", "output_dir"):
    assert fv[name].value is None, name
  assert fv.do_lower_case is True
  assert fresh(["--nodo_lower_case"]).do_lower_case is False


def test_model_flags_without_tokenizer_and_hub_like_run_pretraining():
  fv = fresh(model={"tokenizer": False, "hub": False})
  assert "albert_config_file" in fv and "init_checkpoint" in fv and "output_dir" in fv
  for name in ("vocab_file", "spm_model_file", "do_lower_case", "albert_hub_module_handle"):
    assert name not in fv, name


def test_execution_flags_are_new_and_keep_checkpoint_max_only_where_missing():
  fv = fresh()
  assert (fv.distribution_strategy, fv.num_gpus, fv.precision, fv.jit_compile, fv.log_every_n_steps) == (
      "auto", None, "float32", False, 100)
  assert "keep_checkpoint_max" not in fv
  squad = fresh(["--keep_checkpoint_max=3"], execution={"keep_checkpoint_max": 0})
  assert squad.keep_checkpoint_max == 3 and squad["keep_checkpoint_max"].default == 0


def test_precision_is_an_enum():
  assert fresh(["--precision=bfloat16"]).precision == "bfloat16"
  with pytest.raises(absl_flags.IllegalFlagValueError):
    fresh(["--precision=float64"])


def test_groups_are_idempotent_so_runners_can_share_a_process():
  fv = fresh()
  flags.define_model_flags(fv, do_lower_case=False)
  flags.define_tpu_flags(fv)
  flags.define_execution_flags(fv)
  assert fv.do_lower_case is True


def test_bad_distribution_strategy_flag_is_a_user_error():
  with pytest.raises(UserError, match="--distribution_strategy"):
    flags.strategy_from_flags(fresh(["--distribution_strategy=horovod"]))
  assert flags.strategy_from_flags(fresh(["--distribution_strategy=default"])) is tf.distribute.get_strategy()


def test_validate_seq_length():
  config = AlbertConfig(vocab_size=100, max_position_embeddings=128)
  flags.validate_seq_length(128, config)
  with pytest.raises(UserError, match="flag --max_seq_length=129: must be <= max_position_embeddings=128"):
    flags.validate_seq_length(129, config)
  with pytest.raises(UserError, match=r"flag --max_seq_length=0: must be >= 1"):
    flags.validate_seq_length(0, config)


class NoTask:
  """Trainer construction does not touch the task."""


def with_training_flags(fv, optimizer=None, keep=None, race_keep=None):
  absl_flags.DEFINE_float("learning_rate", 5e-5, "", flag_values=fv)
  absl_flags.DEFINE_integer("save_checkpoints_steps", 1000, "", flag_values=fv)
  if optimizer:
    absl_flags.DEFINE_enum("optimizer", optimizer, ["adamw", "lamb"], "", flag_values=fv)
  if keep is not None:
    absl_flags.DEFINE_integer("keep_checkpoint_max", keep, "", flag_values=fv)
  if race_keep is not None:
    absl_flags.DEFINE_integer("num_keep_checkpoint", race_keep, "", flag_values=fv)
  fv(["prog", "--output_dir=/tmp/albert-flags-test", "--iterations_per_loop=7", "--precision=bfloat16",
      "--save_checkpoints_steps=50", "--log_every_n_steps=10"])
  return fv


def test_make_trainer_reads_the_shared_flags():
  fv = absl_flags.FlagValues()
  flags.define_model_flags(fv)
  flags.define_tpu_flags(fv)
  flags.define_execution_flags(fv)
  with_training_flags(fv, optimizer="lamb", keep=3)
  trainer = flags.make_trainer(fv, NoTask(), tf.distribute.get_strategy(), 100, 10)
  assert isinstance(trainer.optimizer, optimization.LAMB)
  assert (trainer.output_dir, trainer.num_train_steps, trainer.save_checkpoints_steps,
          trainer.iterations_per_loop, trainer.log_every_n_steps, trainer.compute_dtype) == (
      "/tmp/albert-flags-test", 100, 50, 7, 10, tf.bfloat16)
  assert trainer.checkpoint_manager.max_to_keep == 3
  assert float(trainer.learning_rate_schedule(5)) == pytest.approx(5e-5 * 5 / 10)


def test_make_trainer_defaults_and_overrides():
  race = absl_flags.FlagValues()
  flags.define_model_flags(race)
  flags.define_tpu_flags(race)
  flags.define_execution_flags(race)
  with_training_flags(race, race_keep=2)
  trainer = flags.make_trainer(race, NoTask(), tf.distribute.get_strategy(), 100, 0)
  assert isinstance(trainer.optimizer, optimization.AdamWeightDecay)
  assert not isinstance(trainer.optimizer, optimization.LAMB)
  assert trainer.checkpoint_manager.max_to_keep == 2
  kept_all = flags.make_trainer(race, NoTask(), tf.distribute.get_strategy(), 100, 0, keep_checkpoint_max=0)
  assert kept_all.checkpoint_manager.max_to_keep == 0
