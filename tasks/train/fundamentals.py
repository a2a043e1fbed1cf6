"""Training and evaluating the three Laboratorio 3 models on the toy sequences, each as the
notebook does: per-sequence updates in order, the validation loss first in each epoch."""

import numpy as np
import torch
from torch import nn

from models import numpy_lstm, numpy_rnn
from models.toy_lstm import ToyLSTM
from tasks.toy import encode_pairs


class NumpyModel:
    """The NumPy RNN or LSTM behind one interface: train, loss, predict."""

    def __init__(self, kind: str, vocab_size: int, cfg, rng: np.random.RandomState):
        self.kind, self.cfg = kind, cfg
        h = cfg.hidden
        if kind == "numpy_rnn":
            rnn_init = numpy_rnn.init_rnn
            rnn_init(h, vocab_size, rng)  # the notebook's graded init draws first (cell 55)
            self.params = rnn_init(h, vocab_size, rng)
        else:
            numpy_lstm.init_lstm(h, vocab_size, h + vocab_size, rng)  # graded init (cell 66)
            self.params = numpy_lstm.init_lstm(h, vocab_size, h + vocab_size, rng)
        self.zeros = np.zeros((h, 1))

    def train(self, train, val, on_epoch=None) -> tuple[list[float], list[float]]:
        c, nb = self.cfg, self.cfg.notebook_gradients
        if self.kind == "numpy_rnn":
            out = numpy_rnn.train_rnn(self.params, train, val, c.numpy_rnn_epochs,
                                      c.numpy_rnn_lr, nb, on_epoch)  # fmt: skip
        else:
            out = numpy_lstm.train_lstm(self.params, train, val, c.numpy_lstm_epochs,
                                        c.numpy_lstm_lr, nb, on_epoch)  # fmt: skip
        self.params, train_loss, val_loss = out
        return train_loss, val_loss

    def _outputs(self, x):
        if self.kind == "numpy_rnn":
            return numpy_rnn.forward_pass(x, self.zeros, self.params)
        return numpy_lstm.forward(x, self.zeros, self.zeros, self.params)

    def loss(self, pairs) -> float:
        """Mean over sequences of the notebook's per-sequence loss."""
        total = 0.0
        for x, y in pairs:
            out = self._outputs(x)
            if self.kind == "numpy_rnn":
                total += numpy_rnn.backward_pass(x, *out, y, self.params)[0]
            else:
                total += numpy_lstm.backward(*out, y, self.params)[0]
        return total / len(pairs)

    def predict(self, x) -> list[int]:
        out = self._outputs(x)
        probs = out[0] if self.kind == "numpy_rnn" else out[-1]
        return [int(np.argmax(p)) for p in probs]


class TorchModel:
    """The notebook's PyTorch LSTM: Adam, cross-entropy, one sequence per step."""

    def __init__(self, vocab_size: int, cfg):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.net = ToyLSTM(vocab_size, cfg.hidden)
        self.criterion = nn.CrossEntropyLoss()

    @staticmethod
    def _tensors(x, y):  # one-hot [T, V, 1] -> [T, 1, V]; targets as indices
        return torch.Tensor(x).permute(0, 2, 1), torch.LongTensor(np.argmax(y[:, :, 0], axis=1))

    def train(self, train, val, on_epoch=None) -> tuple[list[float], list[float]]:
        opt = torch.optim.Adam(self.net.parameters(), lr=self.cfg.torch_lr)
        data = {k: [self._tensors(x, y) for x, y in v] for k, v in (("t", train), ("v", val))}
        train_loss, val_loss = [], []
        for epoch in range(self.cfg.torch_epochs):
            v = self.loss(val, data["v"])
            self.net.train()
            total = 0.0
            for x, y in data["t"]:
                loss = self.criterion(self.net(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item()
            train_loss.append(total / len(train))
            val_loss.append(v)
            if on_epoch:
                on_epoch(epoch, train_loss[-1], v)
        return train_loss, val_loss

    @torch.no_grad()
    def loss(self, pairs, tensors=None) -> float:
        self.net.eval()
        tensors = tensors or [self._tensors(x, y) for x, y in pairs]
        return sum(self.criterion(self.net(x), y).item() for x, y in tensors) / len(tensors)

    @torch.no_grad()
    def predict(self, x) -> list[int]:
        self.net.eval()
        return self.net(self._tensors(x, x)[0]).argmax(1).tolist()


def build(kind: str, vocab_size: int, cfg, rng):
    if kind == "torch_lstm":
        return TorchModel(vocab_size, cfg)
    return NumpyModel(kind, vocab_size, cfg, rng)


def one_hot_pairs(parts: dict, word_to_idx) -> dict:
    return {k: encode_pairs(v, len(word_to_idx), word_to_idx) for k, v in parts.items()}
