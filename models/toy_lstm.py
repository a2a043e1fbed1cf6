"""The notebook's PyTorch LSTM for the toy sequences (Laboratorio 3, part 3): one LSTM layer
over one-hot words, [T, 1, vocab] (time-major, batch 1), a linear layer without bias to
logits: [T, vocab]."""

from torch import nn


class ToyLSTM(nn.Module):
    def __init__(self, vocab_size: int, hidden: int = 50):
        super().__init__()
        self.lstm = nn.LSTM(input_size=vocab_size, hidden_size=hidden, num_layers=1)
        self.l_out = nn.Linear(hidden, vocab_size, bias=False)

    def forward(self, x):
        x, _ = self.lstm(x)
        return self.l_out(x.view(-1, self.lstm.hidden_size))
