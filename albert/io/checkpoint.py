"""Name-based checkpoints in the original release's layout.

A checkpoint is a plain TensorFlow bundle (`<prefix>.index` + `<prefix>.data-*`) keyed by the original
variable names (`bert/embeddings/word_embeddings`, `<var>/adam_m`, `global_step`), so checkpoints of the
original TF 1.15 code load here and ours load wherever that layout is understood (`tf.compat.v1.train.Saver`,
converters). Files go through `tf.io.gfile`, so directories may be local or on GCS (TPU VMs).
"""

import dataclasses
import os
import re

import tensorflow as tf

from albert.core import fileio
from albert.core.errors import UserError, abbreviate, first_line

STATE_FILENAME = "checkpoint"
GLOBAL_STEP = "global_step"
# Optimizer slots: the release's AdamW and LAMB both write adam_*; lamb_* is filtered by its exporter.
SLOT_SUFFIXES = ("/adam_m", "/adam_v", "/lamb_m", "/lamb_v")

# init_from_group0 (docs/compatibility.md §2.9): tried in this order for variables missing from the checkpoint.
_GROUP0_SUBSTITUTIONS = (
    (re.compile(r"/group_\d+/"), "/group_0/"),
    (re.compile(r"/ffn_\d+/"), "/ffn_1/"),
    (re.compile(r"/attention_\d+/"), "/attention_1/"),
)
_STEPPED_NAME = re.compile(r"^(?P<base>.+)-(?P<step>\d+)$")
_FILE_SUFFIX = re.compile(r"\.(index|meta|data-\d+-of-\d+)$")
_LISTED_NAMES = 10
_OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"


def is_training_state(name):
  """Whether a checkpoint tensor is training state (optimizer slot or global_step), not a weight."""
  return name == GLOBAL_STEP or name.endswith(SLOT_SUFFIXES)


class CheckpointMismatchError(UserError):
  """Checkpoint tensors that do not fit the model's variables, usually because the config is wrong."""

  def __init__(self, message, report):
    super().__init__(message)
    self.report = report


# ---- writing ----

def save_checkpoint(prefix, named_values):
  """Writes `{name: value}` at `prefix`; a crash never leaves a readable half-written checkpoint.

  Values may be variables (also distributed ones, read in cross-replica context), tensors or numpy.
  The bundle is written under a hidden temporary prefix and then moved into place, index last.
  """
  names = sorted(named_values)
  tensors = [_read_value(named_values[name]) for name in names]
  tf.io.gfile.makedirs(os.path.dirname(prefix) or ".")
  temporary = fileio.temporary_name(prefix)
  try:
    with fileio.reporting_disk_full(prefix), tf.device("CPU:0"):
      tf.raw_ops.SaveV2(prefix=temporary, tensor_names=names, shape_and_slices=[""] * len(names),
                        tensors=tensors)
      _publish(temporary, prefix)
  finally:
    _remove_bundle(temporary)
  return prefix


def copy_checkpoint(src_prefix, dst_prefix):
  """Copies a checkpoint (e.g. to `model.ckpt-best`) with the same all-or-nothing guarantee as saving."""
  if not checkpoint_exists(src_prefix):
    raise UserError(f"checkpoint not found: {src_prefix} (no {src_prefix}.index)")
  tf.io.gfile.makedirs(os.path.dirname(dst_prefix) or ".")
  temporary = fileio.temporary_name(dst_prefix)
  try:
    with fileio.reporting_disk_full(dst_prefix):
      for data_file in _data_files(src_prefix):
        tf.io.gfile.copy(data_file, temporary + data_file[len(src_prefix):], overwrite=True)
      tf.io.gfile.copy(src_prefix + ".index", temporary + ".index", overwrite=True)
      _publish(temporary, dst_prefix)
  finally:
    _remove_bundle(temporary)
  return dst_prefix


def _read_value(value):
  if isinstance(value, tf.Variable):
    return value.read_value()
  return tf.convert_to_tensor(value)


def _publish(temporary, prefix):
  """Moves a complete bundle to `prefix`: the old index goes first and the new index comes last.

  When overwriting (`model.ckpt-best`), a crash in between leaves nothing readable at `prefix`, never
  an index paired with the wrong data.
  """
  _remove_bundle(prefix)
  for data_file in _data_files(temporary):
    tf.io.gfile.rename(data_file, prefix + data_file[len(temporary):], overwrite=True)
  tf.io.gfile.rename(temporary + ".index", prefix + ".index", overwrite=True)


