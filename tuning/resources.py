"""What the Ray cluster can run: its live nodes, the node types its autoscaler can launch, and the
trial shape (``plan_trial_resources``) and evaluation tasks planned from them.

Why not ``ray.cluster_resources()``: on an autoscaling cluster whose GPU workers scale from zero
(``ray_cluster.yaml``), no GPU is in it until something asks for one, and Ray's autoscaler launches
GPU nodes only for pending requests that need them. Planning from the live nodes alone would run
every GPU trial on the CPU head and never start a GPU worker. So a sweep on a cluster
(``--address``) plans from the node types as well:

- with autoscaler v2, the cluster config the autoscaler reports to the GCS (what Ray Data reads);
- with autoscaler v1 (``ray up``'s default), the autoscaling config file that this cluster's
  monitor process was started with (readable on the head, where ``ovatune submit`` runs the driver).

Where neither can be read (a driver on another machine, a cluster whose autoscaler this process
cannot see) the live nodes are all that is known: a request they cannot hold is then a warning,
not an error, because the autoscaler may still be able to launch a node for it.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

# Asked for by the Tune trial of a multi-worker trial: it only waits for its Ray Train workers,
# which ask for the CPUs and GPUs. (A Tune trial must ask for some resource; memory is the honest one.)
TRIAL_DRIVER_MEMORY = 256 * 2**20


class ClusterCannotRun(ValueError):
    """A trial's request that no node of the cluster, live or launchable, can ever satisfy."""


@dataclass(frozen=True)
class NodeType:
    """One kind of node: its CPUs and GPUs, and how many of it the cluster can have at once."""

    name: str
    cpus: float
    gpus: float
    max_count: int  # live ones included; the head type counts its one head

    def holds(self, cpus: float, gpus: float) -> int:
        """How many bundles of (cpus, gpus) fit on one node of this type."""
        fits = [self.cpus / cpus if cpus else math.inf, self.gpus / gpus if gpus else math.inf]
        if gpus and not self.gpus:
            return 0
        return 0 if math.isinf(min(fits)) else int(min(fits) + 1e-9)

    def describe(self) -> str:
        gpus = f", {self.gpus:g} GPU" if self.gpus else ""
        return f"{self.name} ({self.cpus:g} CPU{gpus}, up to {self.max_count})"


@dataclass(frozen=True)
class ClusterShape:
    """The node types of the connected cluster.

    Attributes:
        types: every node type known, live or launchable.
        complete: whether ``types`` is everything the cluster can ever have (False when an
            autoscaler runs whose node types could not be read from here).
        source: where the node types came from, for messages.
    """

    types: tuple[NodeType, ...]
    complete: bool
    source: str

    def capacity(self, cpus: float, gpus: float) -> int:
        """How many bundles of (cpus, gpus) the cluster can hold at once at its full size."""
        return sum(t.max_count * t.holds(cpus, gpus) for t in self.types)

    def describe(self) -> str:
        return ", ".join(t.describe() for t in self.types) or "no nodes"


def cluster_shape() -> ClusterShape:
    """The connected cluster's node types: the autoscaler's, merged with the live nodes."""
    import ray

    live: dict[str, list[dict]] = {}
    mapping = _autoscaler_node_type_mapping()
    for node in ray.nodes():
        if node.get("Alive"):
            name = _type_name(node, mapping) or f"node {node['NodeID'][:8]}"
            live.setdefault(name, []).append(node)
    launchable, source = _autoscaler_node_types()
    types = {t.name: t for t in launchable}
    for name, nodes in live.items():
        known = types.get(name)
        resources = nodes[0]["Resources"]
        types[name] = NodeType(
            name,
            known.cpus if known else float(resources.get("CPU", 0)),
            known.gpus if known else float(resources.get("GPU", 0)),
            max(len(nodes), known.max_count if known else 0),
        )
    # Complete: the autoscaler's node types were read, or this cluster has no autoscaler (its
    # monitor, found on this machine, runs without an autoscaling config, as a plain `ray start` does).
    complete = bool(launchable) or _monitor_of_this_cluster() == {} or not _autoscaler_running()
    if not launchable:
        source = "the live nodes" + (
            " (an autoscaler runs, but its node types cannot be read here)" if not complete else ""
        )
    return ClusterShape(tuple(types.values()), complete, source)


