"""Each pipeline's training pieces: model, batches, loss, evaluation; the loop is tasks/runtime."""