def _bundle_files(prefix):
  """The files of the bundle at `prefix`, index first so that deleting in this order is safe."""
  directory, basename = os.path.split(prefix)
  if not tf.io.gfile.isdir(directory or "."):
    return []
  names = tf.io.gfile.listdir(directory or ".")
  index = [basename + ".index"] if basename + ".index" in names else []
  others = sorted(n for n in names if n.startswith(basename + ".data-") or n == basename + ".meta")
  return [os.path.join(directory, n) for n in index + others]


def _data_files(prefix):
  return [f for f in _bundle_files(prefix) if f[len(prefix):].startswith(".data-")]


def _remove_bundle(prefix):
  for path in _bundle_files(prefix):
    tf.io.gfile.remove(path)


def checkpoint_exists(prefix):
  return tf.io.gfile.exists(prefix + ".index")


# ---- the `checkpoint` state file and a directory of checkpoints ----

class CheckpointManager:
  """Saves `<basename>-<step>` checkpoints in a directory, keeps the newest `max_to_keep` of them and
  maintains the TF `checkpoint` state file. Checkpoints are ordered by step; the files on disk are the
  truth, so a missing or stale state file does no harm. `<basename>-best` is never pruned.
  """

  def __init__(self, directory, max_to_keep=5, basename="model.ckpt"):
    if max_to_keep is not None and max_to_keep < 0:
      raise ValueError(f"max_to_keep must be >= 0 or None, got {max_to_keep}")
    self.directory = directory
    self.max_to_keep = max_to_keep
    self.basename = basename

  def save(self, step, named_values):
    """Writes the checkpoint for `step`, then the state file, then deletes the ones beyond max_to_keep."""
    prefix = os.path.join(self.directory, f"{self.basename}-{int(step)}")
    save_checkpoint(prefix, named_values)
    kept = self.checkpoints()
    if self.max_to_keep:
      # The checkpoint just written is never dropped, even if an older run left higher steps behind.
      pruned = [p for p in kept[:-self.max_to_keep] if p != prefix]
      kept = [p for p in kept if p not in pruned]
    else:
      pruned = []
    write_checkpoint_state(self.directory, kept)
    for old in pruned:
      _remove_bundle(old)
    return prefix

  def remove_leftovers(self):
    """Deletes the temporary files of saves that never finished (a killed run); returns their names.

    Only hidden names made by `fileio.temporary_name` for this manager's checkpoints and state file match.
    """
    if not tf.io.gfile.isdir(self.directory):
      return []
    owned = (f".{self.basename}-", f".{STATE_FILENAME}.tmp-")
    leftovers = sorted(name for name in tf.io.gfile.listdir(self.directory)
                       if name.startswith(owned) and ".tmp-" in name)
    for name in leftovers:
      tf.io.gfile.remove(os.path.join(self.directory, name))
    return leftovers

  def checkpoints(self):
    """Prefixes of this manager's checkpoints, ascending by step."""
    found = _stepped_checkpoints(self.directory, self.basename)
    return sorted(found, key=found.get)

  def latest(self):
    found = self.checkpoints()
    return found[-1] if found else None


def write_checkpoint_state(directory, prefixes):
  """Writes the TF `checkpoint` text file (relative paths; the last prefix is the latest) atomically."""
  relative = [_relative_to(directory, p) for p in prefixes]
  lines = [f"model_checkpoint_path: {_quote(relative[-1])}"] if relative else []
  lines += [f"all_model_checkpoint_paths: {_quote(p)}" for p in relative]
  with fileio.atomic_path(os.path.join(directory, STATE_FILENAME)) as temporary:
    with tf.io.gfile.GFile(temporary, "w") as f:
      f.write("".join(line + "\n" for line in lines))


def _relative_to(directory, prefix):
  if os.path.dirname(prefix) == directory.rstrip("/"):
    return os.path.basename(prefix)
  return prefix


def _quote(text):
  """A protobuf text-format string literal."""
  return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _state_latest(directory):
  """The state file's `model_checkpoint_path` if it exists on disk, else None (missing or stale file)."""
  try:
    state = tf.train.get_checkpoint_state(directory)
  except (ValueError, tf.errors.OpError):
    return None
  if state is None or not checkpoint_exists(state.model_checkpoint_path):
    return None
  return state.model_checkpoint_path


def _stepped_checkpoints(directory, basename=None):
  """`{prefix: step}` for every `<base>-<step>.index` in `directory` (of `basename` if given)."""
  if not tf.io.gfile.isdir(directory):
    return {}
  found = {}
  for name in tf.io.gfile.listdir(directory):
    if name.startswith(".") or not name.endswith(".index"):
      continue
    match = _STEPPED_NAME.match(name[:-len(".index")])
    if match and basename in (None, match["base"]):
      found[os.path.join(directory, match.group(0))] = int(match["step"])
  return found


