"""Output files of the `facegate` command never destroy data, and options go where users type them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_run import one_line_error, run

from appliance.cli import build_parser, main

pytestmark = pytest.mark.usefixtures("cli_tmp")


def csv_export(capsys, db: Path, *extra: str) -> tuple[int, str, str]:
    return run(capsys, "events", "--db", db, *extra)


# -- outputs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("force", [[], ["--force"]])
@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_csv_onto_the_gallery_or_its_wal_shm_is_refused_even_with_force(
    capsys, staged_gallery, suffix, force
):
    gallery = staged_gallery
    before = gallery.read_bytes()
    target = gallery.with_name(gallery.name + suffix)
    code, _, err = csv_export(capsys, gallery, "--csv", target, *force)
    assert code == 1
    one_line_error(err, "gallery database", "another output file")
    assert gallery.read_bytes() == before
    if suffix:
        assert not target.exists()
    code, out, _ = run(capsys, "events", "--db", gallery, "--json")
    assert code == 0 and json.loads(out.splitlines()[0])["name"] == "dana"


def test_csv_onto_the_gallery_through_a_relative_path_is_refused(capsys, staged_gallery, tmp_path):
    gallery = staged_gallery
    before = gallery.read_bytes()
    (tmp_path / "sub").mkdir()
    code, _, err = csv_export(capsys, gallery, "--csv", "sub/../g.db", "--force")
    assert code == 1
    one_line_error(err, "gallery database")
    assert gallery.read_bytes() == before


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_csv_onto_the_config_file_in_use_is_refused(capsys, staged_gallery, tmp_path, force):
    gallery = staged_gallery
    config = tmp_path / "config.toml"
    config.write_text(f'[gallery]\npath = "{gallery.name}"\n')
    before = config.read_text()
    code, _, err = run(capsys, "events", "--config", config, "--csv", config, *force)
    assert code == 1
    one_line_error(err, "config file")
    assert config.read_text() == before
    # with [gallery] path from that config, the gallery is protected too
    code, _, err = run(capsys, "events", "--config", config, "--csv", gallery, *force)
    assert code == 1
    one_line_error(err, "gallery database")


def test_existing_csv_is_kept_without_force_and_replaced_with_it(capsys, staged_gallery, tmp_path):
    gallery = staged_gallery
    out = tmp_path / "events.csv"
    out.write_text("precious\n")
    code, _, err = csv_export(capsys, gallery, "--csv", out)
    assert code == 1
    one_line_error(err, "events.csv", "--force")
    assert out.read_text() == "precious\n"
    code, _, err = csv_export(capsys, gallery, "--csv", out, "--force")
    assert code == 0, err
    lines = out.read_text().splitlines()
    assert lines[0].startswith("id,time,kind") and "dana" in lines[1]


def test_new_csv_and_stdout_still_work(capsys, staged_gallery, tmp_path):
    gallery = staged_gallery
    code, _, err = csv_export(capsys, gallery, "--csv", tmp_path / "new.csv")
    assert code == 0, err
    assert "dana" in (tmp_path / "new.csv").read_text()
    code, out, _ = csv_export(capsys, gallery, "--csv", "-")
    assert code == 0 and out.startswith("id,time,kind") and "dana" in out


def test_csv_into_a_missing_folder_or_onto_a_folder_is_a_one_line_error(capsys, staged_gallery, tmp_path):
    gallery = staged_gallery
    code, _, err = csv_export(capsys, gallery, "--csv", tmp_path / "missing" / "e.csv")
    assert code == 1
    one_line_error(err, "does not exist")
    code, _, err = csv_export(capsys, gallery, "--csv", tmp_path, "--force")
    assert code == 1
    one_line_error(err, "folder")


def test_eval_checks_its_json_output_before_reading_the_data(capsys, tmp_path):
    # The LFW root does not exist either: the output is checked first, so that is what is reported.
    missing_root = tmp_path / "no-lfw"
    code, _, err = run(
        capsys, "eval", "lfw", "--root", missing_root, "--json", tmp_path / "missing" / "o.json"
    )
    assert code == 1
    line = one_line_error(err, "--json", "o.json", "does not exist")
    assert "no-lfw" not in line


def test_eval_refuses_existing_outputs_and_the_config_before_reading_the_data(capsys, tmp_path):
    missing_root = tmp_path / "no-lfw"
    old = tmp_path / "old.json"
    old.write_text("{}\n")
    code, _, err = run(capsys, "eval", "door", "--root", missing_root, "--json", old)
    assert code == 1
    one_line_error(err, "old.json", "--force")
    assert old.read_text() == "{}\n"
    png = tmp_path / "roc.png"
    png.write_bytes(b"png")
    code, _, err = run(capsys, "eval", "lfw", "--root", missing_root, "--plot", png)
    assert code == 1
    one_line_error(err, "--plot", "--force")
    assert png.read_bytes() == b"png"
    config = tmp_path / "config.toml"
    config.write_text("[policy]\n")
    code, _, err = run(
        capsys, "eval", "lfw", "--root", missing_root, "--config", config, "--json", config, "--force"
    )
    assert code == 1
    one_line_error(err, "config file")
    assert config.read_text() == "[policy]\n"


def test_eval_with_force_goes_on_to_the_data(capsys, tmp_path):
    old = tmp_path / "old.json"
    old.write_text("{}\n")
    code, _, err = run(capsys, "eval", "lfw", "--root", tmp_path / "no-lfw", "--json", old, "--force")
    assert code == 1
    one_line_error(err, "no-lfw")  # past the output check, stopped by the missing data instead


def test_bench_checks_its_json_output_before_benchmarking(capsys, tmp_path):
    code, _, err = run(capsys, "bench", "--json", tmp_path / "missing" / "bench.json")
    assert code == 1
    one_line_error(err, "bench.json", "does not exist")
    old = tmp_path / "bench.json"
    old.write_text("{}\n")
    code, _, err = run(capsys, "bench", "--json", old)
    assert code == 1
    one_line_error(err, "--force")
    assert old.read_text() == "{}\n"


# -- options anywhere ------------------------------------------------------------------------------


def test_enroll_takes_options_between_name_and_photos(capsys, tmp_path, photos):
    db = tmp_path / "g.db"
    code, out, err = run(
        capsys, "enroll", "bob", "--role", "admin", photos["obama.jpg"], "--db", db, "--json"
    )
    assert code == 0, err
    assert json.loads(out) | {"model_id": None} == {
        "user": "bob",
        "role": "admin",
        "templates": 1,
        "model_id": None,
    }
    code, out, _ = run(capsys, "users", "list", "--json", "--db", db)
    assert [(u["name"], u["role"]) for u in json.loads(out)] == [("bob", "admin")]


def test_users_takes_db_before_the_action(capsys, tmp_path, photos):
    gallery = tmp_path / "g.db"
    code, _, err = run(capsys, "enroll", "obama", photos["obama.jpg"], "--db", gallery)
    assert code == 0, err
    code, out, err = run(capsys, "users", "--db", gallery, "list", "--json")
    assert code == 0, err
    assert [u["name"] for u in json.loads(out)] == ["obama"]
    assert not (tmp_path / "facegate.db").exists()  # not the default gallery
    code, out, err = run(capsys, "users", "--db", gallery, "list")
    assert code == 0 and out.startswith("obama"), err
    code, out, err = run(capsys, "users", "--db", gallery, "rename", "obama", "barack")
    assert code == 0 and "renamed obama to barack" in out, err
    code, out, _ = run(capsys, "users", "--db", gallery, "show", "barack", "--json")
    assert json.loads(out)["name"] == "barack"
    config = tmp_path / "bad.toml"
    config.write_text("[policy]\nmatch_treshold = 0.7\n")
    code, _, err = run(capsys, "users", "--config", config, "--db", gallery, "list")
    assert code == 1
    one_line_error(err, "match_treshold")  # --config before the action is used, not dropped


def test_shared_options_on_either_side_of_the_action_are_kept():
    parser = build_parser()
    for argv in (
        ["users", "--db", "a.db", "list"],
        ["users", "list", "--db", "a.db"],
        ["users", "--db", "a.db", "-v", "show", "x", "--json"],
    ):
        args = parser.parse_args(argv)
        assert args.db == Path("a.db"), argv
    args = parser.parse_args(["users", "--config", "c.toml", "-v", "rename", "a", "b"])
    assert (args.config, args.verbose, args.name, args.new_name) == (Path("c.toml"), True, "a", "b")
    args = parser.parse_args(["users", "list"])
    assert (args.db, args.config, args.verbose, args.json) == (None, None, False, False)
    args = parser.parse_args(["eval", "--json", "o.json", "lfw", "--root", "r"])
    assert (args.json, args.root, args.force, args.detector_variant) == ("o.json", "r", False, None)
    args = parser.parse_args(["eval", "detect", "--images", "i", "--annotations", "a", "--force"])
    assert (args.json, args.force, args.min_face) == (None, True, None)
    args = parser.parse_args(["enroll", "--role", "admin", "bob", "b1.jpg", "--json", "b2.jpg"])
    assert (args.name, args.images, args.role, args.json) == (
        "bob",
        [Path("b1.jpg"), Path("b2.jpg")],
        "admin",
        True,
    )


def test_unknown_options_are_still_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["enroll", "bob", "--rolle", "admin", "bob.jpg"])
    assert exc.value.code == 2
    assert "--rolle" in capsys.readouterr().err
