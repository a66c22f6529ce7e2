"""User-facing errors and the command-line entry wrapper.

A `UserError` is a mistake the user can fix (a bad flag, a missing file, malformed data, a config that
does not match a checkpoint). Runners let it propagate; `run_main` turns it into one clear line on
stderr and exit status 2, without a traceback. Anything else is a bug and keeps its traceback.
"""

import os
import sys


class UserError(Exception):
  """An error caused by the user's input; its message names the flag or file and what is wrong."""


def require_file(path, flag_name):
  """Returns `path` if it is an existing file, else raises a UserError naming the flag."""
  if not path:
    raise UserError(f"--{flag_name} is required")
  if not os.path.isfile(path):
    raise UserError(f"--{flag_name}: file not found: {path}")
  return path


def run_main(main):
  """Runs an absl `main(argv)` through `absl.app.run`, reporting `UserError`s as one line."""
  from absl import app

  def guarded(argv):
    try:
      return main(argv)
    except UserError as e:
      print(f"error: {e}", file=sys.stderr, flush=True)
      # os._exit skips interpreter teardown of TensorFlow threads, which can print noise.
      sys.stderr.flush()
      sys.stdout.flush()
      os._exit(2)

  app.run(guarded)
