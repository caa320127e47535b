"""Similarity learning (models/build/learning, `make learn`): the four losses on both heads, the
identity-disjoint splits, cohort normalisation, the door protocol against `facegate eval door`, and the
TFLite export of a head."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.build.learning import heads
from models.build.learning.methods import CohortNorm, Cosine
from models.build.learning.protocol import door_split, lfw_pairs, lfw_split, name_half

ROOT = Path(__file__).resolve().parents[1]
KINDS = sorted(heads.HEADS)


def clustered(
    seed: int = 0, classes: int = 8, per_class: int = 20, dim: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in `classes` tight, nearby clusters, each smeared along 4 shared nuisance directions:
    a head that removes the nuisance pulls each class together and pushes the classes apart."""
    rng = np.random.default_rng(seed)
    means = np.eye(dim)[0] + 0.08 * rng.normal(size=(classes, dim))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    nuisance = np.linalg.qr(rng.normal(size=(dim, 4)))[0].T
    labels = np.repeat(np.arange(classes), per_class)
    x = means[labels] + 0.2 * rng.normal(size=(labels.size, 4)) @ nuisance
    x += 0.01 * rng.normal(size=x.shape)
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def mean_distances(y: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean Euclidean distance of same-class pairs and of different-class pairs."""
    d = np.sqrt(np.maximum(2.0 - 2.0 * y @ y.T, 0.0))
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(labels.size, dtype=bool)
    return float(d[same & off].mean()), float(d[~same].mean())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("loss", heads.LOSSES)
def test_each_loss_falls_and_pulls_classes_together_and_apart(kind, loss):
    x, labels = clustered()
    settings = heads.TrainSettings(
        steps=300, lr=1e-2, people_per_batch=8, images_per_person=4, validation_fraction=0, identity_decay=0
    )
    result = heads.train_head(kind, loss, x, labels, settings)
    same0, diff0 = mean_distances(x, labels)
    same1, diff1 = mean_distances(result.head.apply(x), labels)
    assert np.mean(result.losses[-20:]) < 0.5 * np.mean(result.losses[:20])
    assert same1 < 0.95 * same0, f"same-class distance {same0:.3f} -> {same1:.3f}"
    assert diff1 > 1.2 * diff0, f"different-class distance {diff0:.3f} -> {diff1:.3f}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("loss", heads.LOSSES)
def test_gradients_equal_finite_differences(kind, loss):
    rng = np.random.default_rng(1)
    x, labels = clustered(seed=2, classes=4, per_class=3, dim=6)
    head = (
        heads.LinearHead.identity(6) if kind == "linear" else heads.ResidualMlpHead.identity(6, rng, hidden=5)
    )
    for k in head.params:  # away from the identity, so W2 and the ReLUs are exercised too
        head.params[k] = head.params[k] + 0.1 * rng.normal(size=head.params[k].shape)
    fn = heads.make_loss(loss, 4, 6)
    for k in fn.params:
        fn.params[k] = rng.normal(size=fn.params[k].shape)

    def value() -> float:
        return fn(head.forward(x)[0], labels)[0]

    y, cache = head.forward(x)
    _, dy, loss_grads = fn(y, labels)
    for params, grads in ((head.params, head.backward(cache, dy)), (fn.params, loss_grads)):
        for name, grad in grads.items():
            numeric = np.zeros_like(grad)
            for i in np.ndindex(grad.shape):
                old = params[name][i]
                params[name][i] = old + 1e-6
                up = value()
                params[name][i] = old - 1e-6
                down = value()
                params[name][i] = old
                numeric[i] = (up - down) / 2e-6
            assert np.allclose(grad, numeric, rtol=1e-5, atol=1e-7), f"{kind}/{loss}: d/d{name}"


@pytest.mark.parametrize("kind", KINDS)
def test_heads_start_as_the_identity(kind):
    x, _ = clustered()
    head = heads.HEADS[kind].identity(x.shape[1], np.random.default_rng(0))
    assert np.allclose(head.apply(x), x, atol=1e-6)


def test_early_stopping_keeps_the_identity_when_no_step_beats_it_on_held_out_people():
    # Orthogonal classes: the identity already verifies the held-out people perfectly (EER 0), so no
    # trained step can do better and the head handed back is the identity, though training moved it.
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(12), 6)
    x = np.eye(16)[labels] + 0.01 * rng.normal(size=(labels.size, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    stopped = heads.train_head(
        "linear", "amsoftmax", x, labels, heads.TrainSettings(steps=60, lr=0.5, check_every=10)
    )
    assert stopped.best_step == 0 and stopped.validation_eer == 0.0
    assert np.allclose(stopped.head.apply(x), x, atol=1e-6)
    free = heads.train_head(
        "linear", "amsoftmax", x, labels, heads.TrainSettings(steps=60, lr=0.5, validation_fraction=0)
    )
    assert not np.allclose(free.head.apply(x), x, atol=1e-3)


def _lfw_pairs_file(shared_data: Path) -> Path:
    path = shared_data / "lfw" / "pairs.txt"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def test_no_lfw_fold_trains_on_a_person_of_its_test_fold(shared_data):
    from appliance.evaluation.accuracy import list_identities, read_lfw_pairs

    people_images = list_identities(shared_data / "lfw")
    paths = np.array([f"{p}/{f.name}" for p, files in people_images.items() for f in files])
    people = np.array([p.split("/")[0] for p in paths])
    pairs = lfw_pairs(read_lfw_pairs(_lfw_pairs_file(shared_data)), paths)
    assert len(pairs.fold_people) == 10
    for k in range(10):
        train = lfw_split(pairs, people, k)
        assert train.size > 5000
        assert not set(people[train].tolist()) & pairs.fold_people[k]
        test_rows = np.flatnonzero(pairs.fold == k)
        test_images = set(pairs.ia[test_rows].tolist()) | set(pairs.ib[test_rows].tolist())
        assert not test_images & set(train.tolist())


def test_a_person_in_two_folds_is_refused_not_trained_on():
    from appliance.evaluation.accuracy import Pair

    folds = [
        [
            Pair("ann/ann_0001.jpg", "ann/ann_0002.jpg", True),
            Pair("bob/bob_0001.jpg", "cy/cy_0001.jpg", False),
        ],
        [
            Pair("dee/dee_0001.jpg", "dee/dee_0002.jpg", True),
            Pair("ann/ann_0001.jpg", "eve/eve_0001.jpg", False),
        ],
    ]
    paths = np.array(sorted({n for f in folds for p in f for n in (p.a, p.b)}))
    people = np.array([p.split("/")[0] for p in paths])
    with pytest.raises(AssertionError, match="shares 1 people"):
        lfw_split(lfw_pairs(folds, paths), people, 0)


def test_door_halves_split_people_by_name_and_never_share_one():
    names = [f"person_{i:03d}" for i in range(200)]
    people = np.array([n for i, n in enumerate(names) for _ in range(1 + i % 4)])
    halves = {n: name_half(n) for n in names}
    assert 70 < sum(halves.values()) < 130
    assert name_half("George_W_Bush") == name_half("George_W_Bush")
    covered = set()
    for half in (0, 1):
        split = door_split(people, half)
        test_people = set(people[split.gallery].tolist()) | set(people[split.probes].tolist())
        assert test_people == {n for n in names if halves[n] == half}
        assert not test_people & set(people[split.train].tolist())
        covered |= test_people
        # one gallery image per person with 2+ images, the rest probe; singletons are impostors
        assert sorted(set(people[split.gallery].tolist())) == sorted(
            n for n in test_people if (people == n).sum() >= 2
        )
        assert all(
            people[r] not in set(people[split.gallery].tolist()) for r in split.probes[split.probe_owner < 0]
        )
    assert covered == set(names)


def test_cohort_norm_lowers_a_face_that_resembles_many_strangers():
    rng = np.random.default_rng(0)
    dim = 32
    crowd = rng.normal(size=dim)
    crowd /= np.linalg.norm(crowd)
    cohort = crowd + 0.3 * rng.normal(size=(300, dim))  # many strangers look alike
    cohort = np.vstack([cohort, rng.normal(size=(300, dim))])
    cohort /= np.linalg.norm(cohort, axis=1, keepdims=True)
    norm = CohortNorm(Cosine(), top=50).fit(cohort, np.arange(len(cohort)))
    # two probes with the same raw cosine 0.8 to the target, one in the crowd of strangers, one off it:
    # an orthonormal target, the crowd's direction off the target, and a direction off both
    basis = np.linalg.qr(np.column_stack([rng.normal(size=dim), crowd, rng.normal(size=dim)]))[0].T
    target = basis[:1]
    hub = 0.8 * basis[0] + 0.6 * basis[1] * np.sign(basis[1] @ crowd)
    lonely = 0.8 * basis[0] + 0.6 * basis[2]
    probes = np.vstack([hub, lonely])
    raw = Cosine().matrix(probes, target)
    assert np.allclose(raw, 0.8)
    scored = norm.normalise_matrix(raw, norm.stats(probes), norm.stats(target))
    assert scored[0, 0] < scored[1, 0]


def test_cohort_statistics_leave_out_the_faces_own_person():
    rng = np.random.default_rng(0)
    cohort = rng.normal(size=(40, 8))
    cohort /= np.linalg.norm(cohort, axis=1, keepdims=True)
    people = np.repeat(np.arange(20), 2)
    norm = CohortNorm(Cosine(), top=5).fit(cohort, people)
    with_self, _ = norm.stats(cohort[:1])
    without_self, _ = norm.stats(cohort[:1], people[:1])
    assert with_self[0] > without_self[0]  # its own image (cosine 1) is no longer in its top 5


def test_door_protocol_matches_facegate_eval_door(shared_data, tmp_path, detector, embedder):
    """The learning benchmark's raw-cosine door figures are those of the appliance's own eval door."""
    from appliance.evaluation import accuracy
    from models.build.learning.embeddings import EmbeddedSet
    from models.build.learning.evaluate import door_half

    lfw = shared_data / "lfw"
    names = [
        "Tony_Blair",
        "Hugo_Chavez",
        "Jean_Chretien",
        "John_Ashcroft",
        "Ariel_Sharon",
        "Gloria_Macapagal_Arroyo",
    ]
    names += ["Abdullah", "Bono", "Madonna", "Moby", "Pele", "Zico", "Juanes", "Eminem"]
    names = [n for n in names if (lfw / n).is_dir()]
    if len(names) < 8:
        pytest.skip("the LFW people this test uses are absent")
    half = name_half(names[0])
    subset = tmp_path / "half"
    subset.mkdir()
    rel, groups = [], []
    for n in names:
        files = sorted((lfw / n).glob("*.jpg"))[:6]
        rel += [f"{n}/{f.name}" for f in files]
        groups += [n] * len(files)
        if name_half(n) == half:
            (subset / n).mkdir()
            for f in files:
                (subset / n / f.name).symlink_to(f)
    emb, face = accuracy.embed_images(
        [lfw / r for r in rel], detector, embedder, accuracy.face_nearest_centre
    )
    data = EmbeddedSet(np.array(rel), np.array(groups), emb, face, "test")
    mine = door_half(Cosine, data, half)
    theirs = accuracy.eval_door(subset, detector, embedder, pick=accuracy.face_nearest_centre)
    assert mine.gallery_size == theirs["gallery_size"] > 1
    assert mine.genuine_probes == theirs["genuine_probes"]
    assert mine.impostor_probes == theirs["impostor_probes"]
    assert mine.rank1 == pytest.approx(theirs["rank1"])
    assert mine.fnir_at_fpir_1e2 == pytest.approx(theirs["fnir_at_fpir_1e-2"])
    assert mine.fnir_at_fpir_1e3 == pytest.approx(theirs["fnir_at_fpir_1e-3"])


BUILD_PY = ROOT / ".build-venv" / "bin" / "python"


def test_exported_head_runs_in_the_appliance_runtime_as_in_numpy(tmp_path):
    """A trained head exported to TFLite (build venv, TensorFlow) gives the numpy head's output when
    run by the appliance's own TFLite runtime. Nothing ships today, so a freshly trained head is used."""
    if not BUILD_PY.is_file():
        pytest.skip(f"{BUILD_PY} is absent: the exporter needs TensorFlow (make .build-venv/.installed)")
    from appliance.vision.inference import TfliteModel
    from models.build.learning.export import save_head

    x, labels = clustered(dim=128, classes=10)
    result = heads.train_head(
        "mlp", "amsoftmax", x, labels, heads.TrainSettings(steps=50, lr=1e-2, validation_fraction=0)
    )
    assert not np.allclose(result.head.params["W2"], 0.0)  # trained, so the residual branch matters
    npz, out = tmp_path / "head.npz", tmp_path / "head.tflite"
    save_head(result.head, npz)
    done = subprocess.run(
        [str(BUILD_PY), "-m", "models.build.learning.export", str(npz), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    model = TfliteModel(out)
    got = np.vstack([model.run(row[None].astype(np.float32))[0] for row in x[:40]])
    assert np.abs(got - result.head.apply(x[:40])).max() < 1e-5


def test_learn_refuses_a_missing_lfw_folder(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "models.build.learning", "--root", str(tmp_path / "nope")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().endswith("no such folder; give the LFW folder with --root")


def test_learn_prints_the_table_and_writes_the_json_on_a_small_lfw(
    shared_data, tmp_path, detector, embedder, capsys
):
    """`make learn` end to end on 10 LFW people in two folds: its raw-cosine row is `facegate eval lfw`'s."""
    import json

    from appliance.evaluation import accuracy
    from models.build.learning.__main__ import main

    lfw = shared_data / "lfw"
    folds = [
        ["Tony_Blair 1 2", "Hugo_Chavez 1 2", "Jean_Chretien 1 John_Ashcroft 1", "Jean_Chretien 2 Bono 1"],
        [
            "Ariel_Sharon 1 2",
            "Colin_Powell 1 2",
            "Donald_Rumsfeld 1 Madonna 1",
            "Gloria_Macapagal_Arroyo 1 Donald_Rumsfeld 2",
        ],
    ]
    root = tmp_path / "lfw"
    for line in (line for fold in folds for line in fold):
        for name in line.split()[::2] if len(line.split()) == 4 else line.split()[:1]:
            if not (lfw / name).is_dir():
                pytest.skip(f"{lfw / name} is absent")
            (root / name).mkdir(parents=True, exist_ok=True)
            for f in sorted((lfw / name).glob("*.jpg"))[:4]:
                if not (root / name / f.name).exists():
                    (root / name / f.name).symlink_to(f)
    pairs = root / "pairs.txt"
    pairs.write_text("2 2\n" + "\n".join(line for fold in folds for line in fold) + "\n")
    out = tmp_path / "learn.json"
    cache = tmp_path / "cache"
    assert (
        main(
            ["--root", str(root), "--json", str(out), "--cache-dir", str(cache), "--only", "raw cosine;WCCN"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split(" | ")[0].strip() == "method"
    assert "ships: nothing" in printed
    report = json.loads(out.read_text())
    assert [r["method"] for r in report["rows"]] == ["raw cosine", "WCCN"]
    keys = {"lfw_accuracy", "lfw_accuracy_std", "eer", "tar_at_far_1e-3", "door_rank1", "fnir_at_fpir_1e-2"}
    assert keys | {"fnir_at_fpir_1e-3", "train_time_s"} <= set(report["rows"][0])
    reference = accuracy.eval_lfw(root, pairs, detector, embedder)
    assert report["rows"][0]["lfw_accuracy"] == pytest.approx(reference["accuracy"])
    assert len(list(cache.glob("*.npz"))) == 1  # embedded once, cached for the next run
