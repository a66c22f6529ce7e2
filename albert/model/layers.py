"""The building blocks every ALBERT module shares: float32 variables, dense, LayerNorm, GELU, dropout.

Variables are float32 and named exactly like the original checkpoint variables. Layers compute in the
dtype of their input: weights are cast to it, while LayerNorm and everything numerically delicate run
in float32.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import tensorflow as tf

from albert.core.errors import UserError

if TYPE_CHECKING:
  from collections.abc import Callable, Sequence

LAYER_NORM_EPSILON = 1e-12


def create_variable(name: str, shape: Sequence[int], stddev: float | None) -> tf.Variable:
  """A float32 variable: truncated normal with `stddev` (re-drawn beyond 2 sigma), zeros if None.

  Args:
    name: the variable's name, the original checkpoint name (e.g. `bert/pooler/dense/bias`).
    shape: the dimensions, e.g. [H, H].
    stddev: standard deviation of the truncated normal, or None for an all-zero variable.
  Returns:
    A new trainable float32 `tf.Variable`.
  """
  shape = [int(d) for d in shape]
  if stddev is None:
    initial_value = lambda: tf.zeros(shape, tf.float32)
  else:
    initial_value = lambda: tf.random.truncated_normal(shape, stddev=stddev, dtype=tf.float32)
  return tf.Variable(initial_value, dtype=tf.float32, name=name)


def ones_variable(name: str, shape: Sequence[int]) -> tf.Variable:
  """A float32 variable initialized to ones (LayerNorm gamma).

  Args:
    name: the variable's original checkpoint name.
    shape: the dimensions, e.g. [H].
  Returns:
    A new trainable float32 `tf.Variable` of ones.
  """
  shape = [int(d) for d in shape]
  return tf.Variable(lambda: tf.ones(shape, tf.float32), dtype=tf.float32, name=name)


def variable_for(name: str, shape: Sequence[int], stddev: float) -> tf.Variable:
  """The original's initializer for a variable, chosen by its name: LayerNorm gammas are ones, biases
  (`bias`, `output_bias`) and betas zeros, every other weight truncated normal with `stddev` (the
  config's initializer_range).

  Args:
    name: the original checkpoint name; its last `/` component picks the initializer.
    shape: the dimensions.
    stddev: standard deviation used for weights (kernels, embeddings).
  Returns:
    A new trainable float32 `tf.Variable`.
  """
  leaf = name.rsplit("/", 1)[-1]
  if leaf == "gamma":
    return ones_variable(name, shape)
  if leaf == "beta" or leaf.endswith("bias"):
    return create_variable(name, shape, None)
  return create_variable(name, shape, stddev)


def dense(x: tf.Tensor, kernel: tf.Tensor | tf.Variable, bias: tf.Tensor | tf.Variable | None = None) -> tf.Tensor:
  """x @ kernel (+ bias) over the last axis, with the float32 weights cast to x's dtype.

  Inputs of rank above 2 are flattened to one matmul and reshaped back.

  Args:
    x: activations [..., in], in the compute dtype.
    kernel: weights [in, out], usually a float32 variable.
    bias: [out], or None for no bias.
  Returns:
    [..., out] in x's dtype.
  """
  kernel = tf.cast(kernel, x.dtype)
  if x.shape.rank == 2:
    y = tf.matmul(x, kernel)
  else:
    leading = tf.shape(x)[:-1]
    y = tf.matmul(tf.reshape(x, [-1, kernel.shape[0]]), kernel)
    y = tf.reshape(y, tf.concat([leading, [kernel.shape[1]]], axis=0))
  if bias is not None:
    y = tf.nn.bias_add(y, tf.cast(bias, x.dtype))
  return y


def layer_norm(x: tf.Tensor, gamma: tf.Tensor | tf.Variable, beta: tf.Tensor | tf.Variable,
               epsilon: float = LAYER_NORM_EPSILON) -> tf.Tensor:
  """LayerNorm over the last axis, computed in float32 (safe for bfloat16/float16 inputs).

  Args:
    x: activations [..., width] in any float dtype.
    gamma: the scale [width].
    beta: the offset [width].
    epsilon: added to the variance before the square root; the original's 1e-12 by default.
  Returns:
    The normalized activations, same shape and dtype as x.
  """
  x32 = tf.cast(x, tf.float32)
  mean = tf.reduce_mean(x32, axis=-1, keepdims=True)
  centered = x32 - mean
  variance = tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True)
  y = centered * tf.math.rsqrt(variance + epsilon) * tf.cast(gamma, tf.float32) + tf.cast(beta, tf.float32)
  return tf.cast(y, x.dtype)


_GELU_LINEAR = 2.0 * math.sqrt(2.0 / math.pi)
_GELU_CUBIC = _GELU_LINEAR * 0.044715


def gelu(x: tf.Tensor) -> tf.Tensor:
  """GELU, tanh approximation (the original's `gelu`; "gelu_new" in some ports).

  0.5 x (1 + tanh(z)) is written as x sigmoid(2z): fewer elementwise passes than the textbook form,
  and no pow(x, 3), which eager mode runs as a slow generic power.

  Args:
    x: activations of any shape and float dtype.
  Returns:
    GELU(x), same shape and dtype.
  """
  return x * tf.sigmoid(x * (_GELU_LINEAR + _GELU_CUBIC * tf.square(x)))


def _linear(x):
  return x


_ACTIVATIONS = {"gelu": gelu, "relu": tf.nn.relu, "tanh": tf.tanh, "linear": _linear, "": _linear}


def get_activation(name: str | Callable[[tf.Tensor], tf.Tensor] | None) -> Callable[[tf.Tensor], tf.Tensor]:
  """The activation function for a config `hidden_act` (case-insensitive); callables pass through.

  Args:
    name: "gelu", "relu", "tanh" or "linear"; "" or None also mean linear. A callable is returned as is.
  Returns:
    A function from a tensor to a tensor of the same shape and dtype. An unknown name is a UserError.
  """
  if callable(name):
    return name
  key = (name or "").lower()
  if key not in _ACTIVATIONS:
    raise UserError(f"hidden_act {name!r} is not one of gelu, relu, tanh, linear")
  return _ACTIVATIONS[key]


def dropout(x: tf.Tensor, rate: float, training: bool, seed: tf.Tensor | None = None) -> tf.Tensor:
  """Dropout only when training with a positive rate; identity otherwise.

  Args:
    x: activations of any shape.
    rate: the fraction of entries zeroed, in [0, 1); kept entries are scaled by 1 / (1 - rate).
    training: a Python bool; False makes this the identity, as at inference.
    seed: a [2] int32 seed for a stateless mask (the same seed, the same mask: recomputed blocks need
      it); None draws the mask from TensorFlow's stateful generator.
  Returns:
    A tensor like x.
  """
  if training and rate > 0.0:
    if seed is not None:
      return tf.nn.experimental.stateless_dropout(x, rate=rate, seed=seed)
    return tf.nn.dropout(x, rate=rate)
  return x


def dims(x: tf.Tensor) -> list[int | tf.Tensor]:
  """Static dimensions where known, dynamic scalars otherwise (keeps XLA shapes static).

  Args:
    x: a tensor of known rank.
  Returns:
    One entry per axis: a Python int when the size is static, else an int32 scalar tensor.
  """
  static = x.shape.as_list()
  if None not in static:
    return static
  dynamic = tf.shape(x)
  return [d if d is not None else dynamic[i] for i, d in enumerate(static)]
