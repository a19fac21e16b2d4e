"""Models and arguments whose torch errors used to reach the user bare: each refusal now says
what was given and what to do (or the argument is accepted)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from zfwidgets import Inspector
from zfwidgets.core.feature_space import nearest
from zfwidgets.core.graph import UnsupportedModelError
from zfwidgets.core.memory import NotEnoughMemoryError
from zfwidgets.core.mining import mine
from zfwidgets.core.occlusion import occlusion_at, occlusion_sweep


def small() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 3)).eval()


def test_data_parallel_is_refused_naming_model_module():
    with pytest.raises(UnsupportedModelError, match=r"pass model\.module"):
        Inspector(nn.DataParallel(small()), device="cpu")
    inner = nn.Sequential(nn.DataParallel(small()))
    with pytest.raises(UnsupportedModelError, match="'0' is a DataParallel wrapper"):
        Inspector(inner, device="cpu")
    insp = Inspector(nn.DataParallel(small()).module, device="cpu")  # the advice works
    assert insp.predict(torch.rand(1, 8, 8)).shape == (3,)


def test_old_spectral_norm_is_refused_and_the_new_one_works():
    model = small()
    model[0] = torch.nn.utils.spectral_norm(model[0])
    with pytest.raises(UnsupportedModelError, match="old torch.nn.utils.spectral_norm"):
        Inspector(model, device="cpu")
    model = small()
    model[0] = torch.nn.utils.parametrizations.spectral_norm(model[0])
    x = torch.rand(1, 8, 8)
    with torch.no_grad():
        want = torch.softmax(model.eval()(x[None])[0], 0)
    torch.testing.assert_close(Inspector(model, device="cpu").predict(x), want)


def test_lazy_modules_are_refused_until_they_have_run_once():
    model = nn.Sequential(nn.LazyConv2d(2, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    with pytest.raises(UnsupportedModelError, match=r"run the model once on an input, model\(x\)"):
        Inspector(model, device="cpu")
    model(torch.zeros(1, 1, 8, 8))
    assert Inspector(model.eval(), device="cpu").predict(torch.rand(1, 8, 8)).shape == (3,)


def test_numpy_and_tensor_integers_are_accepted_where_ints_are():
    insp = Inspector(small(), device="cpu")
    images = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    a = mine(insp, images, ["0"], k=np.int64(2), batch_size=np.int32(4), progress=False)
    b = mine(insp, images, ["0"], k=2, batch_size=4, progress=False)
    assert a.k == 2 and type(a.k) is int
    assert torch.equal(a.layers["0"].values, b.layers["0"].values)
    maps = occlusion_sweep(insp, images[0], np.int64(3), torch.tensor(2))
    assert torch.equal(maps.activity, occlusion_sweep(insp, images[0], 3, 2).activity)
    assert occlusion_at(insp, images[0], np.int64(1), np.int64(2), np.int8(3)).activity is not None
    index, _ = nearest(torch.randn(5, 3), torch.randn(3), k=np.int64(2))
    assert index.shape == (2,)
    with pytest.raises(ValueError, match="k must be a positive int; got 2.5"):
        mine(insp, images, ["0"], k=2.5, progress=False)


def test_a_huge_k_is_refused_before_the_pass(monkeypatch):
    insp = Inspector(small(), device="cpu")
    calls = []
    real = Inspector.run_batch
    monkeypatch.setattr(Inspector, "run_batch", lambda *a: calls.append(1) or real(*a))
    images = torch.rand(10, 1, 8, 8)
    with pytest.raises(NotEnoughMemoryError, match="only adds empty entries: pass k <= 10"):
        mine(insp, images, ["0"], k=10**12, progress=False)
    assert calls == []
    top = mine(insp, images, ["0"], k=20, progress=False)  # above the data set, small: fine
    assert top.layers["0"].values.shape == (2, 20)
