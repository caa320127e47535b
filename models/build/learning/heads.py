"""Heads on the fixed 128-d embeddings and the four similarity losses, in numpy with analytic gradients.

A head maps a batch of unit embeddings X (B, D) to unit embeddings Y (B, D): Y = normalise(h(X)).
Two heads, both the identity map at initialisation, so training starts from raw cosine:

- `LinearHead`: h(X) = X W^T + b, W = I, b = 0.
- `ResidualMlpHead`: h(X) = X + relu(X W1^T + b1) W2^T + b2, with W2 = 0 and b2 = 0 (W1 small random).

Every loss takes Y and the integer labels of the batch and returns (loss, dL/dY, grads of its own
parameters); `train_head` chains dL/dY through the normalisation and the head and takes Adam steps.
Numpy rather than a deep-learning framework so that the same code is trained by `make learn` and unit
tested by `make test` (the test venv has numpy only); the tests check every gradient by finite
differences. The shipped form of a head, if one ships, is a TFLite file exported in the build venv
(models/build/learning/export.py) whose output the tests compare with `Head.apply`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from appliance.evaluation import metrics

Params = dict[str, np.ndarray]


# --------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------


def normalise(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of h scaled to unit length, and the lengths (B, 1) for the backward pass."""
    norm = np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12)
    return h / norm, norm


