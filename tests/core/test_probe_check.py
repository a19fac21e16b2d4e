"""Issue 30, classes 1 and 2: the graph reader reads in-place statements, products of two
tensors and index-returning pools as the model runs them; what it cannot read is refused by
the probe check (naming the step); a model whose modules change after the Inspector was built
is read again. The user's model is never called, changed or hooked throughout."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import zfwidgets.core.inspector as inspector_module
from zfwidgets import Inspector
from zfwidgets.core.graph import UnsupportedModelError


class _Base(nn.Module):
    """conv -> (the forward under test) -> flatten -> linear; input (1, 8, 8)."""

    def __init__(self, pooled: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(4 * (3 if pooled else 6) ** 2, 3)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class ReluStatement(_Base):
    def forward(self, x):
        x = self.conv(x)
        x.relu_()
        return self.head(x)


class ModuleStatement(_Base):
    def forward(self, x):
        x = self.conv(x)
        self.relu(x)  # nn.ReLU(inplace=True), result not assigned
        return self.head(x)


class AddStatement(_Base):
    def forward(self, x):
        x = self.conv(x)
        x.add_(1)
        return self.head(torch.relu(x))


class TorchReluInPlace(_Base):
    def forward(self, x):
        x = self.conv(x)
        torch.relu_(x)
        return self.head(x)


class PositionalInplace(_Base):
    def forward(self, x):
        x = self.conv(x)
        y = F.relu(x, True)
        return self.head(x + y)


class SigmoidBranch(_Base):
    def forward(self, x):
        x = self.conv(x)
        gate = x.mean((2, 3), keepdim=True)
        gate.sigmoid_()
        return self.head(x * gate)


class InPlaceOnBlockInput(_Base):
    """In PyTorch the identity reads the rectified input: relu wrote into it."""

    def forward(self, x):
        x = self.conv(x)
        y = self.relu(x)
        return self.head(y * 0.5 + x)


class Square(_Base):
    def forward(self, x):
        x = self.conv(x)
        return self.head(x * x)


class PoolIndices(_Base):
    def __init__(self) -> None:
        super().__init__(pooled=True)
        self.pool = nn.MaxPool2d(2, return_indices=True)

    def forward(self, x):
        y, idx = self.pool(self.relu(self.conv(x)))
        return self.head(y)


class PoolIndicesUsed(PoolIndices):
    def forward(self, x):
        y, idx = self.pool(self.conv(x))
        return self.head(y + idx.float())


class ViewWrite(_Base):
    """An in-place write into a slice: changes x, which torch.fx cannot see."""

    def forward(self, x):
        x = self.conv(x)
        part = x[:, :2]
        part.relu_()
        return self.head(x)


class RandomInEval(_Base):
    def forward(self, x):
        return self.head(F.dropout(self.conv(x), 0.5))  # training=True: random even in eval


class DataCondition(_Base):
    def forward(self, x):
        x = self.conv(x)
        if x.sum() > 0:
            x = -x
        return self.head(x)


READ = [
    ReluStatement,
    ModuleStatement,
    AddStatement,
    TorchReluInPlace,
    PositionalInplace,
    SigmoidBranch,
    InPlaceOnBlockInput,
    Square,
    PoolIndices,
]
REFUSED = [ViewWrite, RandomInEval]


def _image(seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x[None].clone())[0]


class _Untouched:
    """Snapshot of a model: weights, buffers, modes, hooks; counts calls of its modules."""

    def __init__(self, model: nn.Module, monkeypatch) -> None:
        self.model = model
        self.state = {k: v.clone() for k, v in model.state_dict().items()}
        self.modes = [m.training for m in model.modules()]
        self.hooks = [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in model.modules()]
        self.calls = 0
        for module in model.modules():
            original = module.forward

            def counted(*args, _original=original, **kwargs):
                self.calls += bool(args) and isinstance(args[0], torch.Tensor)  # not a trace
                return _original(*args, **kwargs)

            monkeypatch.setattr(module, "forward", counted, raising=False)

    def check(self) -> None:
        assert self.calls == 0
        state = self.model.state_dict()
        assert state.keys() == self.state.keys()
        assert all(torch.equal(state[k], v) for k, v in self.state.items())
        assert [m.training for m in self.model.modules()] == self.modes
        hooks = [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in self.model.modules()]
        assert hooks == self.hooks


@pytest.mark.parametrize("cls", READ, ids=lambda c: c.__name__)
def test_read_as_the_model_runs(cls, monkeypatch):
    model = cls().eval()
    x = _image()
    expected = _reference(model, x)
    watch = _Untouched(model, monkeypatch)
    insp = Inspector(model, device="cpu")
    scores = insp.record(x).outputs[len(insp.steps) - 1][0]
    assert torch.allclose(scores, expected, atol=1e-5)
    # saliency from one class score: the score times its gradient, as autograd gives it
    out = insp.project(x, insp.layers[-1], 1, method="saliency")
    assert watch.calls == 0
    monkeypatch.undo()
    leaf = x[None].clone().requires_grad_(True)
    score = model(leaf)[0, 1]
    (grad,) = torch.autograd.grad(score, leaf)
    assert torch.allclose(out, (grad * score.detach())[0], atol=1e-5)
    watch.calls = 0  # the reference above called the model itself
    watch.check()


def test_product_of_two_tensors_has_no_rectifier_rule():
    insp = Inspector(Square().eval(), device="cpu")
    assert insp.steps[1].kind == "generic"
    with pytest.raises(UnsupportedModelError, match="'mul'"):
        insp.project(_image(), "fc", 0, method="deconvnet")
    assert insp.project(_image(), "fc", 0, method="saliency").abs().sum() > 0


def test_in_place_statements_are_steps():
    for cls in (ReluStatement, ModuleStatement, TorchReluInPlace):
        kinds = [s.kind for s in Inspector(cls().eval(), device="cpu").steps]
        assert kinds == ["conv", "relu", "reshape", "linear"], cls.__name__


def test_pool_indices_read_as_values_or_refused():
    insp = Inspector(PoolIndices().eval(), device="cpu")
    assert [s.kind for s in insp.steps][:3] == ["conv", "relu", "maxpool"]
    with pytest.raises(UnsupportedModelError, match="return_indices=True.*its indices"):
        Inspector(PoolIndicesUsed().eval(), device="cpu")


def test_size_the_model_cannot_run_is_refused():
    insp = Inspector(PoolIndices().eval(), device="cpu")
    with pytest.raises(ValueError, match="does not match|fails"):
        insp.predict(torch.randn(1, 12, 12))


@pytest.mark.parametrize("cls", REFUSED, ids=lambda c: c.__name__)
def test_misreading_is_refused_naming_the_step(cls, monkeypatch):
    model = cls().eval()
    watch = _Untouched(model, monkeypatch)
    insp = Inspector(model, device="cpu")
    random_state = torch.get_rng_state()
    with pytest.raises(UnsupportedModelError, match="step 'fc' \\(Linear\\).*up to 'conv'"):
        insp.predict(_image())
    assert torch.equal(torch.get_rng_state(), random_state)  # the probe's draws are its own
    with pytest.raises(UnsupportedModelError, match="step 'fc'"):  # the verdict is kept
        insp.run_batch(torch.randn(2, 1, 8, 8), ["fc"])
    watch.check()


def test_data_dependent_condition_is_refused():
    with pytest.raises(UnsupportedModelError, match="control flow depends on the data"):
        Inspector(DataCondition().eval(), device="cpu")


def test_probe_runs_once_per_shape_and_module_tree(monkeypatch):
    calls = []
    original = inspector_module.check_reading
    monkeypatch.setattr(
        inspector_module, "check_reading", lambda *a: calls.append(a[3]) or original(*a)
    )
    model = ReluStatement().eval()
    insp = Inspector(model, device="cpu")
    insp.predict(_image(1))
    insp.project(_image(2), "conv", 0)
    assert calls == [(1, 8, 8)]
    insp.predict(torch.randn(1, 8, 8))
    insp.run_batch(torch.randn(3, 1, 8, 8), ["fc"])
    assert calls == [(1, 8, 8)]
    with torch.no_grad():
        model.conv.weight.mul_(2)
    insp.predict(_image(1))
    assert calls == [(1, 8, 8)]  # new weights, same reading: no second copy of the model
    model.fc = torch.nn.Linear(model.fc.in_features, model.fc.out_features)
    insp.predict(_image(1))
    assert calls == [(1, 8, 8)] * 2  # a replaced module: read again, checked again


def test_global_hooks_never_run_on_the_copy():
    calls = []
    handle = torch.nn.modules.module.register_module_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.warns(UserWarning, match="global forward hook"):
            insp = Inspector(ReluStatement().eval(), device="cpu")
        insp.predict(_image())
    finally:
        handle.remove()
    assert calls == []


def test_changed_head_of_resnet18_is_read_again(monkeypatch):
    model = torchvision.models.resnet18().eval()
    x = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(0))
    insp = Inspector(model, device="cpu")
    assert insp.predict(x).shape == (1000,)
    torch.manual_seed(1)
    model.fc = nn.Linear(512, 10)
    expected = _reference(model, x)
    watch = _Untouched(model, monkeypatch)
    scores = insp.record(x).outputs[len(insp.steps) - 1][0]
    assert scores.shape == (10,) and torch.allclose(scores, expected, atol=1e-4)
    watch.check()
    model.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)  # a replaced conv, same shape
    monkeypatch.undo()
    expected = _reference(model, x)
    scores = insp.record(x).outputs[len(insp.steps) - 1][0]
    assert torch.allclose(scores, expected, atol=1e-4)
    assert insp.steps[0].module is model.conv1


def test_changed_modules_of_a_small_model():
    parts = {"conv": nn.Conv2d(1, 4, 3), "act": nn.ReLU(), "flat": nn.Flatten()}
    model = nn.Sequential(OrderedDict({**parts, "fc": nn.Linear(144, 3)})).eval()
    x = _image()
    insp = Inspector(model, device="cpu", keep=["act"])
    insp.predict(x)
    model.act = nn.GELU()  # no parameters: only the module tree tells
    assert torch.allclose(insp.record(x).outputs[3][0], _reference(model, x), atol=1e-5)
    assert insp.methods and "deconvnet" not in insp.methods
    model.fc = nn.Sequential(nn.Dropout(), nn.Linear(144, 7)).eval()  # fine-tuning: new steps
    assert torch.allclose(insp.predict(x), torch.softmax(_reference(model, x), -1), atol=1e-6)
    del model.act  # the kept layer is gone
    with pytest.raises(UnsupportedModelError, match="Build a new Inspector"):
        insp.predict(x)


def test_run_batch_sees_a_changed_head():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3)).eval()
    insp = Inspector(model, device="cpu")
    batch = torch.randn(2, 1, 8, 8)
    insp.run_batch(batch, ["3"])
    model[3] = nn.Linear(144, 5)
    out = insp.run_batch(batch, ["3"])["3"]
    with torch.no_grad():
        assert torch.allclose(out, model(batch), atol=1e-5)


class ClampsOwnWeights(_Base):
    """Writes into its own weights through .data at every call (weight clipping)."""

    def forward(self, x):
        self.conv.weight.data.clamp_(-0.01, 0.01)
        return self.head(self.conv(x))


def test_forward_writing_its_weights_is_refused_and_the_model_kept(monkeypatch):
    model = ClampsOwnWeights().eval()
    watch = _Untouched(model, monkeypatch)
    insp = Inspector(model, device="cpu")
    with pytest.raises(UnsupportedModelError, match="step 'conv' \\(Conv2d\\)"):
        insp.predict(_image())
    watch.check()  # the probe ran on a deep copy: the user's weights were not clipped
