"""The ``ovatune`` command line: run, sweep, evaluate, export, ui, submit, status, logs, corrupt.

Every choice (experiment, loss, scheduler, sampler, format, promotion policy) comes from its
registry and is checked, like the tracking store and ``--set``, before Ray starts. One flag has one
meaning everywhere: ``--losses`` is a list of losses, ``--address`` a Ray cluster, ``--dashboard``
a cluster's dashboard (its Jobs API).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import NoReturn

from search_spaces import SPACES, get_space
from trainables.data import DATASETS, DatasetNotAvailable, check_available
from trainables.loss_names import LOSS_TITLES
from tuning.errors import first_line, one_line
from tuning.timeline import mark

SMOKE_TEST = {"trials": 1, "epochs": 2}


def _number(text: str, kind: type):
    import math

    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if not math.isfinite(value):  # float("inf") parses: a trial asking for it would wait forever
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = _number(text, int)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _seed(text: str) -> int:
    from trainables.trial_config import SEED_MAX

    value = _number(text, int)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {SEED_MAX} (a 32-bit seed), got {text}")
    return value


def _replicates(text: str) -> int:
    value = _number(text, int)
    if value < 2:
        raise argparse.ArgumentTypeError(
            f"needs at least 2 replicates (an interval over seeds needs two), got {text!r}"
        )
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _port(text: str) -> int:
    value = _number(text, int)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port from 1 to 65535, got {text}")
    return value


def _sweep_name(text: str) -> str:
    from tuning.engine import check_job_name

    try:
        return check_job_name(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _absolute_path(value: str) -> str:
    """Trials read the path in other processes, whose working directory is not the caller's."""
    return str(Path(value).expanduser().absolute())


def _names_in(registry, kind: str):
    """An argparse type for a comma-separated list of keys of ``registry``, refusing unknown ones
    with the valid choices."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in registry]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {kind} {', '.join(unknown) or text!r}; choose from: {', '.join(registry)}"
            )
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise argparse.ArgumentTypeError(f"{kind} {', '.join(repeated)} given more than once in {text!r}")
        return names

    return parse


_losses = _names_in(LOSS_TITLES, "loss")


def _corruption_names(text: str) -> list[str]:
    from trainables.data.corruptions import CORRUPTIONS  # torch: only when the option is given

    return _names_in(CORRUPTIONS, "corruption")(text)


class _Renamed(argparse.Action):
    """An old spelling of an option, kept for one release: it still works, and says its new name."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"ovatune: warning: {option_string} is now {self.new}; the old spelling goes in the next release",
              file=sys.stderr)  # fmt: skip
        setattr(namespace, self.dest, values)


# One example per command, shown at the end of its --help.
EXAMPLES = {
    "run": "ovatune run digits --smoke-test",
    "sweep": "ovatune sweep digits --losses ova,ova_dm --trials 20 --max-concurrent 2 --set batch_size=128",
    "replicate": "ovatune replicate digits --seeds 5",
    "evaluate": "ovatune evaluate digits --sweep digits-20261202-101500-a1b2c3",
    "ui": "ovatune ui --port 5000",
    "export": "ovatune export digits --losses ova_dm --format onnx --out exports",
    "submit": "ovatune submit cifar10 --trials 100 --dashboard http://HEAD:8265",
    "status": "ovatune status --dashboard http://HEAD:8265",
    "logs": "ovatune logs raysubmit_XXXX --dashboard http://HEAD:8265 --follow",
    "corrupt": "ovatune corrupt cifar100 --data-dir ~/data",
}


def _setting(text: str) -> tuple[str, object]:
    import json

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


VERBOSE_HELP = "Ray Tune's table of every trial instead of ovatune's one progress line, and the libraries' notices"


def _experiment_list() -> str:
    lines = ["experiments:"]
    for name, space in SPACES.items():
        data = "embedded data" if DATASETS[space.dataset].embedded else "--data-dir"
        lines.append(f"  {name:<9} {space.trials:>3} trials/loss  {data}")
    lines.append("losses: " + ", ".join(f"{name} ({title})" for name, title in LOSS_TITLES.items()))
    return "\n".join(lines)


def _add_store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", help="directory for Ray results, checkpoints, the MLflow store and reports "
                   "(default: $OVATUNE_HOME or ./ovatune-home)")  # fmt: skip
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite in the home)")


