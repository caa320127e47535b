"""The `facegate` command line: parse, call one function, turn our errors into one line.

Every command takes --config; those that use the gallery take --db (which overrides [gallery] path).
ApplianceError ends the command with `facegate: error: ...` and exit status 1; other exceptions are
bugs and keep their traceback. Set DEBUG=1 to get tracebacks for our errors too.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance import __version__
from appliance.config import Config, config_warnings, load_config
from appliance.errors import ApplianceError, ConfigError

if TYPE_CHECKING:
    from appliance.app.shutdown import SignalThread
    from appliance.gallery.store import Gallery

log = logging.getLogger(__name__)

SYSTEM_CONFIG = Path("/etc/facegate/config.toml")
DOOR_FACE_PX = 40.0
"""`eval detect` also scores faces at least this high alone (smaller ones become ignore regions)."""


def default_config_path() -> Path | None:
    """$FACEGATE_CONFIG, else ./config.toml, else /etc/facegate/config.toml, else None (built-in defaults)."""
    env = os.environ.get("FACEGATE_CONFIG")
    if env:
        return Path(env)
    for candidate in (Path("config.toml"), SYSTEM_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config if args.config is not None else default_config_path())


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, default=str), flush=True)


def check_output_path(
    path: Path | str,
    option: str,
    *,
    force: bool,
    cfg: Config,
    db: Path | None = None,
    allow_stdout: bool = False,
) -> None:
    """Refuse an output path that would lose data or fail late; call it before any long work.

    `option` names the flag in the message (e.g. "--csv"). Refused, with ConfigError: a path under
    a missing folder, a folder, an existing file unless `force` (devices and pipes such as /dev/null
    are written to, never replaced), and always, even with `force`, the gallery database (`db`, else
    [gallery] path) with its -wal, -shm and -journal files, and the config file in use. "-" (stdout)
    passes where `allow_stdout`.
    """
    if allow_stdout and str(path) == "-":
        return
    out = Path(path).expanduser()
    gallery = Path(db if db is not None else cfg.gallery.path).expanduser()
    protected = [
        (
            gallery.with_name(gallery.name + suffix),
            f"the gallery database{suffix and ' ' + suffix[1:] + ' file'}",
        )
        for suffix in ("", "-wal", "-shm", "-journal")
    ]
    if cfg.path is not None:
        protected.append((Path(cfg.path), "the config file in use"))
    for keep, what in protected:
        same = out.absolute() == keep.absolute() or out.resolve() == keep.resolve()
        if not same and out.exists() and keep.exists():
            same = os.path.samefile(out, keep)
        if same:
            raise ConfigError(f"{option} {path}: that is {what} ({keep}); give another output file.")
    if out.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give a file name for the output.")
    if not out.absolute().parent.is_dir():
        raise ConfigError(
            f"{option} {path}: folder {out.absolute().parent} does not exist; create it or give another path."
        )
    if not force and (out.is_file() or (out.is_symlink() and not out.exists())):
        raise ConfigError(f"{option} {path}: file already exists; add --force to overwrite it.")


# -- run -------------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from appliance.app.shutdown import SignalThread

    # Take the signals before anything starts a thread (importing cv2 does), so that every thread
    # inherits the blocked mask and a SIGTERM during start-up or a camera stall still relocks and exits.
    signals = SignalThread()
    signals.start()
    try:
        return _run(args, signals)
    finally:
        signals.finish()  # also when the config is refused: never leave the caller's signals blocked


def _run(args: argparse.Namespace, signals: SignalThread) -> int:
    from appliance.access.loop import DecisionRecord
    from appliance.app.door_process import run_door

    cfg = _config(args)
    if not args.verbose:  # -v (DEBUG) wins over the config
        logging.getLogger().setLevel(cfg.service.log_level)
    for warning in config_warnings(cfg):
        log.warning("%s", warning)
    if args.redetect_every is not None:
        if args.redetect_every < 1:
            raise ConfigError(f"--redetect-every {args.redetect_every}: must be 1 or more.")
        cfg = dataclasses.replace(
            cfg, detector=dataclasses.replace(cfg.detector, redetect_every=args.redetect_every)
        )

    def emit(rec: DecisionRecord) -> None:
        if args.json:
            _print_json(rec.as_json())
        else:
            score = "-" if rec.score is None else f"{rec.score:.3f}"
            who = rec.user or "unknown"
            print(
                f"{rec.t:8.2f}s  frame {rec.frame:6d}  {rec.decision.upper():5s}  {who:20s}  "
                f"score {score}  ({rec.reason})",
                flush=True,
            )

    return run_door(
        cfg,
        source_spec=args.source,
        headless=args.headless,
        realtime=args.realtime,
        db=args.db,
        emit=emit,
        signals=signals,
    )


# -- enrol -----------------------------------------------------------------------------------------


def cmd_enroll(args: argparse.Namespace) -> int:
    from appliance.access.enrolment import embed_photos
    from appliance.app.checked_enrolment import enrol_new_user
    from appliance.app.wiring import build_detector, build_embedder, open_gallery, quality_limits
    from appliance.vision.images import read_image

    cfg = _config(args)
    if args.at_door:
        if args.images:
            raise ConfigError("give photos or --at-door, not both")
        with open_gallery(cfg, args.db) as gallery:
            gallery.stage_enrolment(args.name, args.role)
        print(f"{args.name} will be the next person enrolled with the door's enrol button")
        return 0
    if not args.images:
        raise ConfigError("give at least one photo of the person, or --at-door to enrol them at the door")
    photos = [(str(p), read_image(p)) for p in args.images]
    detector, embedder = build_detector(cfg), build_embedder(cfg)
    embeddings, qualities = embed_photos(photos, detector, embedder, quality_limits(cfg))
    with open_gallery(cfg, args.db) as gallery:
        user = enrol_new_user(
            gallery,
            args.name,
            embeddings,
            [q.sharpness for q in qualities],
            embedder.model_id,
            cfg.enrolment.duplicate_threshold,
            role=args.role,
        )
    if args.json:
        _print_json(
            {
                "user": user.name,
                "role": user.role,
                "templates": len(embeddings),
                "model_id": embedder.model_id,
            }
        )
    else:
        print(f"enrolled {user.name} ({user.role}) with {len(embeddings)} template(s) of {embedder.model_id}")
    return 0


# -- users -----------------------------------------------------------------------------------------


def _add_photos(args: argparse.Namespace, cfg: Config) -> int:
    """`users add-photos NAME PHOTO...`: more templates for an existing user, with enrolment's checks."""
    from appliance.access.enrolment import embed_photos
    from appliance.app.checked_enrolment import add_user_photos
    from appliance.app.wiring import build_detector, build_embedder, open_gallery, quality_limits
    from appliance.vision.images import read_image

    photos = [(str(p), read_image(p)) for p in args.images]
    detector, embedder = build_detector(cfg), build_embedder(cfg)
    embeddings, qualities = embed_photos(photos, detector, embedder, quality_limits(cfg))
    with open_gallery(cfg, args.db, create=False) as gallery:
        user, n = add_user_photos(
            gallery,
            args.name,
            embeddings,
            [q.sharpness for q in qualities],
            embedder.model_id,
            cfg.enrolment.duplicate_threshold,
            labels=[name for name, _ in photos],
        )
    print(f"added {n} template(s) of {embedder.model_id} to {user.name}")
    return 0


