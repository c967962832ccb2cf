"""Feature extraction over a DataLoader of dict batches."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from streamlabel.evaluation import extract_features


class Toy(Dataset):
    def __init__(self, n: int = 10) -> None:
        g = torch.Generator().manual_seed(0)
        self.imgs = torch.randn(n, 3, 4, 2, generator=g)

    def __len__(self) -> int:
        return self.imgs.shape[0]

    def __getitem__(self, i: int) -> dict:
        return {"img": self.imgs[i], "pid": i // 2, "camid": i % 3, "index": i}


class Net(torch.nn.Module):
    """Not flip-invariant; records whether it ran in eval mode and with grad disabled."""

    def __init__(self, as_dict: bool = False) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(24, 5)
        self.as_dict = as_dict
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor):
        self.calls.append((self.training, torch.is_grad_enabled()))
        out = self.fc(x.flatten(1))
        return {"embedding": out, "logits": out} if self.as_dict else out


def test_extract_plain_and_metadata_order():
    ds, net = Toy(), Net()
    net.train()
    out = extract_features(net, DataLoader(ds, batch_size=4), normalize=False, progress=False)
    assert net.training  # mode restored
    assert all(call == (False, False) for call in net.calls)
    expected = net.fc(ds.imgs.flatten(1)).detach()
    torch.testing.assert_close(out["feats"], expected)
    assert out["pids"].tolist() == [i // 2 for i in range(10)]
    assert out["camids"].tolist() == [i % 3 for i in range(10)]
    assert out["indices"].tolist() == list(range(10))
    assert out["feats"].dtype == torch.float32 and out["pids"].dtype == torch.int64


def test_flip_average_and_normalize():
    ds, net = Toy(), Net(as_dict=True)
    out = extract_features(net, DataLoader(ds, batch_size=3), flip=True, progress=False)
    x = ds.imgs
    avg = 0.5 * (net.fc(x.flatten(1)) + net.fc(torch.flip(x, dims=[3]).flatten(1))).detach()
    torch.testing.assert_close(out["feats"], torch.nn.functional.normalize(avg, dim=1))
    torch.testing.assert_close(out["feats"].norm(dim=1), torch.ones(10))


def test_errors():
    with pytest.raises(ValueError, match="no batches"):
        extract_features(Net(), [], progress=False)

    class Bad(torch.nn.Module):
        def forward(self, x):
            return {"nope": x}

    batch = {"img": torch.zeros(2, 3, 4, 2), "pid": [0, 1], "camid": [0, 0], "index": [0, 1]}
    with pytest.raises(ValueError, match="embedding"):
        extract_features(Bad(), [batch], progress=False)