def normalise_backward(y: np.ndarray, norm: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dL/dh from dL/dy for y = h / ||h||: the component along y is removed, then scaled by 1/||h||."""
    return (dy - y * np.sum(y * dy, axis=1, keepdims=True)) / norm


@dataclass
class LinearHead:
    """Y = normalise(X W^T + b); W starts at the identity, b at zero."""

    params: Params

    kind = "linear"

    @classmethod
    def identity(cls, dim: int, rng: np.random.Generator | None = None) -> LinearHead:
        """The head that leaves every embedding as it is."""
        return cls({"W": np.eye(dim), "b": np.zeros(dim)})

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        """Y (B, D) unit rows, and what `backward` needs."""
        h = x @ self.params["W"].T + self.params["b"]
        y, norm = normalise(h)
        return y, (x, y, norm)

    def backward(self, cache: tuple, dy: np.ndarray) -> Params:
        """Gradients of the loss with respect to W and b, given dL/dY."""
        x, y, norm = cache
        dh = normalise_backward(y, norm, dy)
        return {"W": dh.T @ x, "b": dh.sum(axis=0)}

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The head's output for embeddings x (N, D), float32 unit rows."""
        return self.forward(np.asarray(x, dtype=np.float64))[0].astype(np.float32)


@dataclass
class ResidualMlpHead:
    """Y = normalise(X + relu(X W1^T + b1) W2^T + b2); W2 = 0 and b2 = 0 at first: the identity."""

    params: Params

    kind = "mlp"

    @classmethod
    def identity(cls, dim: int, rng: np.random.Generator | None = None, hidden: int = 256) -> ResidualMlpHead:
        """The identity head with a He-initialised first layer (W2 = 0 keeps the output equal to X)."""
        rng = rng or np.random.default_rng(0)
        return cls(
            {
                "W1": rng.normal(0.0, np.sqrt(2.0 / dim), (hidden, dim)),
                "b1": np.zeros(hidden),
                "W2": np.zeros((dim, hidden)),
                "b2": np.zeros(dim),
            }
        )

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        """Y (B, D) unit rows, and what `backward` needs."""
        p = self.params
        pre = x @ p["W1"].T + p["b1"]
        hidden = np.maximum(pre, 0.0)
        h = x + hidden @ p["W2"].T + p["b2"]
        y, norm = normalise(h)
        return y, (x, pre, hidden, y, norm)

    def backward(self, cache: tuple, dy: np.ndarray) -> Params:
        """Gradients of the loss with respect to W1, b1, W2, b2, given dL/dY."""
        x, pre, hidden, y, norm = cache
        dh = normalise_backward(y, norm, dy)
        dhidden = (dh @ self.params["W2"]) * (pre > 0)
        return {"W1": dhidden.T @ x, "b1": dhidden.sum(axis=0), "W2": dh.T @ hidden, "b2": dh.sum(axis=0)}

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The head's output for embeddings x (N, D), float32 unit rows."""
        return self.forward(np.asarray(x, dtype=np.float64))[0].astype(np.float32)


Head = LinearHead | ResidualMlpHead
HEADS: dict[str, type[LinearHead] | type[ResidualMlpHead]] = {"linear": LinearHead, "mlp": ResidualMlpHead}


# --------------------------------------------------------------------------------------------
# Losses: each returns (loss, dL/dY, grads of the loss's own parameters)
# --------------------------------------------------------------------------------------------


def _pair_masks(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, B) masks of same-label pairs (diagonal excluded) and different-label pairs."""
    same = labels[:, None] == labels[None, :]
    pos = same & ~np.eye(labels.size, dtype=bool)
    return pos, ~same


def _grad_from_sqdist(y: np.ndarray, d_sq: np.ndarray) -> np.ndarray:
    """dL/dY from dL/dD2, where D2 = 2 - 2 Y Y^T (squared distances of unit rows)."""
    d_gram = -2.0 * d_sq
    return (d_gram + d_gram.T) @ y


@dataclass
class ContrastiveLoss:
    """Siamese contrastive loss (Hadsell, Chopra, LeCun 2006) over every pair in the batch.

    L = 1/2 mean_same d^2 + 1/2 mean_diff max(0, margin - d)^2, d the Euclidean distance of unit
    vectors (0..2); the two means weigh the few same-person pairs as much as the many others.
    """

    margin: float = 0.7
    params: Params = field(default_factory=dict)

    def __call__(self, y: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray, Params]:
        pos, neg = _pair_masks(labels)
        d_sq = np.maximum(2.0 - 2.0 * (y @ y.T), 0.0)
        d = np.sqrt(d_sq + 1e-12)
        n_pos, n_neg = max(pos.sum(), 1), max(neg.sum(), 1)
        hinge = np.maximum(self.margin - d, 0.0)
        loss = 0.5 * (d_sq[pos].sum() / n_pos) + 0.5 * ((hinge[neg] ** 2).sum() / n_neg)
        g = np.zeros_like(d_sq)
        g[pos] = 0.5 / n_pos
        # d/dD2 of max(0, m - d)^2 = -(m - d) / d
        g[neg] = 0.5 / n_neg * (-hinge[neg] / d[neg])
        return float(loss), _grad_from_sqdist(y, g), {}


@dataclass
class TripletLoss:
    """FaceNet's triplet loss (Schroff et al. 2015) on squared distances, with batch-hard mining.

    For each anchor with a positive in the batch: max(0, d2(a, hardest p) - d2(a, hardest n) + margin),
    averaged over anchors (Hermans et al. 2017's batch-hard variant of FaceNet's online mining).
    """

    margin: float = 0.2
    params: Params = field(default_factory=dict)

    def __call__(self, y: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray, Params]:
        pos, neg = _pair_masks(labels)
        d_sq = np.maximum(2.0 - 2.0 * (y @ y.T), 0.0)
        anchors = np.flatnonzero(pos.any(axis=1) & neg.any(axis=1))
        g = np.zeros_like(d_sq)
        if anchors.size == 0:
            return 0.0, np.zeros_like(y), {}
        hard_p = np.argmax(np.where(pos, d_sq, -np.inf), axis=1)[anchors]
        hard_n = np.argmin(np.where(neg, d_sq, np.inf), axis=1)[anchors]
        viol = d_sq[anchors, hard_p] - d_sq[anchors, hard_n] + self.margin
        active = viol > 0
        loss = float(np.maximum(viol, 0.0).sum() / anchors.size)
        np.add.at(g, (anchors[active], hard_p[active]), 1.0 / anchors.size)
        np.add.at(g, (anchors[active], hard_n[active]), -1.0 / anchors.size)
        return loss, _grad_from_sqdist(y, g), {}


def _cosine_softmax(
    y: np.ndarray, labels: np.ndarray, w: np.ndarray, scale: float, margin: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """Cross-entropy of scale * (cos(y, w_c) - margin [c = label]); returns loss, dL/dY, dL/dW."""
    w_hat, w_norm = normalise(w)
    cos = y @ w_hat.T
    logits = scale * cos
    logits[np.arange(y.shape[0]), labels] -= scale * margin
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(axis=1, keepdims=True)
    n = y.shape[0]
    loss = float(-np.log(prob[np.arange(n), labels] + 1e-300).mean())
    d_logits = prob
    d_logits[np.arange(n), labels] -= 1.0
    d_cos = scale * d_logits / n
    dy = d_cos @ w_hat
    dw = normalise_backward(w_hat, w_norm, d_cos.T @ y)
    return loss, dy, dw


@dataclass
class AmSoftmaxLoss:
    """Additive-margin softmax (Wang et al. 2018, CosFace): CE over s (cos theta_c - m [c = y]).

    The class weights are unit vectors learned with the head; they are thrown away after training.
    """

    n_classes: int
    dim: int
    scale: float = 30.0
    margin: float = 0.35
    seed: int = 0
    params: Params = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.params:
            rng = np.random.default_rng(self.seed)
            self.params = {"W_cls": rng.normal(size=(self.n_classes, self.dim))}

    def init_from(self, y: np.ndarray, labels: np.ndarray) -> None:
        """Start each class weight at the mean of its training embeddings (faster, steadier training)."""
        for c in range(self.n_classes):
            rows = y[labels == c]
            if rows.size:
                self.params["W_cls"][c] = rows.mean(axis=0)

    def __call__(self, y: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray, Params]:
        loss, dy, dw = _cosine_softmax(y, labels, self.params["W_cls"], self.scale, self.margin)
        return loss, dy, {"W_cls": dw}


@dataclass
class CenterLoss:
    """Center loss (Wen et al. 2016): a normalised softmax plus lambda/2 mean ||y - c_label||^2.

    Center loss alone is minimised by mapping every face to one point, so, as in the paper, it is
    paired with a softmax that keeps the classes apart (here the cosine softmax without margin).
    The centers are parameters updated by their own gradient.
    """

    n_classes: int
    dim: int
    weight: float = 0.5
    scale: float = 30.0
    seed: int = 0
    params: Params = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.params:
            rng = np.random.default_rng(self.seed)
            self.params = {
                "W_cls": rng.normal(size=(self.n_classes, self.dim)),
                "centers": np.zeros((self.n_classes, self.dim)),
            }

    def init_from(self, y: np.ndarray, labels: np.ndarray) -> None:
        """Start each class weight and center at the mean of its training embeddings."""
        for c in range(self.n_classes):
            rows = y[labels == c]
            if rows.size:
                self.params["W_cls"][c] = rows.mean(axis=0)
                self.params["centers"][c] = rows.mean(axis=0)

    def __call__(self, y: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray, Params]:
        ce, dy, dw = _cosine_softmax(y, labels, self.params["W_cls"], self.scale, 0.0)
        n = y.shape[0]
        diff = y - self.params["centers"][labels]
        center = 0.5 * self.weight * float((diff**2).sum(axis=1).mean())
        dy = dy + self.weight * diff / n
        dc = np.zeros_like(self.params["centers"])
        np.add.at(dc, labels, -self.weight * diff / n)
        return ce + center, dy, {"W_cls": dw, "centers": dc}


Loss = ContrastiveLoss | TripletLoss | AmSoftmaxLoss | CenterLoss
LOSSES = ("contrastive", "triplet", "center", "amsoftmax")


def make_loss(name: str, n_classes: int, dim: int, seed: int = 0) -> Loss:
    """One of LOSSES with the defaults used by `make learn`."""
    if name == "contrastive":
        return ContrastiveLoss()
    if name == "triplet":
        return TripletLoss()
    if name == "center":
        return CenterLoss(n_classes, dim, seed=seed)
    if name == "amsoftmax":
        return AmSoftmaxLoss(n_classes, dim, seed=seed)
    raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


class Adam:
    """Adam (Kingma and Ba 2015) over a dict of arrays, updated in place."""

    def __init__(
        self, params: Params, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ):
        self.params, self.lr, self.b1, self.b2, self.eps = params, lr, beta1, beta2, eps
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, grads: Params) -> None:
        """One update of every parameter that has a gradient."""
        self.t += 1
        for k, g in grads.items():
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g * g
            m_hat = self.m[k] / (1 - self.b1**self.t)
            v_hat = self.v[k] / (1 - self.b2**self.t)
            self.params[k] -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def pk_batches(
    labels: np.ndarray, people_per_batch: int, images_per_person: int, rng: np.random.Generator
) -> Callable[[], np.ndarray]:
    """A sampler of batch indices: P people with at least two images, up to K images of each.

    Same-person pairs are rare in a uniform batch of LFW (most people have one or two images),
    so the pair and triplet losses would see almost no positives; P-K batches give each batch some.
    """
    by_class: dict[int, np.ndarray] = {}
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if rows.size >= 2:
            by_class[int(c)] = rows
    classes = np.array(sorted(by_class))
    if classes.size < 2:
        raise ValueError("training needs at least two people with two or more images each")

    def sample() -> np.ndarray:
        chosen = rng.choice(classes, size=min(people_per_batch, classes.size), replace=False)
        parts = [
            rng.choice(by_class[int(c)], size=min(images_per_person, by_class[int(c)].size), replace=False)
            for c in chosen
        ]
        return np.concatenate(parts)

    return sample


@dataclass(frozen=True)
class TrainSettings:
    """How a head is trained (the same for every loss, so the comparison is of the losses)."""

    steps: int = 400
    lr: float = 1e-4
    """Adam step of the head; small, because the head should stay near the identity (1e-3 was worse)."""
    loss_lr: float = 1e-2
    """Learning rate of the loss's own parameters (class weights, centers)."""
    people_per_batch: int = 32
    images_per_person: int = 4
    identity_decay: float = 1e-3
    """L2 pull of the head back towards the identity map (the raw embedding is already good)."""
    seed: int = 0
    validation_fraction: float = 0.1
    """Share of the training people held out for early stopping (0: train all steps, keep the last)."""
    check_every: int = 50
    """Steps between two validation checks."""


def validation_pairs(
    labels: np.ndarray, rng: np.random.Generator, per_person: int = 5
) -> tuple[np.ndarray, ...]:
    """(i, j, same): up to `per_person` same-person pairs of each person and ten times as many others."""
    same_i: list[int] = []
    same_j: list[int] = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        for _ in range(min(per_person, rows.size * (rows.size - 1) // 2)):
            a, b = rng.choice(rows, size=2, replace=False)
            same_i.append(int(a))
            same_j.append(int(b))
    n = 10 * len(same_i)
    di, dj = rng.integers(0, labels.size, n), rng.integers(0, labels.size, n)
    ok = labels[di] != labels[dj]
    i = np.concatenate([same_i, di[ok]]).astype(np.int64)
    j = np.concatenate([same_j, dj[ok]]).astype(np.int64)
    return i, j, np.concatenate([np.ones(len(same_i), bool), np.zeros(int(ok.sum()), bool)])


def validation_eer(head: Head, x: np.ndarray, pairs: tuple[np.ndarray, ...]) -> float:
    """Equal error rate of the head's cosine on held-out pairs (lower is better)."""
    i, j, same = pairs
    y = head.forward(x)[0]
    return metrics.eer(np.einsum("ij,ij->i", y[i], y[j]), same)


@dataclass
class TrainResult:
    """A trained head, the loss after each step, and the wall time in seconds."""

    head: Head
    losses: list[float]
    seconds: float
    best_step: int = -1
    """The step whose head was kept by early stopping (0: the identity; -1: no validation)."""
    validation_eer: float = math.nan


def identity_params(head: Head) -> Params:
    """The parameters of the identity head of the same shape (the point `identity_decay` pulls to)."""
    out = {k: np.zeros_like(v) for k, v in head.params.items()}
    if "W" in out:
        out["W"] = np.eye(out["W"].shape[0])
    if "W1" in out:
        out["W1"] = head.params["W1"].copy()  # back to its random start: W2 = 0 alone makes the identity
    return out


def train_head(
    head_kind: str,
    loss_name: str,
    x: np.ndarray,
    labels: np.ndarray,
    settings: TrainSettings = TrainSettings(),
) -> TrainResult:
    """Train a fresh identity-initialised head with one loss on embeddings x (N, D) of people `labels`.

    labels are any integers; they are renumbered 0..C-1 for the softmax losses.
    """
    start = time.monotonic()
    rng = np.random.default_rng(settings.seed)
    x = np.asarray(x, dtype=np.float64)
    # Only people with two or more images are sampled (pk_batches), so only they are softmax classes:
    # a class never seen as a target would only add negatives, at the cost of a wider softmax.
    _, labels, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    keep = counts[labels] >= 2
    x = x[keep]
    _, labels = np.unique(labels[keep], return_inverse=True)
    val_x, val_pairs = None, None
    if settings.validation_fraction > 0:
        # Early stopping on people held out of the training people (never the test people): the best
        # checkpoint by verification EER on their pairs is kept, the identity (step 0) included.
        classes = np.unique(labels)
        held = rng.choice(
            classes, size=max(2, int(round(settings.validation_fraction * classes.size))), replace=False
        )
        is_val = np.isin(labels, held)
        val_x, val_labels = x[is_val], labels[is_val]
        x = x[~is_val]
        _, labels = np.unique(labels[~is_val], return_inverse=True)
        val_pairs = validation_pairs(val_labels, rng)
    dim = x.shape[1]
    head = HEADS[head_kind].identity(dim, rng)
    loss = make_loss(loss_name, int(labels.max()) + 1, dim, settings.seed)
    if hasattr(loss, "init_from"):
        loss.init_from(x, labels)
    anchor = identity_params(head)
    opt_head = Adam(head.params, settings.lr)
    opt_loss = Adam(loss.params, settings.loss_lr) if loss.params else None
    sample = pk_batches(labels, settings.people_per_batch, settings.images_per_person, rng)
    history: list[float] = []
    best_eer, best_params, best_step = math.inf, None, 0
    for step in range(settings.steps + 1):
        if val_pairs is not None and step % settings.check_every == 0:
            err = validation_eer(head, val_x, val_pairs)
            if err < best_eer:
                best_eer, best_params, best_step = err, {k: v.copy() for k, v in head.params.items()}, step
        if step == settings.steps:
            break
        rows = sample()
        y, cache = head.forward(x[rows])
        value, dy, loss_grads = loss(y, labels[rows])
        grads = head.backward(cache, dy)
        if settings.identity_decay:
            for k in grads:
                grads[k] = grads[k] + settings.identity_decay * (head.params[k] - anchor[k])
        opt_head.step(grads)
        if opt_loss is not None:
            opt_loss.step(loss_grads)
        history.append(value)
    if best_params is not None:
        head.params.update(best_params)
    return TrainResult(head, history, time.monotonic() - start, best_step, best_eer)