def _add_sweep_options(p: argparse.ArgumentParser, on_cluster_flag: bool = True) -> None:
    """The options of a sweep; ``on_cluster_flag`` False for ``submit``, whose sweep runs with
    ``--address auto`` (there ``--address`` is the old spelling of ``--dashboard``)."""
    p.add_argument("experiment", choices=list(SPACES), metavar="EXPERIMENT", help=f"one of: {', '.join(SPACES)}")
    p.add_argument("--losses", type=_losses, metavar="L1,L2",
                   help=f"comma-separated losses to sweep (default: all of {','.join(LOSS_TITLES)})")  # fmt: skip
    p.add_argument("--trials", type=_positive_int, help="trials per loss (default: the search space's budget)")
    p.add_argument("--epochs", type=_positive_int, help="override the space's epochs (shorter runs)")
    p.add_argument("--seed", type=_seed, help="seeds the samplers and the trials, 0 to 2**32-1 (default 0)")
    p.add_argument(
        "--max-concurrent", type=_positive_int, help="at most this many trials at once (default: as resources allow)"
    )
    p.add_argument(
        "--cpus-per-trial", type=_positive_float, help="CPUs (and torch threads) per trial (default: the space's)"
    )
    p.add_argument(
        "--gpus-per-trial", type=_non_negative_float, help="GPUs per trial; fractions pack trials on one GPU"
    )
    p.add_argument(
        "--workers-per-trial",
        type=_positive_int,
        help="run each trial as a Ray Train job of N DDP workers (gloo on CPU, NCCL on GPU), each with "
        "--cpus-per-trial and --gpus-per-trial; the space's batch_size is the global batch (default: the space's, else 1)",
    )
    from trainables.trial_metrics import SELECTION_METRICS
    from tuning.options import SAMPLERS, SCHEDULERS, described

    p.add_argument("--metric", choices=list(SELECTION_METRICS),
                   help="the validation metric that selects each loss's best trial, drives ASHA and decides "
                   "whether a champion is beaten (default: the experiment's, val_accuracy; --resume keeps its sweep's); "
                   + described({n: m.meaning for n, m in SELECTION_METRICS.items()}))  # fmt: skip
    p.add_argument("--verbose", action="store_true",
                   help=VERBOSE_HELP)  # fmt: skip
    p.add_argument("--scheduler", choices=list(SCHEDULERS), help=described(SCHEDULERS))
    p.add_argument("--sampler", choices=list(SAMPLERS), help=described(SAMPLERS))
    if on_cluster_flag:
        p.add_argument("--address", help="Ray cluster address ('auto' inside a cluster); default: start a local Ray")
    else:
        p.add_argument("--address", help=argparse.SUPPRESS)
    p.add_argument(
        "--resume", action="store_true", help="continue the latest (or --name) sweep of EXPERIMENT where it stopped"
    )
    p.add_argument("--name", type=_sweep_name,
                   help="sweep name: letters, digits, '.', '_', '-' (default: EXPERIMENT-<date>-<time>-<random>); "
                   "an existing one needs --resume")  # fmt: skip
    p.add_argument(
        "--data-dir",
        type=_absolute_path,
        default=os.environ.get("OVATUNE_DATA_DIR"),
        help="where on-disk datasets live ($OVATUNE_DATA_DIR)",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="download missing datasets into --data-dir first (torchvision's download=True: CIFAR-10/100 and "
        "SVHN; ImageNet and the -C sets cannot be downloaded automatically)",
    )
    p.add_argument(
        "--smoke-test", action="store_true", help="1 trial per loss, 2 epochs: checks the whole path in seconds"
    )
    from tuning.options import POLICIES

    p.add_argument("--promote", choices=list(POLICIES),
                   help="when each loss's best version becomes the champion: "
                   + "; ".join(f"{name}: {text}" for name, text in POLICIES.items())
                   + " (default: better; first with --smoke-test)")  # fmt: skip
    from trainables.trial_config import settable

    p.add_argument("--set", dest="settings", action="append", type=_setting, default=[], metavar="KEY=VALUE",
                   help="override a fixed setting of the trials, e.g. --set batch_size=128 --set hidden=[64,64] "
                   "(values are read as JSON, else kept as text; checked before anything runs); KEY is one of: "
                   + ", ".join(settable()) + " (not one the experiment searches)")  # fmt: skip
    _add_store_options(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ovatune",
        description="Hyperparameter sweeps comparing softmax, DM, one-vs-all and one-vs-all DM losses "
        "(Padhy et al., 2020) with Ray Tune, Optuna and MLflow.",
        epilog=_experiment_list() + "\n\nstart here:  ovatune run digits",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="sweep, promote the best model per loss, evaluate, print the comparison")
    _add_sweep_options(run)
    run.add_argument("--replicates", type=_replicates, metavar="R",
                     help="after the sweep, train each loss's champion configuration again with R new seeds "
                     "(as `ovatune replicate --seeds R`) and report every number over seeds (default: none)")  # fmt: skip
    sweep = sub.add_parser("sweep", help="run the random search and promote each loss's best trial")
    _add_sweep_options(sweep)
    replicate = sub.add_parser(
        "replicate",
        help="train each champion's configuration again with new seeds: the report's numbers over seeds",
        description="Retrain each loss's champion configuration with R seeds (new initial weights and data "
        "order; the data split stays the experiment's), as Ray Tune trials logged under one "
        "'<loss> replicates · <sweep>' MLflow run per loss. The champion that serves stays the selected "
        "model; `ovatune evaluate` then reports mean ± sd and 95% intervals over the seeds, and paired "
        "differences between the losses over seeds and test examples. An interrupted set resumes with --resume.",
    )
    replicate.add_argument(
        "experiment", choices=list(SPACES), metavar="EXPERIMENT", help=f"one of: {', '.join(SPACES)}"
    )
    replicate.add_argument("--seeds", type=_replicates, default=5, metavar="R",
                           help="replicates per loss, at least 2 (default 5, the paper's 'averaged over 5 runs')")  # fmt: skip
    replicate.add_argument(
        "--losses", type=_losses, metavar="L1,L2", help="whose champions (default: every loss that has one)"
    )
    replicate.add_argument("--seed", type=_seed, help="seeds the replicates' seeds, 0 to 2**32-1 (default 0)")
    replicate.add_argument("--max-concurrent", type=_positive_int, help="at most this many trials at once")
    replicate.add_argument(
        "--cpus-per-trial", type=_positive_float, help="CPUs per trial (default: as the champion's trials had)"
    )
    replicate.add_argument(
        "--gpus-per-trial", type=_non_negative_float, help="GPUs per trial (default: as the champion's trials had)"
    )
    replicate.add_argument(
        "--address", help="Ray cluster address ('auto' inside a cluster); default: start a local Ray"
    )
    replicate.add_argument("--resume", action="store_true", help="continue the latest (or --name) replicate set")
    replicate.add_argument("--verbose", action="store_true",
                           help=VERBOSE_HELP)  # fmt: skip
    replicate.add_argument(
        "--name", type=_sweep_name, help="the set's name (default: replicates-EXPERIMENT-<date>-<time>-<random>)"
    )
    _add_store_options(replicate)
    evaluate = sub.add_parser("evaluate", help="measure the champions: test, shift, OOD; figures and report.md")
    evaluate.add_argument("experiment", choices=list(SPACES), metavar="EXPERIMENT", help=f"one of: {', '.join(SPACES)}")
    evaluate.add_argument("--address", help="Ray cluster to evaluate on ('auto' inside one); default: a local Ray")
    evaluate.add_argument("--sweep", type=_sweep_name, metavar="NAME",
                          help="evaluate the models this sweep registered (champions or not) instead of the "
                          "champions; moves no alias; report in reports/EXPERIMENT/sweeps/NAME/")  # fmt: skip
    _add_store_options(evaluate)
    ui = sub.add_parser("ui", help="serve the MLflow UI for the store on 127.0.0.1")
    ui.add_argument("--port", type=_port, default=5000, help="TCP port, 1-65535 (default 5000)")
    ui.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    _add_store_options(ui)
    export = sub.add_parser(
        "export",
        help="write the champions as TorchScript, ONNX or MLflow models, each with a model card",
        description="Export each loss's champion (the registered model's `champion` alias) with its "
        "preprocessing, class names and a none-of-the-above threshold chosen on the validation split. "
        "Each <out>/<loss>/<format>/ holds the model, serving.json, model_card.md and manifest.json "
        "(SHA-256 of every file, checked on load by serving.ExportedModel).",
    )
    export.add_argument("experiment", choices=list(SPACES), metavar="EXPERIMENT", help=f"one of: {', '.join(SPACES)}")
    from tuning.options import FORMATS, described

    export.add_argument("--losses", type=_losses, metavar="L1,L2",
                        help="comma-separated losses (default: every loss with a champion)")  # fmt: skip
    export.add_argument("--loss", dest="losses", type=_losses, action=_Renamed, new="--losses")
    export.add_argument("--format", default="torchscript", choices=list(FORMATS),
                        help=described(FORMATS) + " (default: torchscript)")  # fmt: skip
    export.add_argument("--out", default="exports", help="output folder (default ./exports)")
    _add_store_options(export)
    submit = sub.add_parser(
        "submit",
        help="run a sweep as a Ray Job on a cluster (prints the job id)",
        description="Submit `ovatune sweep EXPERIMENT [options] --address auto` to a Ray cluster's Jobs API "
        "(--dashboard http://HEAD:8265, default $RAY_API_SERVER_ADDRESS), with this project as the job's "
        "working directory. Follow the job with `ovatune status` and `ovatune logs`.",
    )
    _add_sweep_options(submit, on_cluster_flag=False)
    _add_dashboard_option(submit)
    for command, text in (("status", "the state of submitted sweeps (all, or one job)"),
                          ("logs", "the output of a submitted sweep")):  # fmt: skip
        job = sub.add_parser(command, help=text)
        job.add_argument("job_id", nargs="?" if command == "status" else None, metavar="JOB_ID")
        _add_dashboard_option(job)
        job.add_argument("--address", dest="dashboard", action=_Renamed, new="--dashboard")
        if command == "logs":
            job.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    from trainables.data.corrupted_sets import CORRUPTED_SETS

    corrupt = sub.add_parser(
        "corrupt",
        help="write CIFAR-10-C / CIFAR-100-C (published layout) from the CIFAR test set",
        description="Corrupt the CIFAR test set with every corruption at intensities 1-5 and write "
        "<out>/<corruption>.npy (5 x 10000 images, intensity 1 first) and labels.npy, as the published "
        "CIFAR-10-C. cifar100 uses the paper's 17 corruptions (all but motion_blur and snow). Finished "
        "files are kept, so an interrupted run resumes where it stopped.",
    )
    corrupt.add_argument("dataset", choices=list(CORRUPTED_SETS), metavar="DATASET",
                         help=f"one of: {', '.join(CORRUPTED_SETS)}")  # fmt: skip
    corrupt.add_argument("--data-dir", type=_absolute_path, default=os.environ.get("OVATUNE_DATA_DIR"),
                         help="folder holding cifar-10-batches-py/ or cifar-100-python/ (default: $OVATUNE_DATA_DIR)")  # fmt: skip
    corrupt.add_argument("--out", help="output folder (default: <data-dir>/CIFAR-10-C or CIFAR-100-C)")
    corrupt.add_argument("--corruptions", type=_corruption_names,
                         help="comma-separated subset (default: all of the dataset's)")  # fmt: skip
    corrupt.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    corrupt.add_argument("--workers", type=_positive_int, help="processes on CPU (default: one per core)")
    corrupt.add_argument("--seed", type=_seed, default=0, help="fixes every random draw (default 0)")
    for name, command in sub.choices.items():
        # one meaning everywhere: show the traceback of an unexpected error
        command.add_argument("--debug", action="store_true", help="show the full traceback of an unexpected error")
        command.epilog = f"example:  {EXAMPLES[name]}"
    return parser


