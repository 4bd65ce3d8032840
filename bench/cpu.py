"""CPU time per process of a server's session, split by role (model replica, ingress, proxy, ...)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROCESS_ROLES = [
    ("ServeReplica:helpline:Classifier", "model replica"),
    ("ServeReplica:helpline:Preprocessor", "ingress"),
    ("ServeReplica:helpline:Router", "router"),
    ("ServeReplica:helpline:IntakeConsumer", "intake consumer"),
    ("ProxyActor", "proxy"),
    ("ServeController", "controller"),
]


def _stat(pid: int) -> tuple[int, float]:
    """(session id, CPU seconds) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[3]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def _role(cmdline: str) -> str | None:
    for needle, role in PROCESS_ROLES:
        if needle in cmdline:
            return role
    if any(name in cmdline for name in ("raylet", "gcs_server", "ray::", "ray/_private", "dashboard",
                                        "log_monitor", "serve run", "/serve ")):
        return "rest of ray"
    return None


def cpu_snapshot(session: int) -> dict[int, tuple[str, float]]:
    """CPU time of every process in one session: the server's, not other Ray clusters on the machine."""
    snap = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            sid, cpu = _stat(int(entry.name))
            if sid != session:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            snap[int(entry.name)] = (_role(cmdline) or "rest of ray", cpu)
        except (OSError, IndexError, ValueError):
            continue
    return snap


def cpu_breakdown(before: dict, after: dict, cases: int, client_cpu_s: float) -> dict:
    """CPU-ms per case of each role between two snapshots, the load generator's own included."""
    per_role: Counter = Counter()
    for pid, (role, cpu) in after.items():
        per_role[role] += cpu - before.get(pid, (role, 0.0))[1]
    per_role["load generator"] += client_cpu_s
    return {role: round(1000 * cpu / max(cases, 1), 2) for role, cpu in sorted(per_role.items())}


# What serving_cpu_ms_per_case leaves out: the model's own work, and the load generator's.
NOT_SERVING = ("model replica", "load generator")


def serving_cpu(breakdown: dict) -> dict:
    """The CPU-ms per case outside the model replica, by process, and their total."""
    serving = {role: ms for role, ms in breakdown.items() if role not in NOT_SERVING}
    return {**serving, "total": round(sum(serving.values()), 2)}


def cpu_used(before: dict, after: dict) -> float:
    """CPU seconds all processes of the session used between two snapshots."""
    return sum(cpu - before.get(pid, ("", 0.0))[1] for pid, (_, cpu) in after.items())