def _show_site_removal(gallery: Gallery, name: str, as_json: bool) -> bool:
    """Where the removal of `name` stands at the site ([site] on); False if they were not removed."""
    from appliance.gallery.replica import site_removal

    removal = site_removal(gallery, name)
    if removal is None:
        return False
    if removal.version is None:
        where = "not yet sent to the other doors (is `facegate sync` running?)"
    elif not removal.published:
        where = "not yet on the broker (the other doors get it when it is reachable)"
    elif removal.pending:
        where = f"still pending at {', '.join(removal.pending)} (they remove them when they come back)"
    else:
        where = "done at every door of the site"
    if as_json:
        version = None if removal.version is None else list(removal.version)
        _print_json(
            {"name": removal.name, "removed": True, "version": version, "published": removal.published,
             "pending": removal.pending}
        )  # fmt: skip
    else:
        print(f"{removal.name} was removed; the removal is {where}")
    return True


def cmd_users(args: argparse.Namespace) -> int:
    import dataclasses

    from appliance.app.wiring import open_gallery

    cfg = _config(args)
    if args.action == "add-photos":
        return _add_photos(args, cfg)
    # Every users action reads or edits existing users: a missing file is a mistyped path.
    with open_gallery(cfg, args.db, create=False) as gallery:
        if args.action == "list":
            users = gallery.users()
            if args.json:
                _print_json([dataclasses.asdict(u) for u in users])
            elif not users:
                print("no users enrolled; add one with `facegate enroll NAME PHOTO...`")
            else:
                for u in users:
                    state = "active" if u.active else "inactive"
                    print(f"{u.name:24s} {u.role:6s} {state:9s} {u.templates} template(s)")
        elif args.action == "show":
            if cfg.site.site_id and _show_site_removal(gallery, args.name, args.json):
                return 0
            user = gallery.user(args.name)
            info = dataclasses.asdict(user)
            if args.json:
                _print_json(info)
            else:
                for key, value in info.items():
                    if key in ("created", "valid_from", "valid_until") and value is not None:
                        value = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
                    print(f"{key:12s} {value}")
        elif args.action == "rename":
            user = gallery.rename(args.name, args.new_name)
            print(f"renamed {args.name} to {user.name}")
        elif args.action == "remove":
            n = gallery.remove(args.name)
            print(f"removed {args.name} and {n} template(s); past events are kept")
        elif args.action in ("activate", "deactivate"):
            gallery.set_active(args.name, args.action == "activate")
            print(f"{args.name} is now {args.action}d")
    return 0


