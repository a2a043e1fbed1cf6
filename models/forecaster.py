"""The airline forecaster: the notebook's CustomModelLSTM (LSTM over the window, a linear
layer on every step's hidden state: [batch, lookback, 1] -> [batch, lookback, 1])."""

import torch
from torch import nn


class LSTMForecaster(nn.Module):
    def __init__(self, input_size: int = 1, hidden: int = 100, n_layers: int = 1,
                 dropout: float = 0.0):  # fmt: skip
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, n_layers, batch_first=True,
                            dropout=dropout if n_layers > 1 else 0.0)  # fmt: skip
        self.fc = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)  # zero initial state, as the notebook's h0, c0
        return self.fc(out)
