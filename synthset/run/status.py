"""`synthset status`: where a generate run stands, read from its files alone (no process is asked).

Done shards come from the records (each says which worker made it, how many rows, in how many seconds),
work in progress from the live claims (holder, when taken, last heartbeat). From those: shards done /
claimed / pending, per worker its images per second and last heartbeat, expired leases (a worker that
stopped renewing: its shard is up for takeover), the ETA of the whole run at the current workers' rate,
and the worker-hours spent (worker-seconds on recorded shards plus the time live claims have been held),
of which GPU-hours are those of records made on a GPU (one worker per GPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from synthset.run.claims import DEFAULT_LEASE_SECONDS, Claim, all_claims, claims_now
from synthset.run.lock import read_lock
from synthset.run.paths import RunDir
from synthset.run.plan import open_plan, plan_shard_names
from synthset.run.records import read_records


@dataclass
class WorkerStatus:
    worker: str  # host.pid.id as records name it
    host: str
    pid: int
    shards_done: int = 0
    images_done: int = 0
    seconds: float = 0.0  # time spent making its recorded shards
    holding: list[str] = field(default_factory=list)
    last_heartbeat: float | None = None  # filesystem time of its newest claim touch
    expired: bool = False

    @property
    def images_per_second(self) -> float | None:
        return self.images_done / self.seconds if self.seconds > 0 else None


@dataclass
class RunStatus:
    shards: int
    images: int
    shards_done: int
    images_done: int
    claimed: list[Claim]
    expired: list[Claim]
    workers: list[WorkerStatus]
    gpu_hours: float  # worker-hours on GPUs (records made on cuda)
    eta_seconds: float | None
    now: float
    worker_hours: float = 0.0  # every worker's time: recorded shards plus live claims, on any device

    @property
    def shards_pending(self) -> int:
        return self.shards - self.shards_done - len(self.claimed) - len(self.expired)


def _worker_key(host: str, pid: int, worker_id: str) -> str:
    return f"{host}.{pid}.{worker_id}"


def run_status(run_dir, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> RunStatus:
    run = RunDir.planned(run_dir)
    lock = read_lock(run)
    plan = open_plan(run)
    names = plan_shard_names(plan)
    sizes = dict(zip(names, plan.shard_rows, strict=True))
    records = {n: r for n, r in read_records(run).items() if n in sizes and r.generation_key == lock.generation_key}
    now = claims_now(run)
    workers: dict[str, WorkerStatus] = {}

    def worker_of(key: str) -> WorkerStatus:
        if key not in workers:
            parts = key.rsplit(".", 2)  # host.pid.id; a host name may hold dots itself
            host, pid = (parts[0], int(parts[1])) if len(parts) == 3 and parts[1].isdigit() else (key, 0)
            workers[key] = WorkerStatus(key, host, pid)
        return workers[key]

    for record in records.values():
        status = worker_of(record.worker or f"rank{record.rank}-of-{record.world_size}")
        status.shards_done += 1
        status.images_done += record.settled  # written, or dropped by the quality gate
        status.seconds += record.seconds
    claimed, expired = [], []
    current = {claim.shard: claim for claim in all_claims(run)}
    for name in names:
        if name in records:
            continue
        claim = current.get(name)
        if claim is None:
            continue
        status = worker_of(_worker_key(claim.worker.host, claim.worker.pid, claim.worker.id))
        status.holding.append(name)
        status.last_heartbeat = max(status.last_heartbeat or 0.0, claim.touched)
        if claim.expired(now, lease_seconds):
            expired.append(claim)
            status.expired = True
        else:
            claimed.append(claim)
    images_done = sum(r.settled for r in records.values())
    images = sum(sizes.values())
    in_progress = sum(now - c.since for c in claimed)
    worker_hours = (sum(r.seconds for r in records.values()) + in_progress) / 3600
    gpu_hours = sum(r.seconds for r in records.values() if r.device == "cuda") / 3600
    live_rate = sum(w.images_per_second or 0.0 for w in workers.values() if w.holding and not w.expired)
    eta = (images - images_done) / live_rate if live_rate > 0 else None
    return RunStatus(
        shards=len(names),
        images=images,
        shards_done=len(records),
        images_done=images_done,
        claimed=claimed,
        expired=expired,
        workers=sorted(workers.values(), key=lambda w: w.worker),
        gpu_hours=gpu_hours,
        worker_hours=worker_hours,
        eta_seconds=eta,
        now=now,
    )


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _eta(status: RunStatus) -> str:
    """The ETA, or why there is none: a live worker that has recorded no shard yet has no rate to go by."""
    if status.shards_done == status.shards:
        return "none: every shard is done"
    if status.eta_seconds is not None:
        return _duration(status.eta_seconds)
    if status.claimed:
        return f"unknown until a shard is recorded ({len(status.claimed)} being made, no rate measured yet)"
    return "unknown (no live worker)"


def _hours_line(status: RunStatus) -> str:
    """Worker-hours, and of them GPU-hours only where a worker generated on a GPU (a CPU run has none)."""
    line = f"worker-hours spent: {status.worker_hours:.2f}"
    return line + (f" (GPU-hours: {status.gpu_hours:.2f})" if status.gpu_hours > 0 else " (no GPU worker)")


def format_status(status: RunStatus, labels: dict[str, str] | None = None) -> str:
    """The status as lines; `labels` (worker -> text, e.g. its SLURM task and state) adds a column."""
    labels = labels or {}
    lines = [
        f"shards: {status.shards_done} done, {len(status.claimed)} being made, {len(status.expired)} with an expired "
        f"lease, {status.shards_pending} pending (of {status.shards})",
        f"images: {status.images_done} of {status.images} ({100 * status.images_done / max(status.images, 1):.1f}%)",
        _hours_line(status),
        f"ETA: {_eta(status)}",
        "",
        f"{'worker':<40} {'shards':>6} {'images':>8} {'img/s':>7}  {'heartbeat':>10}  "
        + (f"{'SLURM task':<28}  " if labels else "")
        + "holding",
    ]
    for worker in status.workers:
        rate = f"{worker.images_per_second:.2f}" if worker.images_per_second is not None else "-"
        beat = f"{status.now - worker.last_heartbeat:.0f}s ago" if worker.last_heartbeat is not None else "-"
        holding = ", ".join(worker.holding) + (" (EXPIRED)" if worker.expired else "") if worker.holding else "-"
        task = f"{labels.get(worker.worker, '-'):<28}  " if labels else ""
        counts = f"{worker.shards_done:>6} {worker.images_done:>8} {rate:>7}"
        lines.append(f"{worker.worker:<40} {counts}  {beat:>10}  {task}{holding}")
    return "\n".join(lines)