def _add_dashboard_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dashboard", metavar="URL", default=os.environ.get("RAY_API_SERVER_ADDRESS"),
                   help="the Ray cluster's dashboard, whose Jobs API runs the sweeps, e.g. http://HEAD:8265 "
                   "(default: $RAY_API_SERVER_ADDRESS)")  # fmt: skip


def console_main() -> NoReturn:
    """The installed ``ovatune`` command: :func:`main`, then an exit that ends a local Ray at once
    instead of waiting for its shutdown (``tuning.cluster.exit_process``)."""
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
        from tuning.tracking import permission_denied, tracking_user

        if permission_denied(error):  # the server's own check, where ovatune's could not tell beforehand
            return _fail(f"the MLflow server refused user {tracking_user()!r}: {first_line(error)}; ask a user with "
                         "MANAGE on the experiment and its registered models (or the server's admin) for EDIT "
                         "(README: team servers)", 1)  # fmt: skip
        where = f" ({error.filename})" if isinstance(error, OSError) and error.filename else ""
        return _fail(f"{type(error).__name__}{where}: {first_line(error)} (--debug shows the traceback)", 1)
    finally:
        mark("command done")  # what follows is the interpreter's exit: Ray's shutdown among its atexit hooks


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
        return _corrupt(args)
    if args.command in ("submit", "status", "logs"):
        return _jobs(args, argv if argv is not None else sys.argv[1:])
    from tuning.settings import resolve_settings
    from tuning.tracking import TrackingUnavailable, check_tracking_uri, prepare_store, quiet_mlflow_logs

    settings = resolve_settings(args.home, args.tracking_uri)
    try:
        check_tracking_uri(settings.tracking_uri)
    except TrackingUnavailable as error:
        return _fail(str(error))
    if args.command != "ui" and (problem := _check_home(settings)):
        return _fail(problem)
    mark("store and home checked")
    if not getattr(args, "verbose", False):  # --verbose: the libraries' notices too
        from tuning.cluster import quiet_ray_notices

        quiet_mlflow_logs()
        quiet_ray_notices()
    try:
        prepare_store(settings.tracking_uri)
    except TrackingUnavailable as error:
        return _fail(str(error), 1)
    mark("store ready")
    if args.command == "ui":
        return serve_ui(settings, args.host, args.port)
    space = get_space(args.experiment)
    if args.command == "export":  # reads only
        return _export(space, settings, args)
    from tuning.champion import registered_name
    from tuning.tracking import write_denied

    denied = write_denied(
        settings.tracking_uri, space.name, [registered_name(space.name, loss) for loss in LOSS_TITLES]
    )
    if args.command == "evaluate":
        return _evaluate(space, settings, args.address, args.sweep, read_only=denied)
    if denied:  # before Ray starts: a sweep or a replicate set records runs and moves @champion
        return _fail(denied)
    if args.command == "replicate":
        return _replicate(space, settings, args)
    try:
        check_available(space.dataset, args.data_dir, download=args.download)
    except DatasetNotAvailable as error:
        return _fail(str(error))
    mark("permissions and data checked")
    code = _sweep(space, settings, args)
    if code == 0 and args.command == "run" and args.replicates:
        code = _replicate(space, settings, args)
    if code == 0 and args.command == "run":
        code = _evaluate(space, settings, args.address)
    return code


