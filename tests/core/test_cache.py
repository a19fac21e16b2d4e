"""The per-image record cache: hits skip the forward pass, eviction keeps to the budget,
and changed weights never serve a stale record."""

from __future__ import annotations

import pytest
import torch
from models import zf_like

from zfwidgets import Inspector


class _CountingConv:
    """Counts 2-D convolutions on real data run in the process (forward passes)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = torch.nn.functional.conv2d

        def counted(x, *args, **kwargs):
            self.calls += x.device.type != "meta"  # shape checks run on meta tensors
            return original(x, *args, **kwargs)

        monkeypatch.setattr(torch.nn.functional, "conv2d", counted)


def _image(seed):
    return torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_second_projection_on_same_image_runs_no_forward(monkeypatch):
    insp = Inspector(zf_like(), device="cpu")
    x = _image(0)
    insp.verify(tuple(x.shape))  # the once-per-shape probe check (two forward passes) first
    counter = _CountingConv(monkeypatch)
    insp.project(x, "conv2", 1)
    assert counter.calls == 2  # one forward pass through both convs, stopping at conv2
    insp.activations(x.clone(), "fc4")  # same content, different tensor object; deeper: to the end
    insp.project(x, "conv1", 0, position=None)  # conv1's maps join the record: one more pass
    after_first = counter.calls
    assert after_first == 6
    for method in ("deconvnet", "guided", "saliency"):
        for channel in range(3):
            insp.project(x, "conv2", channel, method=method)
            insp.project(x, "conv1", channel, position=None, method=method)
    insp.predict(x)
    assert counter.calls == after_first
    info = insp.cache_info()
    assert info.misses == 1 and info.forwards == 3 and info.hits == 21
    insp.project(_image(1), "conv1", 0)  # a new image projected from conv1: conv2 never runs
    assert counter.calls == after_first + 1


def test_eviction_keeps_bytes_under_budget():
    insp = Inspector(zf_like(), device="cpu")
    insp.project(_image(0), "conv2", 0)
    one = insp.cache_info().bytes  # what one projected image's record holds
    insp = Inspector(zf_like(), device="cpu", cache_bytes=3 * one + one // 2)
    for seed in range(10):
        insp.project(_image(seed), "conv2", 0)
        assert insp.cache_info().bytes <= 3 * one + one // 2
    info = insp.cache_info()
    assert info.entries == 3 and info.misses == 10
    insp.project(_image(9), "conv2", 0)  # most recent: still there
    assert insp.cache_info().misses == 10
    insp.project(_image(0), "conv2", 0)  # least recent: evicted long ago
    assert insp.cache_info().misses == 11


def test_zero_budget_keeps_nothing_but_still_works():
    insp = Inspector(zf_like(), device="cpu", cache_bytes=0)
    a = insp.project(_image(0), "conv2", 0)
    b = insp.project(_image(0), "conv2", 0)
    assert torch.equal(a, b)
    assert insp.cache_info().bytes == 0 and insp.cache_info().misses == 2


def test_changed_weight_invalidates():
    model = zf_like()
    insp = Inspector(model, device="cpu")
    x = _image(1)
    before = insp.project(x, "conv2", 2)
    act_before = insp.activations(x, "conv2")
    with torch.no_grad():
        model[0].weight.mul_(1.5)  # in place, as an optimiser step would
    after = insp.project(x, "conv2", 2)
    assert insp.cache_info().misses == 2
    assert not torch.equal(before, after)
    assert not torch.equal(act_before, insp.activations(x, "conv2"))
    fresh = Inspector(model, device="cpu").project(x, "conv2", 2)
    assert torch.equal(after, fresh)


def test_load_state_dict_invalidates():
    model = zf_like(seed=0)
    insp = Inspector(model, device="cpu")
    x = _image(2)
    first = insp.activations(x, "conv1")
    model.load_state_dict(zf_like(seed=5).state_dict())
    second = insp.activations(x, "conv1")
    assert not torch.equal(first, second)
    assert torch.equal(second, Inspector(zf_like(seed=5), device="cpu").activations(x, "conv1"))


def test_layer_outside_the_kept_set_is_added_once():
    insp = Inspector(zf_like(), device="cpu")
    x = _image(3)
    insp.project(x, "conv2", 0)
    insp.activations(x, "2")  # a max-pool output, not kept by default
    insp.activations(x, "2")
    info = insp.cache_info()
    assert info.forwards == 2 and info.misses == 1


def test_concurrent_use_from_threads_gives_the_same_pictures():
    """Widgets mine in a background thread while the kernel thread browses."""
    import threading

    insp = Inspector(zf_like(), device="cpu", cache_bytes=3 * 2**20)
    images = [_image(s) for s in range(12)]
    expected = [Inspector(zf_like(), device="cpu").project(x, "conv2", 1) for x in images]
    errors, results = [], {}

    def work(offset):
        try:
            for k in range(24):
                i = (k + offset) % len(images)
                results[(offset, k)] = (i, insp.project(images[i], "conv2", 1))
        except Exception as err:  # surfaced by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(o,)) for o in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, picture in results.values():
        assert torch.equal(picture, expected[i])


def test_record_many_is_one_batched_pass_with_the_same_records(monkeypatch):
    images = [_image(s) for s in range(5)]
    one_by_one = Inspector(zf_like(), device="cpu")
    expected = [one_by_one.record(x, ["conv2"]) for x in images]
    insp = Inspector(zf_like(), device="cpu")
    insp.record(images[1], ["conv2"])  # one image already cached
    counter = _CountingConv(monkeypatch)
    records = insp.record_many(images, ["conv2"])
    assert counter.calls == 2  # the four missing images went through both convs once, together
    for got, want in zip(records, expected, strict=True):
        assert got.input_shapes == want.input_shapes
        for group in ("outputs", "switches", "masks", "saved"):
            a, b = getattr(got, group), getattr(want, group)
            assert a.keys() == b.keys(), group
            for i in a:
                torch.testing.assert_close(a[i], b[i], rtol=1e-5, atol=1e-6)
    assert insp.record_many(images, ["conv2"])[3] is records[3]  # now all served from cache
    assert counter.calls == 2
    info = insp.cache_info()
    assert info.hits == 6 and info.misses == 5
    with pytest.raises(ValueError, match="must share one shape"):
        insp.record_many([images[0], torch.zeros(3, 40, 40)])


def _torch_version(model):
    """The reference: every parameter and buffer as torch's own iterators list them."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sorted((t.data_ptr(), t._version) for t in tensors)


