"""The scoring methods compared by `make learn`: raw cosine, the trained heads, WCCN, Joint Bayesian, and
cohort score normalisation on top of any of them.

A method is fitted on training embeddings and their people, then scores two sets of embeddings
against each other (`matrix`) or row by row (`pairs`). Higher means more alike in every method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from models.build.learning import heads


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Cosine:
    """Raw cosine of the embeddings: what the appliance does today (the reference row)."""

    name = "raw cosine"
    seconds = 0.0

    def fit(self, x: np.ndarray, people: np.ndarray) -> Cosine:
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """The vectors compared by cosine (unit rows)."""
        return _unit(np.asarray(x, dtype=np.float64))

    def matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(Na, Nb) scores of every row of a against every row of b."""
        return self.transform(a) @ self.transform(b).T

    def pairs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(N,) score of a[i] with b[i]."""
        return np.einsum("ij,ij->i", self.transform(a), self.transform(b))


@dataclass
class HeadMethod(Cosine):
    """A head trained with one loss; scores are cosines of the head's outputs."""

    head_kind: str
    loss: str
    settings: heads.TrainSettings = field(default_factory=heads.TrainSettings)
    head: heads.Head | None = None
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.head_kind} head, {self.loss}"

    def fit(self, x: np.ndarray, people: np.ndarray) -> HeadMethod:
        result = heads.train_head(self.head_kind, self.loss, x, people, self.settings)
        self.head, self.seconds, self.losses = result.head, result.seconds, result.losses
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        assert self.head is not None, "fit first"
        return self.head.forward(_unit(np.asarray(x, dtype=np.float64)))[0]