def node_type_of(node_id: str) -> str | None:
    """The autoscaler's node type name of a live node, if the autoscaler says."""
    import ray

    node = next((n for n in ray.nodes() if n["NodeID"] == node_id), {"NodeID": node_id})
    return _type_name(node, _autoscaler_node_type_mapping())


def _type_name(node: dict, mapping: dict[str, str]) -> str | None:
    """A node's type in the autoscaler's node-type mapping (keyed by node id or by IP)."""
    name = mapping.get(node["NodeID"]) or mapping.get(node.get("NodeManagerAddress", ""))
    # without an autoscaling config Ray names each node "node_<id>": that is no node type
    return None if name is None or name == f"node_{node['NodeID']}" else name


def _autoscaler_status() -> dict:
    """The autoscaler's last report in the GCS (both autoscaler versions write it), or {}."""
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(b"__autoscaling_status")
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def _autoscaler_running() -> bool:
    return bool(_autoscaler_status())


def _autoscaler_node_type_mapping() -> dict[str, str]:
    """Node id or IP -> node type name, as the autoscaler's last report has it."""
    report = _autoscaler_status().get("autoscaler_report") or {}
    return dict(report.get("node_type_mapping") or {})


def _autoscaler_node_types() -> tuple[list[NodeType], str]:
    """The node types the autoscaler can launch, and where they were read; ([], "") if unknown."""
    import ray._private.state

    config = ray._private.state.state.get_cluster_config()  # autoscaler v2 reports this
    if config is not None and config.node_group_configs:
        types = [
            NodeType(g.name, float(g.resources.get("CPU", 0)), float(g.resources.get("GPU", 0)),
                     sys.maxsize if g.max_count == -1 else int(g.max_count))
            for g in config.node_group_configs
        ]  # fmt: skip
        return types, "the autoscaler's cluster config (GCS)"
    path = (_monitor_of_this_cluster() or {}).get("autoscaling-config")
    if not path or not Path(path).expanduser().is_file():
        return [], ""
    return _node_types_from_config(Path(path).expanduser()), f"the autoscaling config {path}"


def _monitor_of_this_cluster() -> dict[str, str] | None:
    """The ``--option=value`` arguments of the autoscaler monitor of the cluster this process is
    connected to, if it runs on this machine (the head); None if it does not.

    The monitor (autoscaler v1) is where the autoscaling config's path is written down: ``ray up``
    starts it with ``--autoscaling-config``, a plain ``ray start --head`` without. Its
    ``--gcs-address`` picks this cluster's monitor out of any other Ray on the machine.
    """
    import ray

    if sys.platform != "linux":
        return None
    port = ray.get_runtime_context().gcs_address.rsplit(":", 1)[-1]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not any(a.endswith("autoscaler/_private/monitor.py") for a in args):
            continue
        options = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
        if options.get("gcs-address", "").rsplit(":", 1)[-1] == port:
            return {k: v for k, v in options.items() if k == "autoscaling-config"}
    return None


def _node_types_from_config(path: Path) -> list[NodeType]:
    """Node types of a cluster-launcher config (``available_node_types``)."""
    import yaml

    config = yaml.safe_load(path.read_text()) or {}
    overall = int(config.get("max_workers", sys.maxsize))
    types = []
    for name, spec in (config.get("available_node_types") or {}).items():
        resources = spec.get("resources") or {}
        if name == config.get("head_node_type"):
            count = 1
        else:
            count = min(int(spec.get("max_workers", overall)), overall)
        types.append(NodeType(name, float(resources.get("CPU", 0)), float(resources.get("GPU", 0)), count))
    return types


@dataclass(frozen=True)
class TrialResources:
    """What one trial asks Ray for: ``workers`` processes of ``cpus`` CPUs and ``gpus`` GPUs each."""

    cpus: float
    gpus: float
    workers: int = 1

    def tune_request(self) -> dict[str, float]:
        """The trial's own request (``tune.with_resources``). A multi-worker trial's Tune trial only
        waits for its Ray Train workers, which ask for the CPUs and GPUs themselves."""
        if self.workers == 1:
            return {"cpu": self.cpus, "gpu": self.gpus}
        return {"cpu": 0, "memory": TRIAL_DRIVER_MEMORY}

    def describe(self) -> str:
        each = f"{self.cpus:g} CPU" + (f", {self.gpus:g} GPU" if self.gpus else "")
        return each if self.workers == 1 else f"{self.workers} workers x ({each})"