# -- events ----------------------------------------------------------------------------------------


def cmd_events(args: argparse.Namespace) -> int:
    import dataclasses

    from appliance.app.wiring import open_gallery

    cfg = _config(args)
    if args.csv is not None:
        check_output_path(args.csv, "--csv", force=args.force, cfg=cfg, db=args.db, allow_stdout=True)
    with open_gallery(cfg, args.db, create=False) as gallery:
        if args.csv is not None:
            if str(args.csv) == "-":
                n = gallery.export_events_csv(sys.stdout)
            else:
                with open(args.csv, "w", newline="") as out:
                    n = gallery.export_events_csv(out)
                print(f"wrote {n} events to {args.csv}", file=sys.stderr)
            return 0
        events = gallery.events(limit=args.limit)
    if args.json:
        for e in events:
            _print_json(dataclasses.asdict(e))
    else:
        for e in events:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.time))
            score = "" if e.score is None else f" score {e.score:.3f}"
            print(f"{when}  {e.kind:13s} {e.name or '-':20s}{score}  {e.reason}")
    return 0


# -- config, doctor, lock --------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _config(args)
    for warning in config_warnings(cfg):
        print(f"facegate: warning: {warning}", file=sys.stderr)
    print(f"{cfg.path or 'built-in defaults'}: ok")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from appliance.app.doctor import run_checks

    path = args.config if args.config is not None else default_config_path()

    def mqtt(cfg: Config) -> str | None:
        from appliance.integrations.mqtt_client import check_broker

        return check_broker(cfg.mqtt) if cfg.mqtt.host and not args.no_mqtt else None

    def site(cfg: Config) -> str | None:
        if not cfg.site.site_id or args.no_mqtt:  # like the broker: `facegate sync`'s, not the door's
            return None
        from appliance.sites.records import SiteKey, read_key_file
        from appliance.sites.sync import check_site_config

        check_site_config(cfg)
        key = SiteKey(read_key_file(cfg.site.key_file), cfg.site.site_id)
        return f"site {cfg.site.site_id} as door {cfg.site.door_id or cfg.mqtt.device_id}, key id {key.kid}"

    results = run_checks(
        path,
        db=args.db,
        headless=args.headless,
        check_camera=not args.no_camera,
        extra=[("mqtt", mqtt), ("site", site)],
    )
    failed = [r for r in results if not r.ok]
    if args.json:
        _print_json([r._asdict() for r in results])
    else:
        for r in results:
            print(f"{'ok  ' if r.ok else 'FAIL'}  {r.name:8s} {r.detail}")
        print(
            "all checks passed"
            if not failed
            else f"{len(failed)} check(s) failed: fix them and run `facegate doctor` again"
        )
    return 1 if failed else 0