def test_parameter_version_sees_every_tensor_torch_lists():
    from zfwidgets.core.cache import parameter_version

    shared = torch.nn.Conv2d(3, 4, 3)
    model = torch.nn.Sequential(shared, torch.nn.BatchNorm2d(4), torch.nn.ReLU(), shared)
    model.register_module("empty", None)  # an empty slot in the module tree
    model[1].register_buffer("nothing", None)
    stamps = sorted((ptr, version) for ptr, version, *_ in set(parameter_version(model)))
    assert stamps == sorted(set(_torch_version(model)))


def test_parameter_version_changes_on_replacement_buffer_update_and_step():
    from zfwidgets.core.cache import parameter_version

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    seen = [parameter_version(model)]
    model[0].bias = torch.nn.Parameter(torch.zeros(4))  # replaced
    seen.append(parameter_version(model))
    model.train()(torch.randn(2, 3, 8, 8))  # batch norm updates its running stats in place
    seen.append(parameter_version(model))
    with torch.no_grad():
        model[0].weight.add_(1)
    seen.append(parameter_version(model))
    assert len(set(seen)) == len(seen)
    assert parameter_version(model) == seen[-1]  # and it is stable when nothing changes


def test_image_key_tells_apart_shapes_and_single_values():
    from zfwidgets.core.cache import image_key

    x = _image(3)
    y = x.clone()
    y[2, 31, 31] = torch.nextafter(y[2, 31, 31], torch.tensor(10.0))
    assert image_key(x) == image_key(x.clone())
    assert image_key(x) != image_key(y)
    assert image_key(x) != image_key(x.reshape(3, 16, 64))
    assert image_key(x) == image_key(x.double())  # keyed on the float32 values used


def _weight_edits():
    """Every route a user has to change weights after the inspector answered once."""

    def optimizer_step(m):
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        m(torch.randn(2, *INPUT)).sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def load_state_dict(m):
        m.load_state_dict({k: v * 1.5 for k, v in m.state_dict().items()})

    def in_place(m):
        with torch.no_grad():
            m[0].weight.mul_(-1)

    def data_mul(m):
        m[0].weight.data.mul_(2)

    def data_copy(m):
        m[0].weight.data.copy_(torch.randn_like(m[0].weight))

    def data_assign(m):
        m[0].weight.data = torch.randn_like(m[0].weight)

    def buffer_data(m):
        m[1].running_var.data.fill_(4.0)

    return [
        optimizer_step,
        load_state_dict,
        in_place,
        data_mul,
        data_copy,
        data_assign,
        buffer_data,
    ]


INPUT = (3, 12, 12)


@pytest.mark.parametrize("edit", _weight_edits(), ids=lambda f: f.__name__)
def test_every_route_of_changing_weights_is_seen(edit):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(100, 3),
    ).eval()
    insp = Inspector(model, device="cpu")
    x = torch.randn(*INPUT)
    before = insp.project(x, "0", 1).clone(), insp.predict(x).clone()
    edit(model)
    model.eval()
    fresh = Inspector(model, device="cpu")
    after = insp.project(x, "0", 1), insp.predict(x)
    assert torch.equal(after[0], fresh.project(x, "0", 1))
    assert torch.equal(after[1], fresh.predict(x))
    assert not torch.equal(before[1], after[1]), "the edit must change the answer"


def test_clear_cache_rereads_weights_after_an_unseen_single_value_write():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten())
    insp = Inspector(model, device="cpu")
    x = torch.randn(1, 8, 8)
    insp.predict(x)
    model[0].bias.data[1] += 3.0  # one value through .data: no counter sees it
    insp.clear_cache()
    assert torch.equal(insp.predict(x), Inspector(model, device="cpu").predict(x))
