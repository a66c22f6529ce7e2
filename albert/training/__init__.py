"""Training: the Task contract, the trainer loop, the gradient step, loss scaling, optimizers, distribution,
checkpoint selection."""