def _step_in_name(prefix):
  match = _STEPPED_NAME.match(os.path.basename(prefix))
  return int(match["step"]) if match else None


def latest_checkpoint(directory):
  """The newest checkpoint prefix in `directory`, or None.

  The state file's latest entry wins unless a `*-<step>.index` with a higher step exists (a save that
  finished after the state file was last written).
  """
  candidates = [(step, 0, prefix) for prefix, step in _stepped_checkpoints(directory).items()]
  state_latest = _state_latest(directory)
  if state_latest:
    step = _step_in_name(state_latest)
    candidates.append((-1 if step is None else step, 1, state_latest))
  return max(candidates)[2] if candidates else None


def resolve_checkpoint(path_or_dir, flag_name):
  """A checkpoint prefix from a prefix, a path to one of its files, or a directory holding checkpoints."""
  if not path_or_dir:
    raise UserError(f"--{flag_name} is required")
  prefix = _FILE_SUFFIX.sub("", path_or_dir)
  if checkpoint_exists(prefix):
    return prefix
  if tf.io.gfile.isdir(path_or_dir):
    latest = latest_checkpoint(path_or_dir)
    if latest is None:
      raise UserError(f"--{flag_name}: no checkpoint in directory {path_or_dir}")
    return latest
  raise UserError(f"--{flag_name}: checkpoint not found: {path_or_dir} (expected a prefix such as "
                  f"model.ckpt-1000, its .index file, or a directory holding checkpoints)")


def checkpoint_step(prefix):
  """The training step of a checkpoint: from its name (`model.ckpt-1000`), else its `global_step`."""
  step = _step_in_name(prefix)
  if step is not None:
    return step
  reader = _open_reader(prefix)
  return int(_read_tensor(reader, prefix, GLOBAL_STEP)) if reader.has_tensor(GLOBAL_STEP) else None


# ---- reading ----

def list_variables(prefix):
  """`{name: shape}` of every tensor in the checkpoint, sorted by name."""
  shapes = _open_reader(prefix).get_variable_to_shape_map()
  return {name: list(shapes[name]) for name in sorted(shapes)}


def read_tensors(prefix, names):
  """`{name: numpy value}` of the named tensors (original names, also for object-based TF2 bundles)."""
  reader = _open_reader(prefix)
  return {name: _read_tensor(reader, prefix, name) for name in names}


def _open_reader(prefix):
  """A reader keyed by original names; an object-based TF2 bundle (Model Garden's checkpoints, a SavedModel's
  variables) is read through its object graph's variable names (docs/compatibility.md §16.2)."""
  if not checkpoint_exists(prefix):
    raise UserError(f"checkpoint not found: {prefix} (no {prefix}.index)")
  try:
    reader = tf.train.load_checkpoint(prefix)
    if not reader.has_tensor(_OBJECT_GRAPH):
      return reader
    # The name table belongs to the model (albert.model.model_garden); imported here, below it, only when needed.
    from albert.model.model_garden import ObjectGraphReader
    return ObjectGraphReader(reader, f"checkpoint {prefix}")
  except (tf.errors.OpError, ValueError) as e:
    raise _unreadable(prefix, e) from None


def _read_tensor(reader, prefix, name):
  """One tensor as numpy; a missing or truncated data file surfaces here, not when opening (a cut data
  file is an IndexError from TensorFlow's reader)."""
  try:
    return reader.get_tensor(name)
  except (tf.errors.OpError, IndexError, ValueError) as e:
    raise _unreadable(prefix, e) from None


def _unreadable(prefix, error):
  return UserError(f"checkpoint {prefix} cannot be read (damaged or cut short?): {first_line(error)}")


@dataclasses.dataclass
class LoadReport:
  """What a load did. `loaded` maps model variable names to the checkpoint tensor each was read from."""
  loaded: dict
  missing: list
  unexpected: list
  mismatched: list
  training_state: list = dataclasses.field(default_factory=list)
  excluded: list = dataclasses.field(default_factory=list)
  prefix: str = ""

  def summary(self):
    """A few lines for the log: what was loaded and what was left alone."""
    lines = [f"loaded {len(self.loaded)} variables from {self.prefix}"]
    substituted = [f"{name} <- {source}" for name, source in self.loaded.items() if name != source]
    sections = [
        ("initialized from group 0", substituted),
        ("not in the checkpoint, left at their initial values", self.missing),
        ("excluded", self.excluded),
        ("checkpoint tensors not used", self.unexpected),
        ("shape or dtype mismatch", self.mismatched),
    ]
    lines += [f"{title} ({len(names)}): {abbreviate(names, _LISTED_NAMES)}" for title, names in sections if names]
    if self.training_state:
      lines.append(f"optimizer slots and global_step in the checkpoint not loaded: {len(self.training_state)}")
    return "\n".join(lines)


