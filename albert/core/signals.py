"""Graceful stops: the first Ctrl-C or SIGTERM becomes a request that long work honours at a safe point.

Training checks the request between tf.function loops of steps, saves a checkpoint of the step it
reached, and only then lets the signal take its usual effect. A second signal is handled as if no work
were running (Ctrl-C twice aborts at once).
"""

import signal
import threading

from absl import logging


class StopRequest:
  """Context manager turning the first SIGINT/SIGTERM into `signum`; `deliver()` re-raises it later."""

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self, what="the running loop of steps"):
    self.what = what
    self.signum = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
    return self

  def __exit__(self, *exc_info):
    self._restore()

  @property
  def requested(self):
    return self.signum is not None

  def _restore(self):
    for signum, handler in self._previous.items():
      if handler is not None:
        signal.signal(signum, handler)
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None:
      self._restore()
      signal.raise_signal(signum)
      return
    self.signum = signum
    logging.warning("received %s: stopping after %s to save a checkpoint", signal.Signals(signum).name,
                    self.what)

  def deliver(self):
    """Lets the signal take its usual effect (KeyboardInterrupt, termination) now that it is safe."""
    if self.signum is not None:
      signal.raise_signal(self.signum)
