"""User-facing errors, the helpers that phrase them, and the command-line entry wrapper.

A `UserError` is a mistake the user can fix (a bad flag, a missing file, malformed data, a config that
does not match a checkpoint). Library code raises it; `run_main` turns it, and a flag that fails to
parse, into one clear line on stderr and exit status 2, without a traceback. Anything else is a bug and
keeps its traceback.
"""

import os
import sys

USER_ERROR_EXIT_CODE = 2


class UserError(Exception):
  """An error caused by the user's input; its message names the flag or file and what is wrong."""


def require_file(path, flag_name):
  """Returns `path` if it is an existing file, else raises a UserError naming the flag."""
  if not path:
    raise UserError(f"--{flag_name} is required")
  if not os.path.isfile(path):
    raise UserError(f"--{flag_name}: file not found: {path}")
  return path


def abbreviate(names, limit=5):
  """`a, b, c, ... (N more)`: a list of names short enough for a one-line message."""
  names = list(names)
  shown = ", ".join(str(name) for name in names[:limit])
  return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def first_line(error):
  """The first line of an exception's message (TensorFlow errors span many lines)."""
  text = (getattr(error, "message", "") or str(error)).strip()
  return text.splitlines()[0] if text else type(error).__name__


def exit_with_error(message):
  """Prints `error: <message>` and ends the process with status 2 at once.

  os._exit skips interpreter teardown, where TensorFlow's threads can print noise after the message.
  """
  sys.stdout.flush()
  print(f"error: {message}", file=sys.stderr, flush=True)
  os._exit(USER_ERROR_EXIT_CODE)


def parse_flags_or_exit(argv):
  """absl's flag parsing, with a bad value (e.g. a bound violated) reported like any other user error."""
  from absl import flags
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    exit_with_error(str(e))


def run_main(main):
  """Runs an absl `main(argv)` through `absl.app.run`, reporting `UserError`s, and running out of disk
  space wherever it happens, as one line. What `main` returns is ignored (absl would make a returned
  object the exit status)."""
  from absl import app

  from albert.core import fileio

  def guarded(argv):
    try:
      main(argv)
    except UserError as e:
      exit_with_error(e)
    except Exception as e:
      if fileio.is_disk_full(e):  # outputs are atomic, so what was being written is already removed
        exit_with_error(fileio.disk_full_message(e))
      raise

  app.run(guarded, flags_parser=parse_flags_or_exit)
