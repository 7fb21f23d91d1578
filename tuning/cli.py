"""The ``ovatune`` command line: run, sweep, replicate, evaluate, export, ui, submit, status, logs,
corrupt. ``tuning.parser`` reads the arguments; here the checks every command shares (the home, the
tracking store, write permission, the data) run before Ray starts, then ``tuning.commands`` does
the command.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from search_spaces import get_space
from trainables import VERBOSE_ENV
from trainables.data import DatasetNotAvailable, check_available
from trainables.loss_names import LOSS_TITLES
from tuning import commands
from tuning.commands import fail
from tuning.errors import first_line
from tuning.parser import build_parser
from tuning.timeline import mark


def console_main() -> NoReturn:
    """The installed ``ovatune`` command: :func:`main`, then ``tuning.cluster.exit_process``: the exit
    hooks, without the interpreter's teardown, and a local Ray ended at once instead of waiting
    for its shutdown."""
    from tuning.cluster import exit_process

    try:
        code = main()
    except SystemExit as stop:  # SIGTERM (Ray's handler), or argparse refusing the arguments
        code = 0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
    exit_process(code)


def main(argv: list[str] | None = None) -> int:
    """The ``ovatune`` command. A mistake or a fault ends in one ``ovatune: error:`` line (exit 2 for
    what the user asked, 1 for what went wrong); ``--debug`` shows the traceback of the unexpected."""
    mark("cli imported")
    args = build_parser().parse_args(argv)
    mark("arguments parsed")
    try:
        return _main(args, argv)
    except KeyboardInterrupt:  # Ctrl-C outside a sweep (which handles its own): stop quietly
        print("ovatune: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        from tuning.store import permission_denied, tracking_user

        if permission_denied(error):  # the server's own check, where ovatune's could not tell beforehand
            return fail(f"the MLflow server refused user {tracking_user()!r}: {first_line(error)}; ask a user with "
                         "MANAGE on the experiment and its registered models (or the server's admin) for EDIT "
                         "(README: team servers)", 1)  # fmt: skip
        where = f" ({error.filename})" if isinstance(error, OSError) and error.filename else ""
        return fail(f"{type(error).__name__}{where}: {first_line(error)} (--debug shows the traceback)", 1)
    finally:
        mark("command done")  # what follows is the exit (tuning.cluster.exit_process, or the caller's)


def _check_home(settings) -> str | None:
    """Why the home cannot hold what this command writes (Ray results, reports, the SQLite store), or None."""
    import tempfile

    try:
        settings.home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=settings.home):
            pass
    except OSError as error:
        return (f"the ovatune home {settings.home} is not writable ({error.strerror or error}): pass --home "
                "(or set OVATUNE_HOME to) a folder you can write")  # fmt: skip
    return None


def _main(args, argv: list[str] | None) -> int:
    if args.command == "corrupt":
        return commands.corrupt(args)
    if args.command in ("submit", "status", "logs"):
        return commands.jobs(args, argv if argv is not None else sys.argv[1:])
    from tuning.settings import resolve_settings
    from tuning.store import TrackingUnavailable, check_tracking_uri, prepare_store
    from tuning.tracking import quiet_mlflow_logs

    settings = resolve_settings(args.home, args.tracking_uri, getattr(args, "storage", None))
    # where the URI came from, as its errors name it: the user's environment is not the option
    named = (
        "MLFLOW_TRACKING_URI" if not args.tracking_uri and os.environ.get("MLFLOW_TRACKING_URI") else "--tracking-uri"
    )
    try:
        check_tracking_uri(settings.tracking_uri, named=named)
    except TrackingUnavailable as error:
        return fail(str(error))
    if args.command != "ui" and (problem := _check_home(settings)):
        return fail(problem)
    if hasattr(args, "storage") and settings.storage:  # the commands that run Tune jobs
        from tuning.settings import has_secret
        from tuning.storage import KEYS_IN_STORAGE, StorageUnavailable, check_storage

        if has_secret(settings.storage):
            return fail(KEYS_IN_STORAGE)
        try:
            check_storage(settings)
        except StorageUnavailable as error:
            return fail(str(error))
    mark("store and home checked")
    if getattr(args, "verbose", False):  # the libraries' notices, the trials' too (tuning.cluster.init_ray)
        os.environ[VERBOSE_ENV] = "1"
    else:
        from tuning.cluster import quiet_ray_notices

        quiet_mlflow_logs()
        quiet_ray_notices()
    try:
        prepare_store(settings.tracking_uri)
    except TrackingUnavailable as error:
        return fail(str(error), 1)
    mark("store ready")
    if args.command == "ui":
        return commands.ui(settings, args.host, args.port)
    space = get_space(args.experiment)
    if args.command == "export":  # reads only
        return commands.export(space, settings, args)
    from tuning.champion import registered_name
    from tuning.store import write_denied

    denied = write_denied(
        settings.tracking_uri, space.name, [registered_name(space.name, loss) for loss in LOSS_TITLES]
    )
    if args.command == "evaluate":
        if denied and not args.no_record:  # refused before any work, with the way that needs no EDIT
            return fail(f"{denied}; or measure and report without recording: "
                        f"ovatune evaluate {space.name} --no-record")  # fmt: skip
        return commands.evaluate(space, settings, args.address, args.sweep, record=not args.no_record)
    if denied:  # before Ray starts: a sweep or a replicate set records runs and moves @champion
        return fail(denied)
    if args.command == "replicate":
        return commands.replicate(space, settings, args)
    try:
        check_available(space.dataset, args.data_dir, download=args.download)
    except DatasetNotAvailable as error:
        return fail(str(error))
    mark("permissions and data checked")
    code = commands.sweep(space, settings, args, evaluation_next=args.command == "run" and not args.replicates)
    if code == 0 and args.command == "run" and args.replicates:
        code = commands.replicate(space, settings, args)
    if code == 0 and args.command == "run":
        code = commands.evaluate(space, settings, args.address)
    return code


if __name__ == "__main__":
    sys.exit(main())