def plan_trial_resources(
    requested: TrialResources, explicit: set[str], on_cluster: bool
) -> tuple[TrialResources, int, list[str]]:
    """Per-trial resources for the connected Ray, how many trials fit at once, and notes to print.

    On a local Ray (``on_cluster`` False) a space written for GPU machines fits the machine: no GPU
    means trials on the CPU, one process each, and a CPU request larger than the machine is capped.
    On a cluster nothing is moved: GPU trials stay GPU trials even when no GPU node is up yet (the
    autoscaler launches one for them), and a request no node type can ever hold is an error.
    What the command line gave (``explicit``: "cpus", "gpus", "workers") is never changed.

    Raises:
        ClusterCannotRun: an explicit request the local machine cannot hold, or any request no node
            type of the cluster can hold.
    """
    import ray

    cpus, gpus, workers = requested.cpus, requested.gpus, requested.workers
    notes: list[str] = []
    if not on_cluster:
        total = ray.cluster_resources()
        have_cpus, have_gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
        if gpus and workers * gpus > have_gpus:
            if "gpus" in explicit:
                raise ClusterCannotRun(f"a trial of {requested.describe()} needs {workers * gpus:g} GPU(s), "
                                       f"but this machine's Ray has {have_gpus:g}")  # fmt: skip
            notes.append(f"the space asks for {gpus:g} GPU per trial and this machine's Ray has {have_gpus:g}: "
                         "trials run on the CPU (--gpus-per-trial to choose)")  # fmt: skip
            gpus = 0.0
        if workers > 1 and not gpus and "workers" not in explicit:
            notes.append(f"the space asks for {workers} workers per trial; without GPUs each trial runs as one "
                         "process (--workers-per-trial to choose)")  # fmt: skip
            workers = 1
        if workers * cpus > have_cpus:
            if "cpus" in explicit:
                raise ClusterCannotRun(f"a trial of {requested.describe()} needs {workers * cpus:g} CPUs, "
                                       f"but this machine's Ray has {have_cpus:g}")  # fmt: skip
            notes.append(f"the space asks for {cpus:g} CPUs per {'worker' if workers > 1 else 'trial'} and this "
                         f"machine's Ray has {have_cpus:g}: using {have_cpus / workers:g} (--cpus-per-trial to choose)")  # fmt: skip
            cpus = have_cpus / workers
        fits = [have_cpus / (cpus * workers) if cpus else math.inf, have_gpus / (gpus * workers) if gpus else math.inf]
        slots = max(1, int(min(fits) + 1e-9)) if not math.isinf(min(fits)) else 1
        return TrialResources(cpus, gpus, workers), slots, notes

    shape = cluster_shape()
    planned = TrialResources(cpus, gpus, workers)
    capacity = shape.capacity(cpus, gpus)
    if capacity < workers:
        message = (
            f"a trial asks for {planned.describe()}, and no node type of the Ray cluster can hold it: "
            f"{shape.describe()} (from {shape.source}). Ask for less (--cpus-per-trial, --gpus-per-trial, "
            "--workers-per-trial) or give the cluster a node type that has it"
        )
        if shape.complete:
            raise ClusterCannotRun(message)
        notes.append(f"warning: {message}; trials wait for the autoscaler to launch such a node")
        return planned, 1, notes
    if gpus and not any(n.get("Alive") and n["Resources"].get("GPU", 0) >= gpus for n in ray.nodes()):
        launch = ", ".join(t.name for t in shape.types if t.holds(cpus, gpus))
        notes.append(f"no GPU node is up yet: trials ask for {planned.describe()} and the autoscaler "
                     f"launches {launch} nodes for them")  # fmt: skip
    return planned, max(1, capacity // workers), notes


def evaluation_gpus(on_cluster: bool) -> int:
    """GPUs for each champion's evaluation task: 1 when the cluster has, or can launch, a GPU node."""
    import ray

    if on_cluster:
        return 1 if any(t.gpus >= 1 and t.max_count > 0 for t in cluster_shape().types) else 0
    return 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
