"""Streaming plumbing: batches of an iterable, and an ordered, bounded map over worker processes.

Feature conversion (SQuAD) and pretraining-data creation both turn a long stream of inputs into
outputs with a tokenizer-holding object that is costly to build and to pickle. `WorkerPool` builds that
object once per worker, keeps the input only a few chunks ahead of the output (so a corpus larger than
memory streams through), and yields results in input order, so the output does not depend on the
number of workers.
"""

import collections
import multiprocessing


def batched(items, size):
  """Lists of `size` consecutive items (the last one shorter), consuming `items` lazily."""
  batch = []
  for item in items:
    batch.append(item)
    if len(batch) == size:
      yield batch
      batch = []
  if batch:
    yield batch


# Each worker process holds the state its initializer built.
_worker_state = None


def _init_worker(make_state, state_args):
  global _worker_state
  _worker_state = make_state(*state_args)


def _run_chunk(function, chunk):
  return [function(_worker_state, item) for item in chunk]


class WorkerPool:
  """`map(function, items)` yields `function(state, item)` for every item, in input order.

  `state = make_state(*state_args)` is built in this process (so a bad model fails here, at once) and,
  with `num_workers` > 1, once in each spawned worker; `function`, `make_state` and the items must then
  be picklable (module-level functions). Items travel in chunks of `chunk_size`; at most
  `chunks_in_flight` chunks are submitted and not yet yielded. As always with spawn, the main script
  needs an `if __name__ == "__main__"` guard.
  """

  def __init__(self, make_state, state_args=(), num_workers=1, chunk_size=1, chunks_in_flight=None):
    self.state = make_state(*state_args)
    self.num_workers = num_workers
    self.chunk_size = chunk_size
    self.chunks_in_flight = chunks_in_flight or 2 * num_workers
    self._pool = None
    if num_workers > 1:
      context = multiprocessing.get_context("spawn")
      self._pool = context.Pool(num_workers, initializer=_init_worker, initargs=(make_state, state_args))

  def map(self, function, items):
    if self._pool is None:
      for item in items:
        yield function(self.state, item)
      return
    pending = collections.deque()
    for chunk in batched(items, self.chunk_size):
      pending.append(self._pool.apply_async(_run_chunk, (function, chunk)))
      if len(pending) >= self.chunks_in_flight:
        yield from pending.popleft().get()
    while pending:
      yield from pending.popleft().get()

  def close(self):
    if self._pool is not None:
      self._pool.terminate()
      self._pool.join()
      self._pool = None

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()