def _within_between(x: np.ndarray, people: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, within-class covariance, covariance of class means) over people with 2+ images."""
    _, labels, counts = np.unique(people, return_inverse=True, return_counts=True)
    keep = counts[labels] >= 2
    x, labels = x[keep], labels[keep]
    mean = x.mean(axis=0)
    x = x - mean
    classes = np.unique(labels)
    sums = np.zeros((labels.max() + 1, x.shape[1]))
    np.add.at(sums, labels, x)
    n = np.bincount(labels)
    means = sums[classes] / n[classes, None]
    resid = x - (sums / np.maximum(n, 1)[:, None])[labels]
    within = resid.T @ resid / x.shape[0]
    between = means.T @ means / classes.size
    return mean, within, between


def _shrink(cov: np.ndarray, alpha: float) -> np.ndarray:
    """(1 - alpha) cov + alpha (trace / D) I: keeps the small directions of a 128-d estimate finite."""
    d = cov.shape[0]
    return (1.0 - alpha) * cov + alpha * np.trace(cov) / d * np.eye(d)


@dataclass
class Wccn(Cosine):
    """Within-class covariance normalisation (Hatch et al. 2006): x -> S_w^(-1/2) x, then cosine.

    Directions in which one person's images vary much are shrunk, so they count less in the cosine.
    S_w is shrunk towards a multiple of the identity by `shrinkage` (fixed, not tuned on test folds).
    """

    shrinkage: float = 0.1
    proj: np.ndarray | None = None
    seconds: float = 0.0
    name = "WCCN"

    def fit(self, x: np.ndarray, people: np.ndarray) -> Wccn:
        start = time.monotonic()
        _, within, _ = _within_between(_unit(np.asarray(x, dtype=np.float64)), people)
        vals, vecs = np.linalg.eigh(_shrink(within, self.shrinkage))
        self.proj = vecs @ np.diag(vals**-0.5) @ vecs.T
        self.seconds = time.monotonic() - start
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        assert self.proj is not None, "fit first"
        return _unit(_unit(np.asarray(x, dtype=np.float64)) @ self.proj)


@dataclass
class JointBayesian(Cosine):
    """Joint Bayesian (Chen et al. 2012): x = mu + eps, mu ~ N(0, S_mu), eps ~ N(0, S_eps).

    The score is the log-likelihood ratio of "same person" over "different people", up to a constant:
    r(x1, x2) = x1' A x1 + x2' A x2 - 2 x1' G x2. S_mu and S_eps are estimated directly from class means
    and residuals (the paper's initialisation; its EM refinement is not run), each shrunk as in WCCN.
    """

    shrinkage: float = 0.1
    mean: np.ndarray | None = None
    a: np.ndarray | None = None
    g: np.ndarray | None = None
    seconds: float = 0.0
    name = "Joint Bayesian"

    def fit(self, x: np.ndarray, people: np.ndarray) -> JointBayesian:
        start = time.monotonic()
        mean, s_eps, s_mu = _within_between(_unit(np.asarray(x, dtype=np.float64)), people)
        s_eps, s_mu = _shrink(s_eps, self.shrinkage), _shrink(s_mu, self.shrinkage)
        f = np.linalg.inv(s_eps)
        self.g = -np.linalg.solve(2.0 * s_mu + s_eps, s_mu) @ f
        self.a = np.linalg.inv(s_mu + s_eps) - (f + self.g)
        self.mean = mean
        self.seconds = time.monotonic() - start
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        assert self.mean is not None, "fit first"
        return _unit(np.asarray(x, dtype=np.float64)) - self.mean

    def matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ta, tb = self.transform(a), self.transform(b)
        qa = np.einsum("ij,jk,ik->i", ta, self.a, ta)
        qb = np.einsum("ij,jk,ik->i", tb, self.a, tb)
        return qa[:, None] + qb[None, :] - 2.0 * ta @ self.g @ tb.T

    def pairs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ta, tb = self.transform(a), self.transform(b)
        qa = np.einsum("ij,jk,ik->i", ta, self.a, ta)
        qb = np.einsum("ij,jk,ik->i", tb, self.a, tb)
        return qa + qb - 2.0 * np.einsum("ij,jk,ik->i", ta, self.g, tb)


@dataclass
class CohortNorm:
    """Adaptive symmetric score normalisation (AS-norm) of a base method against a cohort of strangers.

    Each side of a comparison is z-normalised by the mean and standard deviation of its `top` highest
    scores against the cohort (the training people, never a test person), and the two are averaged:
    s' = ((s - mu_a) / sd_a + (s - mu_b) / sd_b) / 2. A face that looks like many strangers (a high,
    crowded cohort score) then needs a higher raw score to match. When the queried face's own person is
    in the cohort (a training pair, for choosing a threshold), that person's images are left out of its
    cohort, so training and test comparisons are normalised alike.

    per_person: the cohort is one vector per training person (the normalised mean of their images)
    instead of every image, so a stranger with hundreds of photos cannot fill a face's top scores alone.
    """

    base: Cosine
    top: int = 100
    per_person: bool = False
    cohort: np.ndarray | None = None
    cohort_people: np.ndarray | None = None
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.base.name} + cohort norm" + (" (person means)" if self.per_person else "")

    def fit(self, x: np.ndarray, people: np.ndarray) -> CohortNorm:
        self.base.fit(x, people)
        self.cohort, self.cohort_people = np.asarray(x), np.asarray(people)
        if self.per_person:
            names, labels = np.unique(self.cohort_people, return_inverse=True)
            sums = np.zeros((names.size, self.cohort.shape[1]))
            np.add.at(sums, labels, _unit(np.asarray(self.cohort, dtype=np.float64)))
            self.cohort, self.cohort_people = _unit(sums), names
        self.seconds = self.base.seconds
        return self

    def stats(
        self, x: np.ndarray, people: np.ndarray | None = None, chunk: int = 1024
    ) -> tuple[np.ndarray, ...]:
        """(mean, std) of each row's `top` highest cohort scores, its own person's images left out."""
        assert self.cohort is not None, "fit first"
        mu = np.empty(len(x))
        sd = np.empty(len(x))
        for lo in range(0, len(x), chunk):
            s = self.base.matrix(x[lo : lo + chunk], self.cohort)
            if people is not None:
                s[people[lo : lo + chunk, None] == self.cohort_people[None, :]] = -np.inf
            top = -np.partition(-s, self.top - 1, axis=1)[:, : self.top]
            mu[lo : lo + chunk] = top.mean(axis=1)
            sd[lo : lo + chunk] = np.maximum(top.std(axis=1), 1e-9)
        return mu, sd

    def normalise_matrix(
        self, raw: np.ndarray, stats_a: tuple[np.ndarray, ...], stats_b: tuple[np.ndarray, ...]
    ) -> np.ndarray:
        """AS-norm of an (Na, Nb) raw score matrix given each side's cohort statistics."""
        (mu_a, sd_a), (mu_b, sd_b) = stats_a, stats_b
        return 0.5 * ((raw - mu_a[:, None]) / sd_a[:, None] + (raw - mu_b[None, :]) / sd_b[None, :])

    def normalise_pairs(
        self, raw: np.ndarray, stats_a: tuple[np.ndarray, ...], stats_b: tuple[np.ndarray, ...]
    ) -> np.ndarray:
        """AS-norm of (N,) raw pair scores given each side's cohort statistics."""
        (mu_a, sd_a), (mu_b, sd_b) = stats_a, stats_b
        return 0.5 * ((raw - mu_a) / sd_a + (raw - mu_b) / sd_b)
