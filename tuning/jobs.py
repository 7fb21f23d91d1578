"""``ovatune submit | status | logs``: sweeps as Ray Jobs on a cluster, through Ray's Jobs SDK.

``submit`` sends ``ovatune sweep <experiment> … --address auto`` with this project as the job's
working directory (so the code that runs is the code you have), and prints the job id; the job's
driver runs on the cluster's head, next to Ray, and survives your laptop closing.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from tuning.cluster import quiet_ray_notices, use_cluster_token

PROJECT = Path(__file__).resolve().parents[1]
# what never travels with a job: environments, local state, caches, build output
EXCLUDES = [".venv", "ovatune-home", "exports", "test-artifacts", ".git", "**/__pycache__", ".pytest_cache",
            ".ruff_cache", "*.egg-info", "build", "dist"]  # fmt: skip


def client(address: str):
    """A Jobs SDK client. Clusters with Ray's token authentication need the token: it is sent when
    RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token provides one (RAY_AUTH_MODE=token)."""
    from ray.job_submission import JobSubmissionClient

    quiet_ray_notices()  # Ray's "token authentication is enabled" notice is not news to the user
    use_cluster_token()
    return JobSubmissionClient(address)


def submit(address: str, sweep_args: list[str]) -> str:
    """Submit ``ovatune sweep <sweep_args> --address auto`` as a Ray Job; returns its id."""
    entrypoint = shlex.join(["ovatune", "sweep", *sweep_args, "--address", "auto"])
    return client(address).submit_job(
        entrypoint=entrypoint,
        runtime_env={"working_dir": str(PROJECT), "excludes": EXCLUDES},
        metadata={"submitted_by": "ovatune", "experiment": sweep_args[0]},
    )


def password_in(sweep_args: list[str], option: str = "--tracking-uri") -> bool:
    """Whether ``option``'s URI among ``sweep_args`` carries a password or key (``http://USER:PASSWORD@…``),
    which a job's entrypoint would show to everyone who can list the cluster's jobs."""
    from tuning.settings import has_secret

    uris = [value for flag, value in zip(sweep_args, sweep_args[1:]) if flag == option]
    uris += [token.split("=", 1)[1] for token in sweep_args if token.startswith(f"{option}=")]
    return any(has_secret(uri) for uri in uris)


def status_lines(address: str, job_id: str | None) -> list[str]:
    """One line per job (or just ``job_id``): id, status, entrypoint."""
    jobs_client = client(address)
    if job_id:
        info = jobs_client.get_job_info(job_id)
        return [f"{job_id}  {info.status}  {info.entrypoint}" + (f"  ({info.message})" if info.message else "")]
    return [f"{job.submission_id}  {job.status}  {job.entrypoint}" for job in jobs_client.list_jobs()]


def print_logs(address: str, job_id: str, follow: bool) -> None:
    """Print a job's output so far, or follow it until the job ends."""
    import asyncio

    jobs_client = client(address)
    if not follow:
        print(jobs_client.get_job_logs(job_id), end="")
        return

    async def tail() -> None:
        async for lines in jobs_client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    asyncio.run(tail())