def _export(space, settings, args) -> int:
    import mlflow
    from mlflow.tracking import MlflowClient

    from tuning.champion import NoChampion
    from tuning.export import ExportFailed, champion_losses, export_champion

    mlflow.set_tracking_uri(settings.tracking_uri)
    client = MlflowClient(settings.tracking_uri)
    losses = args.losses or champion_losses(space, client)
    if not losses:
        return _fail(f"{space.name} has no champions in {settings.display_uri}; run `ovatune run {space.name}` first")
    failed = 0
    for loss in losses:  # one champion that cannot be exported does not stop the others
        try:
            folder = export_champion(space, loss, args.format, args.out, client)
        except NoChampion as error:
            return _fail(str(error))
        except ExportFailed as error:
            failed += 1
            print(f"ovatune: error: {error}", file=sys.stderr)
            continue
        print(f"{loss:8s} -> {folder}")
    return 1 if failed else 0


def _jobs(args, argv: list[str]) -> int:
    from tuning import jobs

    address = args.dashboard
    if args.command == "submit" and args.address:  # submit's --address used to mean the dashboard
        print("ovatune: warning: submit --address is now --dashboard (the job's sweep always runs with "
              "--address auto); the old spelling goes in the next release", file=sys.stderr)  # fmt: skip
        address = args.address
    if not address:
        return _fail("the cluster's dashboard is needed: --dashboard http://HEAD:8265 (or RAY_API_SERVER_ADDRESS)")
    try:
        if args.command == "submit":
            # the sweep's options go through as given, without the dashboard (its --address is `auto` there)
            sweep_args, skip = [], False
            for token in argv[1:]:
                if skip or token in ("--address", "--dashboard"):
                    skip = not skip
                    continue
                if not token.startswith(("--address=", "--dashboard=")):
                    sweep_args.append(token)
            if jobs.password_in(sweep_args):
                return _fail("a password in --tracking-uri would be stored in the job's entrypoint, which everyone "
                             "who can list the cluster's jobs reads; give the head its MLflow credentials "
                             "(MLFLOW_TRACKING_USERNAME/PASSWORD or ~/.mlflow/credentials there) and submit "
                             "--tracking-uri http://HOST:PORT (README: team servers)")  # fmt: skip
            job_id = jobs.submit(address, sweep_args)
            print(f"submitted {job_id}\n  ovatune status {job_id} --dashboard {address}\n"
                  f"  ovatune logs {job_id} --dashboard {address} --follow")  # fmt: skip
        elif args.command == "status":
            print("\n".join(jobs.status_lines(address, args.job_id)) or "no jobs")
        else:
            jobs.print_logs(address, args.job_id, args.follow)
    except Exception as error:  # the SDK raises its own kinds (connection, authentication, unknown job)
        return _fail(f"Ray Jobs API at {address}: {one_line(error)}")
    return 0