def cmd_mqtt(args: argparse.Namespace) -> int:
    """The Home Assistant bridge: the door link to the MQTT broker, until SIGTERM."""
    from appliance.integrations.bridge import run_bridge

    cfg = _config(args)
    if not args.verbose:
        logging.getLogger().setLevel(cfg.service.log_level)
    if not cfg.mqtt.host:
        raise ConfigError(
            f"{cfg.path or 'built-in defaults'}: [mqtt] host is not set; set it to your MQTT broker "
            '(README "Home Assistant")'
        )
    return run_bridge(cfg, __version__)


def cmd_sync(args: argparse.Namespace) -> int:
    """Site replication: this door's gallery with the other doors' over the MQTT broker, until SIGTERM."""
    from appliance.sites.records import make_key_file

    if args.make_key is not None:
        make_key_file(args.make_key)
        print(f"wrote a new site key to {args.make_key} (mode 0600): copy it to every door of the site")
        return 0
    from appliance.app.wiring import open_gallery
    from appliance.sites.sync import check_site_config, run_sync
    from appliance.vision.embedder import MODEL_ID

    cfg = _config(args)
    if not args.verbose:
        logging.getLogger().setLevel(cfg.service.log_level)
    check_site_config(cfg)
    with open_gallery(cfg, args.db) as gallery:
        return run_sync(cfg, gallery, MODEL_ID)


def cmd_lock(args: argparse.Namespace) -> int:
    """Drive the relay to locked. Reads only the relay settings, so that the relock after a crash
    (ExecStopPost) works from a damaged config: what it ignored is a warning on stderr, not an error."""
    from appliance.app.relay_memory import recall_relay
    from appliance.config import load_relay_settings
    from appliance.hardware.actuators import RelayDoorLock, make_pin_factory

    path = args.config if args.config is not None else default_config_path()
    g, warnings = load_relay_settings(path, fallback=recall_relay())
    for line in warnings:
        print(f"facegate: warning: {line}", file=sys.stderr)
    factory = make_pin_factory("mock" if args.headless else g.pin_factory)
    with RelayDoorLock(g.relay_pin, active_high=g.relay_active_high, pin_factory=factory) as relay:
        relay.lock()
    print(f"relay on GPIO{g.relay_pin} driven to locked")
    return 0


# -- web -------------------------------------------------------------------------------------------


def _read_new_password() -> str:
    """A new admin password from the terminal (asked twice, not echoed) or one line of stdin; never argv."""
    import getpass

    if sys.stdin.isatty():
        password = getpass.getpass("new web admin password: ")
        if getpass.getpass("the same again: ") != password:
            raise ConfigError("the two passwords differ; run `facegate web --set-password` again.")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise ConfigError("no password given; type it when asked, or pipe it on standard input.")
    return password


def cmd_web(args: argparse.Namespace) -> int:
    from appliance.web.security import set_password

    cfg = _config(args)
    if args.set_password:
        path = cfg.web.password_file
        if not path.parent.is_dir():
            raise ConfigError(
                f"{path}: folder {path.parent} does not exist; create it or check [gallery] path."
            )
        set_password(path, args.admin, _read_new_password())
        print(f"password of web admin {args.admin} saved in {path}")
        return 0
    if not args.verbose:
        logging.getLogger().setLevel(cfg.service.log_level)
    for warning in config_warnings(cfg):
        log.warning("%s", warning)
    from appliance.app.wiring import open_gallery
    from appliance.web.server import serve

    with open_gallery(cfg, args.db):  # the first start of a new install creates the gallery
        pass
    serve(cfg, args.db, args.host or cfg.web.host, args.port or cfg.web.port)
    return 0


