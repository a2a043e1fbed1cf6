"""The airline forecaster: the notebook's CustomModelLSTM (LSTM over the window, a linear
layer on every step's hidden state: [batch, lookback, 1] -> [batch, lookback, 1]), with an
optional highway (LSTNet's): a linear autoregression over the last `highway` inputs, added
to each step's output. Causal: step j reads inputs 0..j only (zeros before the window)."""

import torch
from torch import nn


class LSTMForecaster(nn.Module):
    def __init__(self, input_size: int = 1, hidden: int = 100, n_layers: int = 1,
                 dropout: float = 0.0, highway: int = 0):  # fmt: skip
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, n_layers, batch_first=True,
                            dropout=dropout if n_layers > 1 else 0.0)  # fmt: skip
        self.fc = nn.Linear(hidden, 1)
        self.highway = nn.Conv1d(input_size, 1, highway) if highway else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)  # zero initial state, as the notebook's h0, c0
        out = self.fc(out)
        if self.highway is not None:
            k = self.highway.kernel_size[0]
            past = nn.functional.pad(x.transpose(1, 2), (k - 1, 0))  # [batch, input, k-1+len]
            out = out + self.highway(past).transpose(1, 2)
        return out