def _corrupt(args) -> int:
    import torch

    from trainables.data import INTENSITIES
    from trainables.data.cifar import cifar_data_dir, read_cifar
    from trainables.data.corrupted_sets import CORRUPTED_SETS, write_corrupted

    if args.device != "cpu":
        if not args.device.startswith("cuda") or not torch.cuda.is_available():
            return _fail(f"device {args.device!r} is not available here; use cpu, or cuda on a machine with a GPU")
    corrupted = CORRUPTED_SETS[args.dataset]
    try:
        data_dir = cifar_data_dir(args.dataset, args.data_dir)
        images, labels = read_cifar(args.dataset, data_dir, train=False)
    except DatasetNotAvailable as error:
        return _fail(str(error))
    out = Path(args.out or Path(data_dir) / corrupted.folder)
    corruptions = args.corruptions or list(corrupted.corruptions)
    print(
        f"{args.dataset} test set: {len(images)} images -> {out} ({len(corruptions)} corruptions x {len(INTENSITIES)} intensities)"
    )
    started = time.time()
    status = write_corrupted(images, labels, out, corruptions, seed=args.seed, device=args.device, workers=args.workers)
    kept = [name for name, state in status.items() if state == "kept"]
    if kept:
        print(f"kept {len(kept)} finished file(s) from an earlier run: {', '.join(kept)}")
    print(f"done in {time.time() - started:.1f} s: {out}")
    return 0


