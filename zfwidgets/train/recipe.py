"""The training recipe of Zeiler & Fergus §3, with each setting overridable.

Defaults follow the paper: SGD with momentum 0.9, learning rate 1e-2 lowered tenfold when the
validation accuracy stalls, weights drawn from N(0, 1e-2) and biases 0, per-pixel mean
subtraction, random shifts (and optional flips), dropout from the model, and after every step
each conv filter whose RMS exceeds 0.1 is scaled back to 0.1.

Data convention: ``train_set`` and ``val_set`` yield ``(pixels, label)`` with pixels in [0, 1]
(not yet mean-subtracted); :func:`train` subtracts the per-pixel mean of the training images
itself, after shifting, so that shifted-in borders are black like the image background.

Example (64 digits for one epoch, so that it is quick):
    >>> from zfwidgets.train import TrainConfig, train
    >>> from zfwidgets.train.data import demo_data, subset_evenly
    >>> from zfwidgets.zoo import SmallZFNet
    >>> train_set, val_set = demo_data()
    >>> few, some = subset_evenly(train_set, 64), subset_evenly(val_set, 100)
    >>> history = train(SmallZFNet(), few, some, TrainConfig(epochs=1), progress=False)
    >>> len(history), 0 <= history[-1]["val_acc"] <= 1
    (1, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from zfwidgets.core.checks import check_number, resolve_device

__all__ = [
    "History",
    "TrainConfig",
    "TrainContext",
    "TrainingDiverged",
    "evaluate",
    "paper_init",
    "pixel_mean",
    "renorm_conv_filters",
    "train",
    "train_briefly",
]

INITS = ("paper", "default")
# SGD moves each weight by about lr * gradient per batch: past 10 every run diverges at once,
# so a larger learning rate is a typo (1e30, 1e2 for 1e-2), refused before the first batch.
MAX_LR = 10.0


class TrainingDiverged(ValueError):
    """Raised when the training loss stops being finite: the weights are NaN from then on.

    Example:
        >>> raise TrainingDiverged("epoch 1, batch 3: the loss became nan")
        Traceback (most recent call last):
        ...
        zfwidgets.train.recipe.TrainingDiverged: epoch 1, batch 3: the loss became nan
    """


SCHEDULES = ("plateau", "milestones")


@dataclass
class TrainConfig:
    """Settings of :func:`train`; every default is the paper's (§3) unless said otherwise.

    Attributes:
        epochs: passes over the training set (the paper trained 70).
        batch_size: images per SGD step (paper: 128).
        lr: initial learning rate (paper: 1e-2).
        momentum: SGD momentum (paper: 0.9).
        weight_decay: L2 penalty (the paper does not give one; default 0).
        schedule: ``"plateau"`` lowers the rate by ``lr_factor`` when the validation accuracy
            (or, without a validation set, the training loss) has not improved for
            ``patience`` epochs, as the paper's "annealed manually when validation error
            plateaus"; ``"milestones"`` lowers it after each epoch listed in ``milestones``,
            which is the reproducible choice.
        milestones: epochs after which the rate drops (``schedule="milestones"``).
        lr_factor: the drop (paper: 0.1).
        patience: epochs without improvement before a drop (``schedule="plateau"``).
        init: ``"paper"`` draws every conv/linear weight from N(0, 0.01) and zeroes biases;
            ``"default"`` keeps the model's own initialisation (PyTorch's Kaiming-uniform
            with a=sqrt(5) for Conv2d and Linear, biases uniform in +-1/sqrt(fan_in)).
            Measured: with ``"paper"`` the small demo network stayed at chance (loss 2.303)
            for 4 epochs on 1,000 digits, while ``"default"`` trains at once; the ``zfwidgets
            train`` command therefore defaults to ``"default"``.
        renorm_radius: after every step, conv filters whose RMS exceeds this are scaled back
            to it (paper: 0.1); ``None`` turns renormalisation off (Fig. 6a's comparison).
        mean: ``"auto"`` subtracts the per-pixel mean of the training images, a tensor
            (C, H, W) subtracts that mean, ``None`` subtracts nothing.
        shift: random translations of up to this many pixels in x and y (0 turns them off);
            the uncovered border is filled with 0 (black) before the mean is subtracted.
        crop: side of random training crops (centre crops for evaluation) when the stored
            images are larger than the model's input, as the paper's 224 crops of 256 images;
            ``None`` uses the whole image.
        flip: random horizontal flips (paper: yes for ImageNet; off by default because the
            bundled digits are not mirror-symmetric).
        seed: seeds the generator for shuffling and augmentation. Initialisation and dropout
            draw from torch's global generator: call ``torch.manual_seed`` before building the
            model for a fully reproducible run.
        eval_batch_size: images per forward pass when measuring accuracy.
    """

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "plateau"
    milestones: Sequence[int] = ()
    lr_factor: float = 0.1
    patience: int = 3
    init: str = "paper"
    renorm_radius: float | None = 0.1
    mean: str | Tensor | None = "auto"
    shift: int = 2
    crop: int | None = None
    flip: bool = False
    seed: int | None = 0
    eval_batch_size: int = 500

    def __post_init__(self) -> None:
        def positive_int(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int; got {value!r}")

        for name in ("epochs", "batch_size", "eval_batch_size"):
            positive_int(name)
        for name, high in (("lr", MAX_LR), ("lr_factor", 1.0), ("weight_decay", 1.0)):
            low_open = name != "weight_decay"  # no decay is a setting; no step size is not
            check_number(f"TrainConfig.{name}", getattr(self, name), 0, high, low_open)
        if not 0 <= self.momentum < 1:
            raise ValueError(f"TrainConfig.momentum must be in [0, 1); got {self.momentum!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"TrainConfig.schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}"
            )
        self.milestones = tuple(int(m) for m in self.milestones)
        if self.init not in INITS:
            raise ValueError(
                f"TrainConfig.init must be one of {', '.join(INITS)}; got {self.init!r}"
            )
        if self.renorm_radius is not None and not self.renorm_radius > 0:
            raise ValueError(
                f"TrainConfig.renorm_radius must be positive or None; got {self.renorm_radius!r}"
            )
        if not (self.mean is None or isinstance(self.mean, Tensor) or self.mean == "auto"):
            raise ValueError(
                f"TrainConfig.mean must be 'auto', a tensor or None; got {self.mean!r}"
            )
        if isinstance(self.shift, bool) or not isinstance(self.shift, int) or self.shift < 0:
            raise ValueError(f"TrainConfig.shift must be an int >= 0; got {self.shift!r}")
        if self.crop is not None and (not isinstance(self.crop, int) or self.crop < 1):
            raise ValueError(f"TrainConfig.crop must be a positive int or None; got {self.crop!r}")

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON-friendly values (a mean tensor is reported by its shape)."""
        d = asdict(self)
        if isinstance(self.mean, Tensor):
            d["mean"] = f"tensor{tuple(self.mean.shape)}"
        d["milestones"] = list(self.milestones)
        return d


@dataclass
class History:
    """Per-epoch metrics of a training run, a list of rows (one dict per epoch).

    Each row has ``epoch``, ``loss`` (mean training loss), ``train_acc`` (on the augmented
    training batches, in training mode), ``val_acc`` (``None`` without a validation set),
    ``lr`` (the rate used during the epoch) and ``seconds`` (wall time of the epoch).
    ``mean`` is the per-pixel mean that was subtracted (``None`` if none).
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    mean: Tensor | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]

    def __iter__(self):
        return iter(self.rows)

    def column(self, key: str) -> list:
        """One metric over the epochs, e.g. ``history.column("val_acc")``."""
        return [row[key] for row in self.rows]


@dataclass
class TrainContext:
    """What :func:`train` hands to callbacks that define ``on_train_begin(context)``.

    A callback needs it to save or restore the full training state (the snapshot recorder
    does, for resuming); plain ``cb(epoch, model, metrics)`` callbacks can ignore it.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    train_set: Any
    mean: Tensor | None
    generator: torch.Generator
    start_epoch: int
    lr_state: dict[str, float]
    history: list[dict[str, Any]]

    def training_state(self, epoch: int) -> dict[str, Any]:
        """Everything a resumed run needs after ``epoch`` (tensors and plain values only)."""
        state: dict[str, Any] = {
            "epoch": epoch,
            "optimizer": self.optimizer.state_dict(),
            "lr_state": dict(self.lr_state),
            "rng_torch": torch.get_rng_state(),
            "rng_data": self.generator.get_state(),
        }
        if torch.cuda.is_available():
            state["rng_cuda"] = torch.cuda.get_rng_state_all()
        return state


def renorm_conv_filters(model: nn.Module, radius: float) -> None:
    """Scale every conv filter whose RMS exceeds ``radius`` back to RMS ``radius`` (paper §3).

    A filter is one output channel's weights (in_channels x k x k); its RMS is the square root
    of the mean of its squared weights. Filters at or below the radius are left exactly as they
    are. The paper found this crucial for layer 1, where a few filters otherwise grow until
    they dominate (Fig. 6a). Changes ``model`` in place.

    Example:
        >>> conv = nn.Conv2d(1, 2, 3)
        >>> renorm_conv_filters(conv, 0.1)
        >>> bool(conv.weight.flatten(1).pow(2).mean(1).sqrt().max() <= 0.1 + 1e-7)
        True
    """
    if not radius > 0:
        raise ValueError(f"radius must be positive; got {radius!r}")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                w = module.weight.view(module.out_channels, -1)
                rms = w.pow(2).mean(dim=1).sqrt()
                scale = (radius / rms.clamp_min(1e-12)).clamp(max=1.0)
                w.mul_(scale[:, None])


def paper_init(model: nn.Module, std: float = 1e-2) -> None:
    """The paper's initialisation: conv and linear weights from N(0, std), biases 0."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                module.weight.normal_(0.0, std)
                if module.bias is not None:
                    module.bias.zero_()


def _items(data, indices: Tensor) -> tuple[Tensor, Tensor]:
    """A batch ``(pixels, labels)`` of the given indices, fast for in-memory data sets."""
    images = getattr(data, "images", None)
    labels = getattr(data, "labels", None)
    if isinstance(images, Tensor) and isinstance(labels, Tensor):
        return images[indices], labels[indices]
    items = [data[int(i)] for i in indices]
    return (
        torch.stack([item[0] for item in items]),
        torch.as_tensor([int(item[1]) for item in items], dtype=torch.long),
    )


def pixel_mean(data, batch_size: int = 500) -> Tensor:
    """Per-pixel mean (C, H, W) of a data set's images, accumulated in float64."""
    total, count = None, 0
    for start in range(0, len(data), batch_size):
        x, _ = _items(data, torch.arange(start, min(start + batch_size, len(data))))
        s = x.double().sum(0)
        total = s if total is None else total + s
        count += len(x)
    if total is None:
        raise ValueError("the training set is empty")
    return (total / count).float()


def random_shift(pixels: Tensor, max_shift: int, gen: torch.Generator) -> Tensor:
    """Translate each image by up to ``max_shift`` pixels in x and y, filling with 0."""
    n, _, h, w = pixels.shape
    if max_shift == 0:
        return pixels
    padded = nn.functional.pad(pixels, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=gen)
    out = torch.empty_like(pixels)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, dy : dy + h, dx : dx + w]
    return out