def load_variables(named_variables, prefix, num_of_group=0, exclude=None):
  """Initializes model variables from a checkpoint by name (the original `init_checkpoint` semantics).

  Variables absent from the checkpoint keep their values (fresh task heads). With `num_of_group > 1`, a
  variable missing by exact name falls back to its group_0 / ffn_1 / attention_1 counterpart
  (`init_from_group0`). `exclude` is a list of regexes; matching model names are neither loaded nor
  reported missing. Any shape mismatch raises CheckpointMismatchError before a variable is touched.
  Call outside a replica context (distributed variables are assigned on every replica).
  """
  reader = _open_reader(prefix)
  report = _plan(named_variables, reader, prefix, num_of_group, exclude or ())
  _assign(named_variables, reader, prefix, report.loaded)
  return report


def restore_all(named_variables, prefix):
  """Restores every variable exactly (model, optimizer slots, global_step) to resume training."""
  reader = _open_reader(prefix)
  report = _plan(named_variables, reader, prefix, 0, ())
  if report.missing:
    raise UserError(f"checkpoint {prefix} cannot resume this run: {len(report.missing)} variables are "
                    f"missing: {', '.join(report.missing)}")
  _assign(named_variables, reader, prefix, report.loaded)
  return report


def _plan(named_variables, reader, prefix, num_of_group, exclude):
  """Decides the source tensor of every variable and checks that it fits; raises on any mismatch."""
  shapes = reader.get_variable_to_shape_map()
  dtypes = reader.get_variable_to_dtype_map()
  patterns = [re.compile(p) for p in exclude]
  is_excluded = lambda name: any(p.search(name) for p in patterns)
  report = LoadReport(loaded={}, missing=[], unexpected=[], mismatched=[], prefix=prefix)
  problems = []
  for name in sorted(named_variables):
    if is_excluded(name):
      report.excluded.append(name)
      continue
    source = _find_source(name, shapes, num_of_group)
    if source is None:
      report.missing.append(name)
      continue
    problem = _incompatibility(named_variables[name], shapes[source], dtypes[source])
    if problem:
      report.mismatched.append(name)
      problems.append(f"{name}: {problem}" + (f" (from {source})" if source != name else ""))
    else:
      report.loaded[name] = source
  used = set(report.loaded.values()) | {_find_source(n, shapes, num_of_group) for n in report.mismatched}
  for name in sorted(set(shapes) - used):
    if is_training_state(name):
      report.training_state.append(name)
    elif not is_excluded(name):
      report.unexpected.append(name)
  if problems:
    raise CheckpointMismatchError(
        f"checkpoint {prefix} does not fit the model ({len(problems)} mismatched; is the config "
        f"(--albert_config_file) the one this checkpoint was trained with?): " + "; ".join(problems), report)
  return report


def _find_source(name, available, num_of_group):
  if name in available:
    return name
  if num_of_group > 1:
    for pattern, replacement in _GROUP0_SUBSTITUTIONS:
      candidate = pattern.sub(replacement, name)
      if candidate in available:
        return candidate
  return None


def _incompatibility(variable, checkpoint_shape, checkpoint_dtype):
  """Why a checkpoint tensor cannot go into `variable`, or None if it can (casting within float/int)."""
  model_shape = variable.shape.as_list()
  if list(checkpoint_shape) != model_shape:
    return f"model {model_shape} vs checkpoint {list(checkpoint_shape)}"
  model_dtype = variable.dtype.base_dtype
  same_kind = ((model_dtype.is_floating and checkpoint_dtype.is_floating)
               or (model_dtype.is_integer and checkpoint_dtype.is_integer))
  if model_dtype != checkpoint_dtype and not same_kind:
    return f"model {model_dtype.name} vs checkpoint {checkpoint_dtype.name}"
  return None


def _assign(named_variables, reader, prefix, sources):
  """Reads each needed tensor once (one at a time, so large checkpoints stay cheap) and assigns it."""
  targets = {}
  for name, source in sources.items():
    targets.setdefault(source, []).append(named_variables[name])
  for source, variables in targets.items():
    value = _read_tensor(reader, prefix, source)
    for variable in variables:
      variable.assign(value)  # converts within float or int kinds, as _incompatibility allows
