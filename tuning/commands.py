"""What each ``ovatune`` command does once its arguments are parsed and its store checked
(``tuning.cli`` dispatches): build the request, call the service, print the outcome and return
the exit code. Each imports its service when it runs, so that ``--help`` stays light.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import time
from pathlib import Path

from trainables.data import DatasetNotAvailable
from trainables.loss_names import LOSS_TITLES
from tuning.errors import one_line
from tuning.job_lock import release_job
from tuning.options import SMOKE_TEST
from tuning.timeline import mark


def fail(message: str, code: int = 2) -> int:
    """One ``ovatune: error:`` line; exit code 2 for what the user asked, 1 for what went wrong."""
    print(f"ovatune: error: {message}", file=sys.stderr)
    return code


def _ovatune(*words) -> str:
    """An ``ovatune`` command line to print, quoted for a shell (a home may hold a space)."""
    return shlex.join(["ovatune", *map(str, words)])


def _again(settings, *words) -> str:
    """:func:`_ovatune` for finishing what a stop left: in this home, and on this store when it is not the home's."""
    store = ["--tracking-uri", settings.display_uri] if not settings.is_local_store else []
    return _ovatune(*words, "--home", settings.home, *store) + settings.credentials_note


def sweep(space, settings, args, evaluation_next: bool = False) -> int:
    """``ovatune sweep`` (and the start of ``run``): the sweep, or its resume, then its promotion;
    ``evaluation_next`` (``run``): its champions are evaluated right after, in this process's Ray."""
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
        return fail(f"--set {', '.join(repeated)} given more than once; give each key once")
    overrides = dict(args.settings)
    if (args.epochs or args.smoke_test) and "epochs" in overrides:
        return fail("epochs given both as --set epochs and as --epochs or --smoke-test; give it once")
    if args.epochs or args.smoke_test:
        overrides["epochs"] = args.epochs or SMOKE_TEST["epochs"]
    try:
        check_overrides(space, overrides)
    except InvalidSetting as error:
        return fail(f"--set: {error}")
    # What this command asks for explicitly: a resumed sweep refuses what contradicts how it was started.
    asked = {key: value for key, value in (
        ("losses", ",".join(args.losses) if args.losses else None),
        ("trials_per_loss", args.trials or (SMOKE_TEST["trials"] if args.smoke_test else None)),
        ("seed", args.seed), ("sampler", args.sampler), ("scheduler", args.scheduler), ("metric", args.metric),
        ("promote", args.promote), ("smoke_test", True if args.smoke_test else None), ("pack", args.pack))
        if value is not None}  # fmt: skip
    asked |= overrides
    request = SweepRequest(
        space, losses, trials, seed=args.seed or 0, max_concurrent=args.max_concurrent,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
        workers_per_trial=args.workers_per_trial, scheduler=args.scheduler or "fifo",
        sampler=args.sampler or "random", address=args.address, resume=args.resume, name=args.name,
        data_dir=args.data_dir, overrides=overrides, asked=asked, verbose=2 if args.verbose else 1,
        promote=args.promote or ("first" if args.smoke_test else "better"), smoke_test=args.smoke_test,
        pack=args.pack,
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
        return fail(str(error))
    if outcome.stopped:
        return _interrupted(space, settings, outcome, args)
    from tuning.promote import finish_parents, promote  # imported while Ray started (_prepare_promotion)

    # A resumed sweep selects and promotes as it was started (a sweep from before that was stored: as asked now).
    space = selected_by(space, outcome.metric)
    policy = outcome.job.params.get("promote", request.promote)
    smoke_test = outcome.job.params.get("smoke_test", str(request.smoke_test)) == "True"
    from tuning.interruption import Stopped, stop_on_signals

    try:  # a signal while promoting: what was registered stays, a half-registered version goes
        with stop_on_signals():
            if evaluation_next and args.address is None:  # a local Ray's workers get ready while this promotes
                _warm_evaluation(space, settings, outcome.losses)
            promoted = promote(outcome.results, space, outcome.name, outcome.experiment_id, settings, policy,
                               smoke_test)  # fmt: skip
            mark("promoted")
            finish_parents(MlflowClient(settings.tracking_uri), outcome.parents, promoted, space.metric)
    except Stopped as stop:
        return _interrupted(space, settings, dataclasses.replace(outcome, interrupted=stop.signum), args,
                            wrapping_up=True)  # fmt: skip
    promotions, failures = promoted.promotions, promoted.failures  # failures: corrupted checkpoints passed over
    release_job(settings.ray_results, outcome.name)  # promoted: another driver may resume it now
    mark("parent runs closed")
    failed = sum(1 for r in outcome.results if r.error is not None)
    diverged = sum(1 for r in outcome.results if r.error is None and r.metrics.get("diverged"))
    stopped = sum(1 for r in outcome.results if r.error is None and not r.metrics.get("diverged")
                  and int(r.metrics.get("epoch", 0)) < int((r.config or {}).get("epochs", 0)))  # fmt: skip
    early = f"{stopped} stopped early by the scheduler, " if stopped else ""
    print(f"\nsweep {outcome.name}: {len(outcome.results)} trials in {time.time() - started:.0f} s "
          f"({early}{diverged} diverged, {failed} failed)")  # fmt: skip
    for loss in outcome.losses:
        p = promotions.get(loss)
        if p is None:
            status = "no trial qualified"
        else:
            best = f"trial {p.trial_number}, {space.metric} {p.metric:.4f}"
            where = (f"{p.model_name}@{p.alias} (v{p.version}, {best})" if p.alias
                     else f"{p.model_name} v{p.version} ({best})" if p.version else f"best: {best}")  # fmt: skip
            status = f"{where}: {p.reason}"
        print(f"  {loss:<8} {status}")
    for message in failures.values():
        print(f"ovatune: error: {message}", file=sys.stderr)
    if not promotions and not failures:
        return fail("no trial of any loss finished without diverging; try other ranges or --epochs")
    return 1 if failures else 0


def _warm_evaluation(space, settings, losses: list[str]) -> None:
    """Start the evaluation's workers (``tuning.fan_out.warm_workers``), one per loss it will measure:
    this sweep's, and those with a champion from earlier sweeps. Only a speed-up: an error here
    (the store's, Ray's) is left to the commands that follow to meet and report."""
    from mlflow.tracking import MlflowClient

    from tuning.champion import champion_versions
    from tuning.fan_out import warm_workers

    try:
        warm_workers(len(set(losses) | set(champion_versions(MlflowClient(settings.tracking_uri), space.name))))
    except Exception:  # noqa: BLE001, S110 - see the docstring
        pass


def _import_evaluation() -> None:
    import tuning.evaluate  # noqa: F401 - imported ahead, while Ray starts
    import tuning.report  # noqa: F401


def _prepare_promotion(space) -> None:
    from tuning.promote import prepare_promotion  # torch, MLflow's model code

    prepare_promotion(space)


def _interrupted(space, settings, outcome, args, wrapping_up: bool = False) -> int:
    """A stopped job (a sweep, or a replicate set of ``replicate`` or ``run``): its unfinished runs
    closed as interrupted, the command that resumes it printed; exit 128 + the signal (130 for
    Ctrl-C), as a shell reports it. ``wrapping_up``: stopped after its trials, while a sweep
    promoted or a replicate set logged its checkpoints (the resume does what is left of that)."""
    import signal

    from tuning.engine import SWEEP, close_interrupted

    kind = outcome.job.kind
    if kind is SWEEP:  # `run` resumes as `run`: the sweep, then its replicates and the evaluation
        then = ("--replicates", str(args.replicates)) if args.command == "run" and args.replicates else ()
        unfinished, resume = close_interrupted(
            outcome, space, settings, args.address, args.data_dir, args.command, then
        )
        after = ("; the versions registered so far are kept, none half registered" if wrapping_up
                 else "; nothing was promoted")  # fmt: skip
        next_step = ""
    else:  # `replicate --resume` continues the set; `run`'s evaluation then follows by hand
        unfinished, resume = close_interrupted(outcome, space, settings, args.address)
        after = "; the checkpoints logged so far are kept" if wrapping_up else ""
        next_step = (f"\nthen measure them with the champions: {_ovatune('evaluate', space.name, '--home', settings.home)}"
                     if args.command == "run" else "")  # fmt: skip
    if outcome.failure is not None:  # a full disk: where, how much to free, then the same resume
        return _stopped_by_storage(outcome, settings, unfinished, resume)
    when = f" while {kind.wrap_up}" if wrapping_up else ""
    print(f"\n{kind.noun} {outcome.name} interrupted{when} ({signal.Signals(outcome.interrupted).name}): {unfinished} "
          f"unfinished {kind.trial_kind}(s) kept with their checkpoints{after}. Resume with:\n  {resume}{next_step}",
          flush=True)  # fmt: skip
    return 128 + outcome.interrupted


def _stopped_by_storage(outcome, settings, unfinished: int | None, resume: str) -> int:
    """A job a full disk (or another storage failure) stopped: one error line with the path, the file
    system to free space on and how much its resume needs there, and the resume command; exit 1."""
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    from tuning.disk import megabytes, mount_point, space_to_free
    from tuning.tracking import TAG_OUTCOME, find_runs

    kind = outcome.job.kind
    try:
        done = [run for run in find_runs(MlflowClient(settings.tracking_uri), outcome.experiment_id,
                                         kind=kind.trial_kind, sweep=outcome.name)
                if run.data.tags.get(TAG_OUTCOME) in ("completed", "diverged", "stopped")]  # fmt: skip
    except Exception:  # noqa: BLE001 - the store itself may be what failed
        done = []
    remaining = max(unfinished or 0, outcome.planned_trials - len(done))
    failure = outcome.failure
    sqlite = settings.tracking_uri.startswith("sqlite:///")
    store_file = settings.tracking_uri.removeprefix("sqlite:///") if sqlite else None
    path = Path(failure.path or (store_file if "SQLite" in failure.message and store_file else settings.home))
    needed = space_to_free(settings.ray_results / outcome.name, remaining)
    closed = (f"its {unfinished} unfinished {kind.trial_kind}(s) keep their checkpoints" if unfinished is not None
              else f"its unfinished {kind.trial_kind}s keep their checkpoints (their runs stay open: the store could "
                   "not be written)")  # fmt: skip
    return fail(f"{kind.noun} {outcome.name} stopped: {failure.message} ({path}); {closed}. Its resume needs about "
                f"{megabytes(needed)} free on the file system at {mount_point(path)}: free that, then resume with: "
                f"{resume}", 1)  # fmt: skip


def replicate(space, settings, args) -> int:
    """``ovatune replicate``, or the replicates of ``ovatune run --replicates R`` after its sweep."""
    from mlflow.tracking import MlflowClient

    from tuning.champion import NoChampion
    from tuning.replicates import MIN_REPLICATES, ReplicateRequest, finish_replicates, run_replicates

    alone = args.command == "replicate"
    request = ReplicateRequest(
        space, args.replicates, losses=args.losses, seed=args.seed or 0,
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
        return fail(str(error))
    if outcome.stopped:
        return _interrupted(space, settings, outcome, args)
    from tuning.interruption import Stopped, stop_on_signals

    try:  # a signal while the checkpoints are logged: the parents stay open, the resume logs the rest
        with stop_on_signals():
            finished = finish_replicates(MlflowClient(settings.tracking_uri), outcome)
    except Stopped as stop:
        return _interrupted(space, settings, dataclasses.replace(outcome, interrupted=stop.signum), args,
                            wrapping_up=True)  # fmt: skip
    release_job(settings.ray_results, outcome.name)
    print(f"\nreplicate set {outcome.name}: {len(outcome.results)} trials in {time.time() - started:.0f} s")
    for loss in outcome.parents:
        print(f"  {loss:<8} {len(finished.get(loss, []))} replicates finished")
    short = [loss for loss in outcome.parents if len(finished.get(loss, [])) < MIN_REPLICATES]
    if short:
        return fail(f"fewer than {MIN_REPLICATES} replicates of {', '.join(short)} finished (see their runs in the "
                     "MLflow UI); their numbers are not reported over seeds", 1)  # fmt: skip
    if alone:
        print(f"\nmeasure them: {_ovatune('evaluate', space.name, '--home', settings.home)}")
    return 0


def evaluate(space, settings, address: str | None = None, sweep: str | None = None, record: bool = True) -> int:
    """``ovatune evaluate`` (and the end of ``run``); ``record=False`` (``--no-record``): measured and
    reported, nothing recorded in MLflow."""
    from mlflow.tracking import MlflowClient

    from tuning.champion import NoChampion, NoneEvaluated, champion_versions, nothing_to_evaluate
    from tuning.cluster import init_ray
    from tuning.interruption import Stopped, stop_on_signals

    try:
        with stop_on_signals():  # SIGTERM used to end it with exit 1 and no word of what was left undone
            # With no model to measure, the error comes alone: before Ray, and before the evaluation's
            # code (torch, matplotlib, MLflow's model code: 5 s) is imported.
            if not champion_versions(MlflowClient(settings.tracking_uri), space.name, sweep):
                raise nothing_to_evaluate(space.name, settings.tracking_uri, sweep)
            # Ray starts while the evaluation's code imports: each took about 4 s, one after the other
            # (a no-op after a sweep in this process).
            init_ray(address, meanwhile=_import_evaluation)
            from tuning.evaluate import evaluate_experiment

            mark("evaluation imported")
            report = evaluate_experiment(space, settings, address, sweep, record=record)
    except Stopped as stop:
        print(f"\nevaluation of {space.name} interrupted ({stop}): no alias moved, and nothing it measured is "
              "reported as done (an MLflow evaluation run it had opened is marked FAILED). Evaluate again with:\n"
              f"  {_again(settings, 'evaluate', space.name, *(['--sweep', sweep] if sweep else []))}", flush=True)  # fmt: skip
        return 128 + stop.signum
    except NoneEvaluated as error:
        return fail(str(error), 1)
    except NoChampion as error:
        return fail(str(error))
    mark("evaluated")
    from tuning.report import column_legend, findings, near_chance, replicate_summary_table, summary_table

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
    print(f"\nnext:\n  the report:      {report.path}\n  browse the runs: {_ovatune('ui', '--home', settings.home)}\n"
          f"  ship a model:    {_ovatune('export', space.name, '--home', settings.home, '--format', 'onnx')}")  # fmt: skip
    if not record:
        print("not recorded in MLflow (--no-record): the report above is all there is")
    for warning in near_chance(report.evaluations):
        print(f"ovatune: warning: {warning}", file=sys.stderr)
    for message in report.failures.values():  # evaluated without them; the exit code says so
        print(f"ovatune: error: {message}", file=sys.stderr)
    return 1 if report.failures else 0


def export(space, settings, args) -> int:
    """``ovatune export``: the champions (reads only), each in the asked formats."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from tuning.champion import NoChampion
    from tuning.export import ExportFailed, champion_losses, check_export_folder, export_champion

    try:  # the user's to fix: said once, not per loss
        check_export_folder(args.out)
    except ExportFailed as error:
        return fail(str(error))
    mlflow.set_tracking_uri(settings.tracking_uri)
    client = MlflowClient(settings.tracking_uri)
    losses = args.losses or champion_losses(space, client)
    if not losses:
        return fail(f"{space.name} has no champions in {settings.display_uri}; run `ovatune run {space.name}` first")
    if args.format == "torchscript":  # one line instead of torch's three FutureWarnings per model
        print("ovatune: note: PyTorch is retiring TorchScript (torch.jit); --format torch_export is its successor",
              file=sys.stderr, flush=True)  # fmt: skip
    from tuning.interruption import Stopped, stop_on_signals

    failed, done = 0, []
    try:
        with stop_on_signals():  # a stop between two losses, or inside one: nothing half written stays
            for loss in losses:  # one champion that cannot be exported does not stop the others
                try:
                    folder = export_champion(space, loss, args.format, args.out, client)
                except NoChampion as error:
                    return fail(str(error))
                except ExportFailed as error:
                    failed += 1
                    print(f"ovatune: error: {error}", file=sys.stderr)
                    continue
                done.append(loss)
                print(f"{loss:8s} -> {folder}")
    except Stopped as stop:
        left = [loss for loss in losses if loss not in done]
        again = _again(settings, "export", space.name, "--losses", ",".join(left), "--format", args.format,
                       "--out", Path(args.out).absolute())  # fmt: skip
        print(f"\nexport interrupted ({stop}): {', '.join(done) or 'nothing'} exported; {', '.join(left)} not "
              f"(each left as it was before, no partial folder). Export the rest with:\n  {again}",
              flush=True)  # fmt: skip
        return 128 + stop.signum
    return 1 if failed else 0


def jobs(args, argv: list[str]) -> int:
    """``ovatune submit``, ``status`` and ``logs``: a sweep as a job of the cluster's Jobs API
    (``argv``: the command line, whose sweep options go through as given)."""
    from tuning import jobs as ray_jobs

    address = args.dashboard
    if args.command == "submit" and args.address:  # submit's --address used to mean the dashboard
        print("ovatune: warning: submit --address is now --dashboard (the job's sweep always runs with "
              "--address auto); the old spelling goes in the next release", file=sys.stderr)  # fmt: skip
        address = args.address
    if not address:
        return fail("the cluster's dashboard is needed: --dashboard http://HEAD:8265 (or RAY_API_SERVER_ADDRESS)")
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
            if ray_jobs.password_in(sweep_args):
                return fail("a password in --tracking-uri would be stored in the job's entrypoint, which everyone "
                             "who can list the cluster's jobs reads; give the head its MLflow credentials "
                             "(MLFLOW_TRACKING_USERNAME/PASSWORD or ~/.mlflow/credentials there) and submit "
                             "--tracking-uri http://HOST:PORT (README: team servers)")  # fmt: skip
            if ray_jobs.password_in(sweep_args, "--storage"):
                from tuning.storage import KEYS_IN_STORAGE

                return fail(KEYS_IN_STORAGE)
            job_id = ray_jobs.submit(address, sweep_args)
            print(f"submitted {job_id}\n  ovatune status {job_id} --dashboard {address}\n"
                  f"  ovatune logs {job_id} --dashboard {address} --follow")  # fmt: skip
        elif args.command == "status":
            print("\n".join(ray_jobs.status_lines(address, args.job_id)) or "no jobs")
        else:
            ray_jobs.print_logs(address, args.job_id, args.follow)
    except Exception as error:  # the SDK raises its own kinds (connection, authentication, unknown job)
        return fail(f"Ray Jobs API at {address}: {one_line(error)}")
    return 0


def corrupt(args) -> int:
    """``ovatune corrupt``: a CIFAR test set's corrupted copies, as the published -C sets."""
    import torch

    from trainables.data import INTENSITIES
    from trainables.data.cifar import cifar_data_dir, read_cifar
    from trainables.data.corrupted_sets import CORRUPTED_SETS, write_corrupted

    if args.device != "cpu":
        if not args.device.startswith("cuda") or not torch.cuda.is_available():
            return fail(f"device {args.device!r} is not available here; use cpu, or cuda on a machine with a GPU")
    corrupted = CORRUPTED_SETS[args.dataset]
    try:
        data_dir = cifar_data_dir(args.dataset, args.data_dir)
        images, labels = read_cifar(args.dataset, data_dir, train=False)
    except DatasetNotAvailable as error:
        return fail(str(error))
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


def ui(settings, host: str, port: int) -> int:
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
            return fail(f"cannot serve the UI on {host}:{port}: {error.strerror or error}; "
                         f"stop what uses port {port} or pass --port", 1)  # fmt: skip
    # The registry is the same store (said, so that MLflow does not print that it chose so); uvicorn's
    # INFO lines (started, startup complete, shutting down) are not for the user: warnings still show.
    server = ["mlflow", "server", "--backend-store-uri", settings.tracking_uri,
              "--registry-store-uri", settings.tracking_uri, "--host", host, "--port", str(port),
              "--workers", "1", "--uvicorn-opts", "--log-level warning"]  # fmt: skip
    if settings.is_local_store:
        server += ["--default-artifact-root", Path(settings.artifact_root).as_uri()]
    # workflowType: open the UI on training runs and the model registry, not on its GenAI trace views
    url = f"http://{host}:{port}/#/experiments?workflowType=machine_learning"
    print(f"MLflow UI for {settings.display_uri}: {url}  (Ctrl-C stops it)", flush=True)
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "tuning.ui", *server])