def _fail(message: str, code: int = 2) -> int:
    """One ``ovatune: error:`` line; exit code 2 for what the user asked, 1 for what went wrong."""
    print(f"ovatune: error: {message}", file=sys.stderr)
    return code


def _sweep(space, settings, args) -> int:
    from mlflow.tracking import MlflowClient

    from trainables.trial_config import InvalidSetting, check_overrides
    from tuning.sweep import SweepRequest, run_sweep, selected_by

    mark("driver imported")
    if args.metric:  # the selection metric of this sweep: its ASHA, promotion and champion comparison
        space = selected_by(space, args.metric)
    trials = args.trials or (SMOKE_TEST["trials"] if args.smoke_test else space.trials)
    losses = args.losses or list(LOSS_TITLES)
    keys = [key for key, _ in args.settings]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        return _fail(f"--set {', '.join(repeated)} given more than once; give each key once")
    overrides = dict(args.settings)
    if (args.epochs or args.smoke_test) and "epochs" in overrides:
        return _fail("epochs given both as --set epochs and as --epochs or --smoke-test; give it once")
    if args.epochs or args.smoke_test:
        overrides["epochs"] = args.epochs or SMOKE_TEST["epochs"]
    try:
        check_overrides(space, overrides)
    except InvalidSetting as error:
        return _fail(f"--set: {error}")
    # What this command asks for explicitly: a resumed sweep refuses what contradicts how it was started.
    asked = {key: value for key, value in (
        ("losses", ",".join(args.losses) if args.losses else None),
        ("trials_per_loss", args.trials or (SMOKE_TEST["trials"] if args.smoke_test else None)),
        ("seed", args.seed), ("sampler", args.sampler), ("scheduler", args.scheduler), ("metric", args.metric),
        ("promote", args.promote), ("smoke_test", True if args.smoke_test else None))
        if value is not None}  # fmt: skip
    asked |= overrides
    request = SweepRequest(
        space, losses, trials, seed=args.seed or 0, max_concurrent=args.max_concurrent,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
        workers_per_trial=args.workers_per_trial, scheduler=args.scheduler or "fifo",
        sampler=args.sampler or "random", address=args.address, resume=args.resume, name=args.name,
        data_dir=args.data_dir, overrides=overrides, asked=asked, verbose=2 if args.verbose else 1,
        promote=args.promote or ("first" if args.smoke_test else "better"), smoke_test=args.smoke_test,
    )  # fmt: skip
    started = time.time()
    if args.resume:
        print(f"ovatune: resuming {'sweep ' + args.name if args.name else 'the latest sweep'} of {space.name} with its "
              f"own losses, trials and settings; MLflow store {settings.display_uri}", flush=True)  # fmt: skip
    else:
        print(f"ovatune: sweeping {space.name}: {trials} trials x {len(losses)} losses; "
              f"MLflow store {settings.display_uri}", flush=True)  # fmt: skip
    try:
        outcome = run_sweep(request, settings, prepare=lambda: _prepare_promotion(space))
    except (FileNotFoundError, ValueError) as error:  # ClusterCannotRun and InvalidSetting are ValueErrors
        return _fail(str(error))
    if outcome.interrupted:
        return _interrupted(space, settings, outcome, args)
    from tuning.promote import finish_parents, promote  # imported while Ray started (_prepare_promotion)

    # A resumed sweep selects and promotes as it was started (a sweep from before that was stored: as asked now).
    space = selected_by(space, outcome.metric)
    policy = outcome.job.params.get("promote", request.promote)
    smoke_test = outcome.job.params.get("smoke_test", str(request.smoke_test)) == "True"
    failures: dict[str, str] = {}  # loss -> a corrupted checkpoint that was not promoted
    promotions = promote(
        outcome.results, space, outcome.name, outcome.experiment_id, settings, policy, smoke_test, failures
    )
    mark("promoted")
    finish_parents(MlflowClient(settings.tracking_uri), outcome.parents, promotions, space.metric, failures)
    mark("parent runs closed")
    failed = sum(1 for r in outcome.results if r.error is not None)
    diverged = sum(1 for r in outcome.results if r.error is None and r.metrics.get("diverged"))
    print(f"\nsweep {outcome.name}: {len(outcome.results)} trials in {time.time() - started:.0f} s "
          f"({diverged} diverged, {failed} failed)")  # fmt: skip
    for loss in outcome.losses:
        p = promotions.get(loss)
        if p is None:
            status = "no trial qualified"
        else:
            best = f"trial {p.trial_number}, {space.metric} {p.metric:.4f}"
            alias = "champion" if p.is_champion else "challenger"
            where = f"{p.model_name}@{alias} (v{p.version}, {best})" if p.version else f"best: {best}"
            status = f"{where}: {p.reason}"
        print(f"  {loss:<8} {status}")
    for message in failures.values():
        print(f"ovatune: error: {message}", file=sys.stderr)
    if not promotions and not failures:
        return _fail("no trial of any loss finished without diverging; try other ranges or --epochs")
    return 1 if failures else 0