def _random_crop(x: Tensor, size: int, gen: torch.Generator) -> Tensor:
    n, _, h, w = x.shape
    ys = torch.randint(0, h - size + 1, (n,), generator=gen).tolist()
    xs = torch.randint(0, w - size + 1, (n,), generator=gen).tolist()
    corners = enumerate(zip(ys, xs, strict=True))
    return torch.stack([x[i, :, y : y + size, c : c + size] for i, (y, c) in corners])


def center_crop(x: Tensor, size: int | None) -> Tensor:
    """The central ``size`` x ``size`` square of images (..., H, W); ``None`` keeps them."""
    if size is None:
        return x
    h, w = x.shape[-2:]
    if size > min(h, w):
        raise ValueError(f"crop {size} is larger than the images ({h}x{w})")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def _augment(x: Tensor, mean: Tensor | None, config: TrainConfig, gen: torch.Generator) -> Tensor:
    # Order matters for reproducibility and for the border: shift raw pixels (black fill),
    # subtract the mean at full size, then crop, then flip.
    x = random_shift(x, config.shift, gen)
    if mean is not None:
        x = x - mean
    if config.crop is not None:
        x = _random_crop(x, config.crop, gen)
    if config.flip:
        flip = torch.rand(len(x), generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data,
    mean: Tensor | None = None,
    crop: int | None = None,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
) -> float:
    """Fraction of ``data`` (pixels in [0, 1]) classified correctly, in eval mode.

    Images are mean-subtracted and centre-cropped as in training. The model's train/eval
    mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    correct = 0
    try:
        for start in range(0, len(data), batch_size):
            x, y = _items(data, torch.arange(start, min(start + batch_size, len(data))))
            if mean is not None:
                x = x - mean
            x = center_crop(x, crop)
            logits = model(x.to(device))
            correct += (logits.argmax(1).cpu() == y).sum().item()
    finally:
        model.train(was_training)
    return correct / len(data)


def _lr_after(config: TrainConfig, state: dict[str, float], epoch: int, metric: float) -> None:
    """Update the learning-rate state after ``epoch`` (``metric``: higher is better)."""
    if config.schedule == "milestones":
        # Repeated multiplication, as torch's MultiStepLR does, so the rates match bit for bit.
        if epoch in config.milestones:
            state["lr"] *= config.lr_factor
        return
    if metric > state["best"] + 1e-4:
        state["best"], state["bad_epochs"] = metric, 0.0
        return
    state["bad_epochs"] += 1
    if state["bad_epochs"] > config.patience:
        state["lr"] *= config.lr_factor
        state["bad_epochs"] = 0.0


Callback = Callable[[int, nn.Module, dict], Any]


def train(
    model: nn.Module,
    train_set,
    val_set=None,
    config: TrainConfig | None = None,
    callbacks: Sequence[Callback] = (),
    device: str | torch.device = "auto",
    progress: bool = True,
    resume=None,
) -> History:
    """Train ``model`` in place with the paper's recipe; returns the per-epoch history.

    Args:
        model: a classifier ``(N, C, H, W) -> logits``. It is trained in place and left in
            eval mode on ``device``.
        train_set: a Dataset of ``(pixels in [0, 1], label)``; data sets with ``images`` and
            ``labels`` tensors are indexed directly (fast).
        val_set: the same kind of data set for the validation accuracy (and the plateau
            schedule), or ``None``.
        config: the recipe; default :class:`TrainConfig()`.
        callbacks: called as ``cb(epoch, model, metrics)`` after every epoch, with the model
            in eval mode. A callback with an ``on_train_begin(context)`` method gets a
            :class:`TrainContext` first (the snapshot recorder uses it to save resumable state).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
        progress: tqdm progress bars.
        resume: a run directory written by a :class:`~zfwidgets.train.SnapshotRecorder`, or a
            loaded :class:`~zfwidgets.train.Run`: continue after its last snapshot that kept
            training state (weights, optimizer, learning rate, random generators and history
            are restored; ``init`` is not applied again).

    Returns:
        A :class:`History` of every epoch (including the resumed run's earlier ones).
    """
    config = _checked_config(model, train_set, config)
    dev = resolve_device(device)
    mean = _training_mean(config, train_set)
    context = _begin(model, train_set, config, mean, dev, resume)
    for cb in callbacks:
        if hasattr(cb, "on_train_begin"):
            cb.on_train_begin(context)

    mean_dev = None if mean is None else mean.to(dev)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(context.start_epoch, config.epochs + 1):
        t0 = time.perf_counter()
        lr = context.lr_state["lr"]
        loss, train_acc = _train_epoch(context, epoch, loss_fn, dev, progress)
        val_acc = None
        if val_set is not None:
            val_acc = evaluate(model, val_set, mean_dev, config.crop, config.eval_batch_size, dev)
        model.eval()
        row = {
            "epoch": epoch,
            "loss": loss,
            "train_acc": train_acc,
            "val_acc": val_acc,
            "lr": lr,
            "seconds": time.perf_counter() - t0,
        }
        context.history.append(row)
        _lr_after(config, context.lr_state, epoch, val_acc if val_acc is not None else -loss)
        if progress:
            _print_row(row)
        for cb in callbacks:
            cb(epoch, model, dict(row))
    model.eval()
    return History(context.history, mean)


def train_briefly(
    build: Callable[[], nn.Module],
    train_set,
    epochs: int = 1,
    seed: int = 0,
    mean: str | Tensor | None = "auto",
    device: str | torch.device = "cpu",
    progress: bool = False,
    **recipe,
) -> nn.Module:
    """A model from ``build()`` trained for ``epochs`` with the paper's recipe, all seeded.

    ``torch.manual_seed(seed)`` is set before ``build()``, so initialisation, dropout, shuffling
    and augmentation repeat exactly: two calls give the same weights. ``mean`` is
    :attr:`TrainConfig.mean`; ``recipe`` sets other :class:`TrainConfig` fields (such as
    ``batch_size`` or ``init``). Used by Fig. 6 (:mod:`zfwidgets.figures`), which trains two
    architectures side by side for a comparison.

    Example:
        >>> from zfwidgets.train.data import demo_data, subset_evenly
        >>> from zfwidgets.zoo import SmallZFNet
        >>> few = subset_evenly(demo_data()[0], 64)
        >>> model = train_briefly(SmallZFNet, few, epochs=1)
        >>> model.training
        False

    Returns:
        The trained model, in eval mode on ``device``.
    """
    torch.manual_seed(seed)
    model = build()
    config = TrainConfig(epochs=epochs, seed=seed, mean=mean, **recipe)
    train(model, train_set, config=config, device=device, progress=progress)
    return model.eval()


def _checked_config(model: nn.Module, train_set, config: TrainConfig | None) -> TrainConfig:
    """The config to use (default :class:`TrainConfig()`), after refusing bad arguments."""
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig; got {type(config).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if len(train_set) == 0:
        raise ValueError("the training set is empty")
    return config


def _training_mean(config: TrainConfig, train_set) -> Tensor | None:
    """The per-pixel mean training subtracts: the config's tensor, the data's, or none."""
    if isinstance(config.mean, Tensor):
        return config.mean.float()
    if config.mean == "auto":
        return pixel_mean(train_set)
    return None


def _begin(
    model: nn.Module, train_set, config: TrainConfig, mean: Tensor | None, dev, resume
) -> TrainContext:
    """Optimizer, data generator and learning-rate state: fresh, or restored from ``resume``.

    A fresh start initialises the model (``config.init``) and puts its filters inside the
    renormalisation ball; a resumed one does neither.
    """
    gen = torch.Generator()
    if config.seed is not None:
        gen.manual_seed(config.seed)
    lr_state = {"lr": float(config.lr), "best": -math.inf, "bad_epochs": 0.0}
    model.to(dev)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    context = TrainContext(model, optimizer, config, train_set, mean, gen, 1, lr_state, [])
    if resume is not None:
        _restore(context, resume, dev)
        return context
    if config.init == "paper":
        paper_init(model)
    if config.renorm_radius is not None:
        renorm_conv_filters(model, config.renorm_radius)  # start inside the ball
    return context


def _restore(context: TrainContext, resume, dev) -> None:
    """Load weights, optimizer, learning rate, random generators and history from a run."""
    from zfwidgets.train.snapshots import load_run  # snapshots imports this module

    run = resume if hasattr(resume, "training_state") else load_run(resume)
    epoch, weights, state = run.training_state()
    context.model.load_state_dict(weights)
    context.model.to(dev)
    context.optimizer.load_state_dict(state["optimizer"])
    context.lr_state.update({k: float(v) for k, v in state["lr_state"].items()})
    torch.set_rng_state(state["rng_torch"])
    context.generator.set_state(state["rng_data"])
    if "rng_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    context.history = [dict(r) for r in run.history if r["epoch"] <= epoch]
    context.start_epoch = epoch + 1


def _train_epoch(
    context: TrainContext, epoch: int, loss_fn: nn.Module, dev, progress: bool
) -> tuple[float, float]:
    """One pass over the shuffled training set; returns (mean loss, training accuracy)."""
    from tqdm.auto import tqdm  # only training needs it

    model, optimizer, config = context.model, context.optimizer, context.config
    for group in optimizer.param_groups:
        group["lr"] = context.lr_state["lr"]
    model.train()
    n = len(context.train_set)
    order = torch.randperm(n, generator=context.generator)
    total_loss, correct = 0.0, 0
    bar = tqdm(total=n, desc=f"epoch {epoch}/{config.epochs}", unit="img", disable=not progress)
    try:
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            x, y = _items(context.train_set, idx)
            x = _augment(x, context.mean, config, context.generator).to(dev)
            y = y.to(dev)
            logits = model(x)
            loss = loss_fn(logits, y)
            if not torch.isfinite(loss):  # one NaN step makes every weight NaN: stop here
                raise TrainingDiverged(
                    f"epoch {epoch}, batch {start // config.batch_size + 1}: the loss became "
                    f"{loss.item()} (lr {context.lr_state['lr']:g}); lower the learning rate "
                    "(TrainConfig.lr, --lr) and check the data for NaN pixels"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if config.renorm_radius is not None:
                renorm_conv_filters(model, config.renorm_radius)
            total_loss += loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
            bar.update(len(idx))
            bar.set_postfix(loss=f"{total_loss / min(start + len(idx), n):.4f}")
    finally:
        bar.close()
    return total_loss / n, correct / n


def _print_row(row: dict[str, Any]) -> None:
    """One line per epoch under the progress bars."""
    from tqdm.auto import tqdm

    va = "-" if row["val_acc"] is None else f"{row['val_acc']:.4f}"
    tqdm.write(
        f"epoch {row['epoch']:3d}  lr {row['lr']:.0e}  loss {row['loss']:.4f}  "
        f"train acc {row['train_acc']:.4f}  val acc {va}  ({row['seconds']:.1f} s)"
    )