# -- eval, bench, demo -----------------------------------------------------------------------------


def _eval_models(args: argparse.Namespace, cfg: Config) -> tuple[Any, Any, Config]:
    import dataclasses

    from appliance.app.wiring import build_detector, build_embedder

    if args.detector_variant:
        cfg = dataclasses.replace(
            cfg, detector=dataclasses.replace(cfg.detector, variant=args.detector_variant)
        )
    if args.embedder_variant:
        cfg = dataclasses.replace(
            cfg, embedder=dataclasses.replace(cfg.embedder, variant=args.embedder_variant)
        )
    if getattr(args, "min_face", None) is not None:
        cfg = dataclasses.replace(cfg, detector=dataclasses.replace(cfg.detector, min_face_px=args.min_face))
    return build_detector(cfg), build_embedder(cfg), cfg


def cmd_eval(args: argparse.Namespace) -> int:
    from appliance.evaluation import accuracy

    cfg = _config(args)
    plot = getattr(args, "plot", None)
    if args.json:
        check_output_path(args.json, "--json", force=args.force, cfg=cfg)
    if plot:
        check_output_path(plot, "--plot", force=args.force, cfg=cfg)
        if args.json and Path(plot).absolute() == Path(args.json).absolute():
            raise ConfigError(f"--json and --plot are both {plot}; give them different files.")
    detector, embedder, cfg = _eval_models(args, cfg)
    progress = accuracy.TextProgress(f"eval {args.benchmark}")
    if args.benchmark == "lfw":
        root = Path(args.root)
        if not root.is_dir():
            raise ConfigError(f"{root}: no such folder; give the LFW folder with --root")
        pairs = Path(args.pairs) if args.pairs else root / "pairs.txt"
        result = accuracy.eval_lfw(root, pairs, detector, embedder, progress)
        summary = (
            f"LFW View 2: accuracy {result['accuracy'] * 100:.2f}% +- {result['accuracy_std'] * 100:.2f} "
            f"(10-fold), EER {result['eer'] * 100:.2f}%, TAR@FAR1e-3 {result['tar_at_far_1e-3'] * 100:.2f}%, "
            f"no face in {result['no_face']} of {result['images']} images, {result['pairs']} pairs"
        )
        if plot:
            from appliance.evaluation.plot import roc_png

            roc_png(result["roc"]["far"], result["roc"]["tar"], Path(plot), f"LFW ROC ({embedder.model_id})")
    elif args.benchmark == "door":
        result = accuracy.eval_door(
            Path(args.root),
            detector,
            embedder,
            args.enrol_images,
            progress,
            pick=accuracy.face_nearest_centre,
            threshold=cfg.policy.match_threshold,
        )
        summary = (
            f"door (1:N): gallery {result['gallery_size']}, rank-1 {result['rank1'] * 100:.2f}%, "
            f"FNIR {result['fnir_at_fpir_1e-2']:.3f} at FPIR 1% "
            f"(threshold {result['threshold_at_fpir_1e-2']:.3f}), "
            f"FNIR {result['fnir_at_fpir_1e-3']:.3f} at FPIR 0.1% "
            f"(threshold {result['threshold_at_fpir_1e-3']:.3f})"
        )
    elif args.benchmark == "pad":
        from appliance.app.wiring import build_door_detector
        from appliance.evaluation import pad

        if args.mode:
            cfg = dataclasses.replace(cfg, liveness=dataclasses.replace(cfg.liveness, mode=args.mode))
        root = Path(args.root)
        rows = pad.read_labels(root, Path(args.labels) if args.labels else None)
        presentations = pad.group_presentations(root, rows) + pad.live_videos(args.also_live or [])
        result = pad.eval_pad(presentations, cfg, build_door_detector(cfg).detector, embedder, progress)
        summary = pad.format_summary(result)
    else:
        result = accuracy.eval_detect(
            Path(args.images), Path(args.annotations), detector, DOOR_FACE_PX, progress
        )
        summary = (
            f"detection on {result['images']} images: AP50 {result['ap50']:.3f}, "
            f"recall {result['recall50']:.3f}; "
            f"door-size faces (>= {DOOR_FACE_PX:g} px): AP50 {result['ap50_door']:.3f}, "
            f"recall {result['recall50_door']:.3f}"
        )
    result = {k: v for k, v in result.items() if k != "roc"} | {
        "detector": cfg.detector.variant,
        "embedder": cfg.embedder.variant,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(summary)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from appliance.evaluation.bench import run_bench

    cfg = _config(args)
    if args.json:
        check_output_path(args.json, "--json", force=args.force, cfg=cfg)
    result = run_bench(cfg, video=args.video)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from appliance.evaluation.demo import run_demo

    if not args.verbose:
        # The demo's own lines tell the story; the door's INFO log (relay, start, stop) would
        # interleave with them on the terminal. -v shows it.
        logging.getLogger().setLevel(logging.WARNING)
    return run_demo(_config(args), workdir=args.workdir)


# -- parser ----------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose leaf commands take options and positionals in any order.

    `facegate enroll bob --role admin bob.jpg` needs intermixed parsing (argparse otherwise gives
    IMAGE... nothing once an option interrupts the positionals); parsers with sub-commands parse as usual.
    """

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self._intermixing or self._subparsers is not None:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def _shared_options(*, nested: bool = False) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The --config/-v and --db parent parsers. nested=True for the commands below `users` and `eval`,
    which also take them: there an option not given leaves no default, so it cannot undo the value
    given before the action (`facegate users --db X list`)."""
    unset = {"default": argparse.SUPPRESS} if nested else {}
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        help="config file (default: $FACEGATE_CONFIG, ./config.toml, /etc/facegate/config.toml)",
        **unset,
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr", **unset)
    with_db = argparse.ArgumentParser(add_help=False)
    with_db.add_argument("--db", type=Path, help="gallery database file (overrides [gallery] path)", **unset)
    return common, with_db


def _eval_options(common: argparse.ArgumentParser, *, nested: bool = False) -> argparse.ArgumentParser:
    """The options every `eval` benchmark takes, on `eval` itself and (nested=True) on each benchmark."""
    unset = {"default": argparse.SUPPRESS} if nested else {}
    opts = argparse.ArgumentParser(add_help=False, parents=[common])
    opts.add_argument("--json", metavar="OUT", help="write the figures as one JSON object to OUT", **unset)
    opts.add_argument("--force", action="store_true", help="overwrite existing output files", **unset)
    opts.add_argument(
        "--detector-variant", choices=("f32", "int8"), help="override [detector] variant", **unset
    )
    opts.add_argument(
        "--embedder-variant", choices=("f16", "int8"), help="override [embedder] variant", **unset
    )
    return opts


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-command per job; options may come before or after positionals."""
    common, with_db = _shared_options()
    nested_common, nested_db = _shared_options(nested=True)

    parser = _Parser(prog="facegate", description="Face-verification door access for the Raspberry Pi.")
    parser.add_argument("--version", action="version", version=f"facegate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str,
        func: Callable[[argparse.Namespace], int],
        help: str,
        parents: Sequence[argparse.ArgumentParser],
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=list(parents))
        p.set_defaults(func=func)
        return p

    p = add(
        "run",
        cmd_run,
        "watch the camera (or replay a file) and open the door for enrolled users",
        [common, with_db],
    )
    p.add_argument(
        "--source", help="camera or input: picamera, usb:N, an rtsp:// URL, a video file or an image folder"
    )
    p.add_argument(
        "--headless",
        action="store_true",
        help="drive gpiozero's mock pins instead of real GPIO (no Pi needed)",
    )
    p.add_argument(
        "--realtime",
        action="store_true",
        help="replay files at their recorded frame rate instead of as fast as possible",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per decision: t, frame, decision, user, score, reason",
    )
    p.add_argument(
        "--redetect-every",
        type=int,
        metavar="N",
        help="override [detector] redetect_every: search the whole frame every N frames (1 = every frame)",
    )

    p = add(
        "enroll",
        cmd_enroll,
        "enrol a new user from photos, each showing only that person's face",
        [common, with_db],
    )
    p.add_argument("name", help="the new user's name (unique)")
    p.add_argument(
        "images",
        nargs="*",
        type=Path,
        metavar="IMAGE",
        help="photos of the user; 3 to 5 varied ones work best",
    )
    p.add_argument(
        "--at-door",
        action="store_true",
        help="no photos: give this name to the next person enrolled with the door's enrol button",
    )
    p.add_argument(
        "--role", choices=("user", "admin"), default="user", help="admin may approve enrolments at the door"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = add("users", cmd_users, "list, show, rename, remove, activate or deactivate users", [common, with_db])
    users = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    u = users.add_parser(
        "list", help="every user with role, state and template count", parents=[nested_common, nested_db]
    )
    u.add_argument("--json", action="store_true", help="print a JSON list")
    for action, text in (
        ("show", "one user's details"),
        ("remove", "delete a user and their templates (events are kept)"),
        ("activate", "let a user in again"),
        ("deactivate", "stop letting a user in, keeping their templates"),
    ):
        u = users.add_parser(action, help=text, parents=[nested_common, nested_db])
        u.add_argument("name", help="user name")
        if action == "show":
            u.add_argument("--json", action="store_true", help="print JSON")
    u = users.add_parser(
        "add-photos",
        help="add photos to an existing user (more angles, glasses, or after a model change)",
        parents=[nested_common, nested_db],
    )
    u.add_argument("name", help="user name")
    u.add_argument("images", nargs="+", type=Path, metavar="PHOTO", help="photos with one face each")
    u = users.add_parser(
        "rename",
        help="rename a user (e.g. one enrolled at the door with an automatic name)",
        parents=[nested_common, nested_db],
    )
    u.add_argument("name", help="current name")
    u.add_argument("new_name", help="new name")

    p = add(
        "events",
        cmd_events,
        "recent grants, denies and changes, newest first, or all as CSV",
        [common, with_db],
    )
    p.add_argument("--limit", type=int, default=50, help="how many recent events to show (default 50)")
    p.add_argument(
        "--csv", type=Path, metavar="FILE", help="export every event as CSV to FILE ('-' for stdout)"
    )
    p.add_argument("--force", action="store_true", help="let --csv overwrite an existing file")
    p.add_argument("--json", action="store_true", help="print one JSON object per event")

    add(
        "check-config",
        cmd_check_config,
        "validate the config file: unknown keys and bad values are reported",
        [common],
    )

    p = add(
        "doctor",
        cmd_doctor,
        "check models, camera, GPIO and database, and say how to fix what is wrong",
        [common, with_db],
    )
    p.add_argument("--headless", action="store_true", help="check the GPIO wiring against mock pins")
    p.add_argument("--no-camera", action="store_true", help="skip opening the camera")
    p.add_argument(
        "--no-mqtt", action="store_true", help="skip the broker check (the door service has no network)"
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON")

    add(
        "mqtt",
        cmd_mqtt,
        "bridge the door to Home Assistant over MQTT (a lock, events, last user; see [mqtt])",
        [common],
    )

    p = add(
        "sync",
        cmd_sync,
        "replicate users with the other doors of the site over the MQTT broker (see [site])",
        [common, with_db],
    )
    p.add_argument("--make-key", type=Path, metavar="FILE", help="write a new site key to FILE and exit")

    p = add(
        "lock",
        cmd_lock,
        "drive the relay to locked and exit (used by the service after every stop)",
        [common],
    )
    p.add_argument("--headless", action="store_true", help="use mock pins")

    p = add("web", cmd_web, "serve the admin web page (users, enrolment, events, status)", [common, with_db])
    p.add_argument(
        "--set-password",
        action="store_true",
        help="set an admin's password (asked on the terminal or read from stdin) and exit",
    )
    p.add_argument("--admin", default="admin", help="the admin whose password --set-password sets")
    p.add_argument("--host", help="override [web] host")
    p.add_argument("--port", type=int, help="override [web] port")

    p = add(
        "eval",
        cmd_eval,
        "measure accuracy on public benchmarks (LFW, a 1:N door benchmark, WIDER FACE, liveness)",
        [_eval_options(common)],
    )
    bench = p.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    model_opts = _eval_options(nested_common, nested=True)
    e = bench.add_parser(
        "lfw", parents=[model_opts], help="LFW View 2 verification through detection, alignment and embedding"
    )
    e.add_argument("--root", required=True, help="LFW folder (name/name_0001.jpg)")
    e.add_argument("--pairs", help="pairs file (default ROOT/pairs.txt)")
    e.add_argument("--plot", metavar="OUT.png", help="write the ROC curve as a PNG")
    e = bench.add_parser("door", parents=[model_opts], help="open-set 1:N identification built from LFW")
    e.add_argument("--root", required=True, help="folder with one sub-folder of images per person")
    e.add_argument("--enrol-images", type=int, default=1, help="images enrolled per person (default 1)")
    e = bench.add_parser(
        "pad", parents=[model_opts], help="liveness: APCER/BPCER of prints and screens through the door loop"
    )
    e.add_argument("--root", required=True, metavar="DIR", help="folder of labelled images and videos")
    e.add_argument(
        "--labels", metavar="FILE", help="CSV with columns path,kind,subject (default DIR/labels.csv)"
    )
    e.add_argument(
        "--also-live",
        type=Path,
        action="append",
        metavar="PATH",
        help="more live videos (a file, or a folder searched for videos) counted toward BPCER; repeatable",
    )
    e.add_argument("--mode", choices=("off", "passive", "challenge"), help="override [liveness] mode")
    e = bench.add_parser("detect", parents=[model_opts], help="face detection AP on WIDER FACE-format boxes")
    e.add_argument("--images", required=True, help="images folder")
    e.add_argument("--annotations", required=True, help="WIDER-format box file")
    e.add_argument(
        "--min-face",
        type=int,
        metavar="PX",
        help="smallest face the detector searches for, pixels (default: [detector] min_face_px)",
    )

    p = add("bench", cmd_bench, "print per-stage latency, fps, memory and start-up time", [common])
    p.add_argument("--json", metavar="OUT", help="write the figures as one JSON object to OUT")
    p.add_argument("--force", action="store_true", help="let --json overwrite an existing file")
    p.add_argument(
        "--video",
        type=Path,
        help="video to replay (default: ../shared/data/video/short_hamilton_clip.mp4 if present, "
        "else a generated walk-up clip)",
    )

    p = add(
        "demo",
        cmd_demo,
        "enrol a person from packaged photos, replay walk-up clips, print decisions",
        [common],
    )
    p.add_argument(
        "--workdir", type=Path, help="where to put the demo gallery and clips (default .cache/demo)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `facegate` and `python -m appliance`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except ApplianceError as exc:
        if os.environ.get("DEBUG") == "1":
            raise
        print(f"facegate: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `facegate events | head -1`: the reader left; say nothing more and exit as a pipe writer does.
        # stdout is pointed at /dev/null so that Python's exit-time flush raises nothing either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        return 130
    except (OSError, MemoryError, OverflowError) as exc:
        # Faults no code path turned into an ApplianceError: still one line, the traceback only with -v.
        if args.verbose or os.environ.get("DEBUG") == "1":
            raise
        print(f"facegate: error: {_describe_fault(exc)}", file=sys.stderr)
        return 1


def _describe_fault(exc: BaseException) -> str:
    """One line for an unexpected OS, memory or overflow error, saying what to do."""
    if isinstance(exc, MemoryError):
        return "out of memory: the input is too large for this device; use a smaller image or video."
    if isinstance(exc, OverflowError):
        return f"a number is out of range ({exc}); give a smaller value."
    where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        return f"{where}the disk is full; free some space and try again."
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{where}permission denied; run as a user who may read and write it (e.g. the facegate user)."
    return f"{where}{reason}; check the path and try again (add -v for details)."
