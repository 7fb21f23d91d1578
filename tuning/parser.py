"""The ``ovatune`` command line's parser: every command, its options, their types and help.

Light on purpose: ``ovatune --help`` and every command's ``--help`` import neither torch, Ray,
MLflow nor Optuna (``test_cli`` checks). Every choice (experiment, loss, scheduler, sampler,
format, promotion policy) comes from its registry. One flag has one meaning everywhere:
``--losses`` is a list of losses, ``--address`` a Ray cluster, ``--dashboard`` a cluster's
dashboard (its Jobs API).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from search_spaces import SPACES
from trainables.data import DATASETS
from trainables.loss_names import LOSS_TITLES
from tuning.options import SMOKE_TEST


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


MOST = 1_000_000  # of trials, epochs, workers or processes: more is a typo, not a plan
RAY_STEP = 0.0001  # the least amount of a resource Ray schedules (ray_constants.MIN_RESOURCE_GRANULARITY)


def _positive_int(text: str) -> int:
    value = _number(text, int)
    if not 0 < value <= MOST:
        raise argparse.ArgumentTypeError(f"must be a positive integer of at most {MOST:,}, got {text}")
    return value


def _in_ray_steps(value: float, text: str) -> float:
    """``value``, refused where Ray would refuse it once started (less than its least amount) or
    where no cluster has it."""
    if 0 < value < RAY_STEP:
        raise argparse.ArgumentTypeError(f"Ray schedules at least {RAY_STEP:g} of a resource, got {text}")
    if value > MOST:
        raise argparse.ArgumentTypeError(f"must be at most {MOST:,}, got {text}")
    return value


def _cpus(text: str) -> float:
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return _in_ray_steps(value, text)


def _gpus(text: str) -> float:
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    if value > 1 and not value.is_integer():  # Ray gives a task a fraction of one GPU, or whole GPUs
        raise argparse.ArgumentTypeError(f"must be a fraction of one GPU or a whole number of GPUs, got {text}")
    return _in_ray_steps(value, text)


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


def _port(text: str) -> int:
    value = _number(text, int)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port from 1 to 65535, got {text}")
    return value


def _sweep_name(text: str) -> str:
    from tuning.storage import check_job_name  # (not through tuning.engine: that imports Ray Tune)

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
    "replicate": "ovatune replicate digits --replicates 5",
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


def _add_storage_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", metavar="PATH_OR_URI",
                   help="where Ray Tune keeps each sweep's state and trial checkpoints: a folder every node "
                   "sees, or a bucket, s3://BUCKET/PREFIX (credentials from the AWS variables or files on every "
                   "node; AWS_ENDPOINT_URL for an S3-compatible store); give the same one to --resume "
                   "(default: $OVATUNE_STORAGE or ray_results in the home)")  # fmt: skip


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
    p.add_argument("--cpus-per-trial", type=_cpus, help="CPUs (and torch threads) per trial (default: the space's)")
    p.add_argument("--gpus-per-trial", type=_gpus, help="GPUs per trial; fractions pack trials on one GPU")
    p.add_argument(
        "--workers-per-trial",
        type=_positive_int,
        help="run each trial as a Ray Train job of N DDP workers (gloo on CPU, NCCL on GPU), each with "
        "--cpus-per-trial and --gpus-per-trial; the space's batch_size is the global batch (default: the space's, else 1)",
    )
    p.add_argument("--pack", type=_positive_int, metavar="K",
                   help="train up to K trials of a loss together in one worker, as one vectorised model: each "
                   "is still its own trial (its run, checkpoint, number in the seeded sequence); pays where a "
                   "step is mostly overhead, as for the small MLPs (default: the space's, 1 = one trial per "
                   "worker; with --scheduler asha each member is stopped on its own; not with "
                   "--workers-per-trial)")  # fmt: skip
    from trainables.trial_metrics import SELECTION_METRICS
    from tuning.options import SAMPLERS, SCHEDULERS, described

    p.add_argument("--metric", choices=list(SELECTION_METRICS),
                   help="the validation metric that selects each loss's best trial, drives ASHA and decides "
                   "whether a champion is beaten (default: the experiment's, val_accuracy; --resume keeps its sweep's); "
                   + described(SELECTION_METRICS))  # fmt: skip
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
        "--smoke-test",
        action="store_true",
        help=f"{SMOKE_TEST['trials']} trial per loss, {SMOKE_TEST['epochs']} epochs: checks the whole path in seconds",
    )
    from tuning.options import POLICIES

    p.add_argument("--promote", choices=list(POLICIES),
                   help="when each loss's best version becomes the champion: "
                   + described(POLICIES)
                   + " (default: better; first with --smoke-test)")  # fmt: skip
    from trainables.trial_config import settable

    p.add_argument("--set", dest="settings", action="append", type=_setting, default=[], metavar="KEY=VALUE",
                   help="override a fixed setting of the trials, e.g. --set batch_size=128 --set hidden=[64,64] "
                   "(values are read as JSON, else kept as text; checked before anything runs); KEY is one of: "
                   + ", ".join(settable()) + " (not one the experiment searches)")  # fmt: skip
    _add_store_options(p)
    _add_storage_option(p)


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
                     "(as `ovatune replicate --replicates R`) and report every number over seeds (default: none)")  # fmt: skip
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
    replicate.add_argument("--replicates", type=_replicates, default=5, metavar="R",
                           help="replicates per loss, at least 2 (default 5, the paper's 'averaged over 5 runs'); "
                           "the same option as run's")  # fmt: skip
    replicate.add_argument("--seeds", dest="replicates", type=_replicates, action=_Renamed, new="--replicates")
    replicate.add_argument(
        "--losses", type=_losses, metavar="L1,L2", help="whose champions (default: every loss that has one)"
    )
    replicate.add_argument("--seed", type=_seed, help="seeds the replicates' seeds, 0 to 2**32-1 (default 0)")
    replicate.add_argument("--max-concurrent", type=_positive_int, help="at most this many trials at once")
    replicate.add_argument(
        "--cpus-per-trial", type=_cpus, help="CPUs per trial (default: as the champion's trials had)"
    )
    replicate.add_argument(
        "--gpus-per-trial", type=_gpus, help="GPUs per trial (default: as the champion's trials had)"
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
    _add_storage_option(replicate)
    evaluate = sub.add_parser("evaluate", help="measure the champions: test, shift, OOD; figures and report.md")
    evaluate.add_argument("experiment", choices=list(SPACES), metavar="EXPERIMENT", help=f"one of: {', '.join(SPACES)}")
    evaluate.add_argument("--address", help="Ray cluster to evaluate on ('auto' inside one); default: a local Ray")
    evaluate.add_argument("--no-record", action="store_true",
                          help="measure and write the report in the home, recording nothing in MLflow (no "
                          "evaluation run, no model tags): what a user with READ on a team server can do")  # fmt: skip
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
        help="write the champions as torch.export, ONNX, MLflow or TorchScript models, each with a model card",
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
    export.add_argument("--format", default="torch_export", choices=list(FORMATS),
                        help=described(FORMATS) + " (default: torch_export)")  # fmt: skip
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