def _prepare_promotion(space) -> None:
    from tuning.promote import prepare_promotion  # torch, MLflow's model code

    prepare_promotion(space)


def _interrupted(space, settings, outcome, args) -> int:
    """A stopped job (a sweep, or a replicate set of ``replicate`` or ``run``): its unfinished runs
    closed as interrupted, nothing promoted, the command that resumes it printed; exit 128 + the
    signal (130 for Ctrl-C), as a shell reports it."""
    import signal

    from tuning.engine import SWEEP, close_interrupted

    kind = outcome.job.kind
    if kind is SWEEP:  # `run` resumes as `run`: the sweep, then its replicates and the evaluation
        then = ("--replicates", str(args.replicates)) if args.command == "run" and args.replicates else ()
        unfinished, resume = close_interrupted(
            outcome, space, settings, args.address, args.data_dir, args.command, then
        )
        after = "; nothing was promoted"
        next_step = ""
    else:  # `replicate --resume` continues the set; `run`'s evaluation then follows by hand
        unfinished, resume = close_interrupted(outcome, space, settings, args.address)
        after = ""
        next_step = (f"\nthen measure them with the champions: ovatune evaluate {space.name} --home {settings.home}"
                     if args.command == "run" else "")  # fmt: skip
    print(f"\n{kind.noun} {outcome.name} interrupted ({signal.Signals(outcome.interrupted).name}): {unfinished} "
          f"unfinished {kind.trial_kind}(s) kept with their checkpoints{after}. Resume with:\n  {resume}{next_step}",
          flush=True)  # fmt: skip
    return 128 + outcome.interrupted


def _replicate(space, settings, args) -> int:
    """``ovatune replicate``, or the replicates of ``ovatune run --replicates R`` after its sweep."""
    from mlflow.tracking import MlflowClient

    from tuning.champion import NoChampion
    from tuning.replicates import MIN_REPLICATES, ReplicateRequest, finish_replicates, run_replicates

    alone = args.command == "replicate"
    request = ReplicateRequest(
        space, args.seeds if alone else args.replicates, losses=args.losses, seed=args.seed or 0,
        address=args.address, max_concurrent=args.max_concurrent, cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial, resume=alone and args.resume, name=args.name if alone else None,
        verbose=2 if args.verbose else 1,
    )  # fmt: skip
    if request.resume:
        print(f"ovatune: resuming {'replicate set ' + args.name if args.name else 'the latest replicate set'} of "
              f"{space.name}; MLflow store {settings.display_uri}", flush=True)  # fmt: skip
    else:
        print(f"\novatune: replicating the champions of {space.name} with {request.seeds} seeds each; "
              f"MLflow store {settings.display_uri}", flush=True)  # fmt: skip
    started = time.time()
    try:
        outcome = run_replicates(request, settings)
    except (NoChampion, FileNotFoundError, ValueError) as error:
        return _fail(str(error))
    if outcome.interrupted:
        return _interrupted(space, settings, outcome, args)
    finished = finish_replicates(MlflowClient(settings.tracking_uri), outcome)
    print(f"\nreplicate set {outcome.name}: {len(outcome.results)} trials in {time.time() - started:.0f} s")
    for loss in outcome.parents:
        print(f"  {loss:<8} {len(finished.get(loss, []))} replicates finished")
    short = [loss for loss in outcome.parents if len(finished.get(loss, [])) < MIN_REPLICATES]
    if short:
        return _fail(f"fewer than {MIN_REPLICATES} replicates of {', '.join(short)} finished (see their runs in the "
                     "MLflow UI); their numbers are not reported over seeds", 1)  # fmt: skip
    if alone:
        print(f"\nmeasure them: ovatune evaluate {space.name} --home {settings.home}")
    return 0


