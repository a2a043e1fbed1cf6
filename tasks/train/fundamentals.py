"""Training pieces of the three Laboratorio 3 models on the toy sequences, each as the notebook
trains it: one update per sequence in order, the validation loss taken first in each epoch
(before the epoch's updates), the epoch's losses the per-sequence losses summed and divided by
the number of sequences."""

from functools import partial

import numpy as np
import torch
from torch import nn

from models import numpy_lstm, numpy_rnn
from models.toy_lstm import ToyLSTM
from tasks.runtime.loop import Recipe, pick_device
from tasks.toy import encode_pairs

KINDS = ("numpy_rnn", "numpy_lstm", "torch_lstm")


class _ValidatedFirst(Recipe):
    """One sequence per step (train_loss the mean over steps), the training items as batches;
    `start_epoch` takes `mean_loss` of the validation pairs before the epoch's updates and
    `evaluate` reports it."""

    unit, report = "sequences", "batch"

    def batches(self, epoch: int):
        return self.train

    def start_epoch(self, epoch: int) -> None:
        self.val_loss = self.mean_loss(self.val)

    def evaluate(self, epoch: int) -> dict[str, float]:
        return {"val_loss": self.val_loss}


class NumpyRecipe(_ValidatedFirst):
    """The notebook's NumPy RNN or LSTM training cell: plain SGD on the model's own
    `update_parameters`, one clipped step per training sequence (hidden state reset to zeros),
    the loss of a sequence taken before its own update. No nn.Module: `train_step` is the
    notebook's update, and the parameters travel in `state_dict` as float64 tensors."""

    def __init__(self, kind: str, params, train, val, lr: float, notebook: bool = True):
        self.name, self.params = kind, tuple(params)
        self.train, self.val = train, val
        self.lr, self.notebook = lr, notebook
        self.zeros = np.zeros((self.params[0].shape[0], 1))

    def _outputs(self, x):
        if self.name == "numpy_rnn":
            return numpy_rnn.forward_pass(x, self.zeros, self.params)
        return numpy_lstm.forward(x, self.zeros, self.zeros, self.params)

    def loss_and_grads(self, x, y):
        """The notebook's per-sequence loss and (clipped) gradients at the current params."""
        out = self._outputs(x)
        if self.name == "numpy_rnn":
            return numpy_rnn.backward_pass(x, *out, y, self.params, notebook=self.notebook)
        return numpy_lstm.backward(*out, y, self.params, notebook=self.notebook)

    def mean_loss(self, pairs) -> float:
        """Mean over sequences of the notebook's per-sequence loss (no update)."""
        return float(sum(self.loss_and_grads(x, y)[0] for x, y in pairs) / len(pairs))

    def train_step(self, compute, batch, scale: float):
        """The notebook's step; a NaN/inf loss stops the runtime's loop right after it."""
        loss, grads = self.loss_and_grads(*batch)
        numpy_rnn.update_parameters(self.params, grads, lr=self.lr)  # in place
        return loss, 1

    def state_dict(self) -> dict:
        return {"params": [torch.from_numpy(p.copy()) for p in self.params]}

    def load_state_dict(self, state: dict) -> None:
        for p, saved in zip(self.params, state["params"], strict=True):
            p[...] = saved.numpy()  # float64 both: exact

    def predict(self, x) -> list[int]:
        out = self._outputs(x)
        probs = out[0] if self.name == "numpy_rnn" else out[-1]
        return [int(np.argmax(p)) for p in probs]


class TorchRecipe(_ValidatedFirst):
    """The notebook's PyTorch LSTM: Adam, cross-entropy, one sequence per step; the
    validation loss first in each epoch."""

    name = "torch_lstm"

    def __init__(self, vocab_size: int, train, val, cfg):
        torch.manual_seed(cfg.seed)
        self.device = pick_device(cfg.device)
        self.model = ToyLSTM(vocab_size, cfg.hidden).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.torch_lr)
        self.criterion = nn.CrossEntropyLoss()
        self.train, self.val = [self._tensors(x, y) for x, y in train], val

    def _tensors(self, x, y):  # one-hot [T, V, 1] -> [T, 1, V]; targets as indices
        return (torch.Tensor(x).permute(0, 2, 1).to(self.device),
                torch.LongTensor(np.argmax(y[:, :, 0], axis=1)).to(self.device))  # fmt: skip

    def loss(self, model, batch):
        x, y = batch
        return self.criterion(model(x), y), 1

    @torch.no_grad()
    def mean_loss(self, pairs) -> float:
        self.model.eval()
        tensors = [self._tensors(x, y) for x, y in pairs]
        return sum(self.criterion(self.model(x), y).item() for x, y in tensors) / len(tensors)

    @torch.no_grad()
    def predict(self, x) -> list[int]:
        self.model.eval()
        return self.model(self._tensors(x, x)[0]).argmax(1).tolist()


def recipe(kind: str, vocab_size: int, pairs: dict, cfg) -> NumpyRecipe | TorchRecipe:
    """The recipe of `kind`, seeded as the notebook: the NumPy models from their own
    RandomState(seed), the torch LSTM from torch.manual_seed(seed)."""
    if kind == "torch_lstm":
        return TorchRecipe(vocab_size, pairs["train"], pairs["val"], cfg)
    rng, h, v = np.random.RandomState(cfg.seed), cfg.hidden, vocab_size
    if kind == "numpy_rnn":
        init, lr = partial(numpy_rnn.init_rnn, h, v, rng), cfg.numpy_rnn_lr
    else:
        init, lr = partial(numpy_lstm.init_lstm, h, v, h + v, rng), cfg.numpy_lstm_lr
    init()  # the notebook's graded init draws first (cells 55 / 66), the trained params next
    return NumpyRecipe(kind, init(), pairs["train"], pairs["val"], lr, cfg.notebook_gradients)


def one_hot_pairs(parts: dict, word_to_idx) -> dict:
    return {k: encode_pairs(v, len(word_to_idx), word_to_idx) for k, v in parts.items()}
