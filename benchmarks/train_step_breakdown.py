"""Benchmark: where a training step's time goes (albert-base, batch 4, length 384, XLA, float32).

Times the forward pass, forward+backward (gradients of all variables) and the AdamW update alone, and
writes them to benchmarks/results/train_step_breakdown.json. A backward pass costs about twice the
forward's FLOPs, so forward+backward near 3x forward is the arithmetic bound.

  python benchmarks/train_step_breakdown.py   # about 2 minutes on 2 CPU cores
"""
import json, os, time, sys
import numpy as np, tensorflow as tf
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
from albert import fileio
from albert import modeling, optimization, config
cfg=config.preset("base"); cfg.hidden_dropout_prob=0.0; cfg.attention_probs_dropout_prob=0.0
B,S=4,384
model=modeling.AlbertModel(cfg)
ids=tf.constant(np.random.randint(5,30000,(B,S)),tf.int32); mask=tf.ones((B,S),tf.int32); seg=tf.zeros((B,S),tf.int32)
vars_=list(model.named_variables().values())
opt=optimization.AdamWeightDecay(1e-5); opt.build(model.named_variables()); step=tf.Variable(0,dtype=tf.int64)
def loss_fn(): return tf.reduce_mean(tf.square(model(ids,mask,seg,training=True).sequence_output))
fwd=tf.function(loss_fn, jit_compile=True)
@tf.function(jit_compile=True)
def grad():
  with tf.GradientTape() as t: l=loss_fn()
  g=t.gradient(l,vars_); return tf.linalg.global_norm(g)
@tf.function(jit_compile=True)
def grads_only():
  with tf.GradientTape() as t: l=loss_fn()
  return t.gradient(l,vars_)
@tf.function
def apply(g):
  g,_=optimization.clip_by_global_norm(g); opt.apply_gradients(zip(g,vars_),step)
def timeit(f,n=3):
  f(); t=time.time()
  for _ in range(n): f()
  return (time.time()-t)/n
g=grads_only()
tf_=timeit(fwd); tg=timeit(grad); ta=timeit(lambda: apply(g))
result = {"config": "base", "batch": B, "seq_length": S, "jit_compile": True, "seconds_forward": round(tf_, 3),
          "seconds_forward_backward": round(tg, 3), "backward_to_forward_ratio": round(tg / tf_, 2),
          "seconds_optimizer_update": round(ta, 3), "load_average_1min": round(os.getloadavg()[0], 2)}
fileio.write_json(os.path.join(REPO_ROOT, "benchmarks", "results", "train_step_breakdown.json"), result)
print(json.dumps(result))