def _evaluate(space, settings, address: str | None = None, sweep: str | None = None,
              read_only: str | None = None) -> int:  # fmt: skip
    """``ovatune evaluate`` (and the end of ``run``); ``read_only``: why this user may not record the
    evaluation in MLflow (it is then measured and reported, not recorded)."""
    from tuning.champion import NoChampion, NoneEvaluated
    from tuning.evaluate import evaluate_experiment
    from tuning.report import column_legend, findings, near_chance, replicate_summary_table, summary_table

    mark("evaluation imported")
    try:
        report = evaluate_experiment(space, settings, address, sweep, record=not read_only)
    except NoneEvaluated as error:
        return _fail(str(error), 1)
    except NoChampion as error:
        return _fail(str(error))
    mark("evaluated")
    what = f"sweep {sweep}'s models" if sweep else "champions"
    print(f"\n{space.name}: {what} on the test split (report: {report.path})\n")
    print(summary_table(report.evaluations))
    print("\n".join(column_legend(report.evaluations)))
    if report.replicates is not None:
        summary = report.replicates
        print(f"\nover seeds: mean ± sd [95% interval] of {', '.join(f'{k} {v}' for k, v in summary.replicates.items())} "
              "replicates\n")  # fmt: skip
        print(replicate_summary_table(summary))
        if summary.comparisons:
            print(
                "\n"
                + "\n".join(findings(summary.comparisons, summary.examples, min(summary.replicates.values()))).replace(
                    "**", ""
                )
            )
    print(f"\nnext:\n  the report:      {report.path}\n  browse the runs: ovatune ui --home {settings.home}\n"
          f"  ship a model:    ovatune export {space.name} --home {settings.home} --format onnx")  # fmt: skip
    if read_only:
        print(f"ovatune: warning: not recorded in MLflow: {read_only}; the report above is all there is",
              file=sys.stderr)  # fmt: skip
    for warning in near_chance(report.evaluations):
        print(f"ovatune: warning: {warning}", file=sys.stderr)
    for message in report.failures.values():  # evaluated without them; the exit code says so
        print(f"ovatune: error: {message}", file=sys.stderr)
    return 1 if report.failures else 0


def serve_ui(settings, host: str, port: int) -> int:
    """Serve the MLflow UI for the store until interrupted (Ctrl-C, SIGTERM or SIGHUP).

    A port already in use is an error before anything starts. Otherwise this process becomes the
    light supervisor of ``tuning.ui`` (same PID, none of the CLI's imports) and never returns.
    """
    import socket

    with socket.socket() as probe:  # what the server would do first: a clear error instead of its retries
        # SO_REUSEADDR as uvicorn binds: a port that a stopped server left in TIME_WAIT is free, a listener is not
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen()
        except OSError as error:
            return _fail(f"cannot serve the UI on {host}:{port}: {error.strerror or error}; "
                         f"stop what uses port {port} or pass --port", 1)  # fmt: skip
    server = ["mlflow", "server", "--backend-store-uri", settings.tracking_uri,
              "--host", host, "--port", str(port), "--workers", "1"]  # fmt: skip
    if settings.is_local_store:
        server += ["--default-artifact-root", Path(settings.artifact_root).as_uri()]
    # workflowType: open the UI on training runs and the model registry, not on its GenAI trace views
    url = f"http://{host}:{port}/#/experiments?workflowType=machine_learning"
    print(f"MLflow UI for {settings.display_uri}: {url}  (Ctrl-C stops it)", flush=True)
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "tuning.ui", *server])


if __name__ == "__main__":
    sys.exit(main())
