"""The guarded flag definer every runner and tool defines its flags with (absl only, no TensorFlow).

`definer(flag_values)` returns `define(DEFINE_x, name, *args, bound=None, **kwargs)`, which
- defines into `flag_values` (default: absl's global FLAGS) and skips a name already defined there, so
  groups shared by several commands can meet in one FlagValues;
- attaches the flag's bound (`albert.core.bounds`), so absl rejects a bad value while parsing the command
  line, before anything is read or written (`run_main` prints it as one `error:` line).
Entry points define their flags only when they run as a script (`if __name__ == "__main__"`), so any
number of them can be imported into one process.
"""

from absl import flags


def _values(flag_values):
  return flags.FLAGS if flag_values is None else flag_values


def attach_bound(flag_values, name, bound):
  """Makes absl reject values of `--name` outside `bound` at parse time (None always passes)."""
  def checker(value):
    if value is not None and not bound.contains(value):
      raise flags.ValidationError(f"must be {bound.describe()}")
    return True
  flags.register_validator(name, checker, flag_values=_values(flag_values))


def attach_rule(flag_values, names, rule, requirement):
  """Makes absl reject a combination of flags: `rule(values)` must hold, else "must be <requirement>".

  `requirement` may be a function of the values, for messages that quote another flag's value.
  """
  def checker(values):
    if not rule(values):
      raise flags.ValidationError(requirement(values) if callable(requirement) else requirement)
    return True
  flags.register_multi_flags_validator(list(names), checker, flag_values=_values(flag_values))


def definer(flag_values=None):
  """`define(DEFINE_x, name, *args, bound=None, **kwargs)` into `flag_values`, skipping defined names."""
  flag_values = _values(flag_values)

  def define(define_function, name, *args, bound=None, **kwargs):
    if name in flag_values:
      return
    define_function(name, *args, flag_values=flag_values, **kwargs)
    if bound is not None:
      attach_bound(flag_values, name, bound)

  return define


def attach_subset(flag_values, name, choices):
  """Makes absl reject a list flag that is empty or names anything outside `choices`."""
  def checker(values):
    unknown = [value for value in values or () if value not in choices]
    if unknown or not values:
      raise flags.ValidationError(f"must be some of {', '.join(choices)}")
    return True
  flags.register_validator(name, checker, flag_values=_values(flag_values))
