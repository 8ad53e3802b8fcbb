"""Which OCI runtime runs the sandboxes: runc (namespaces on the host's kernel) or gVisor's
runsc (a kernel in user space between the code and the host's kernel: a second wall).

A node chooses with ``UNSEEN_RUNTIME=runc|runsc|auto``; ``auto`` (the default) takes runsc
whenever the Docker engine has it registered, since a kernel bug in any of the ~300 system
calls a container may make is then no longer a way to the data. Naming a runtime the engine
lacks is an error at start, never a silent fall back to the weaker wall.
"""

from __future__ import annotations

from collections.abc import Iterable

import docker

RUNC = "runc"
RUNSC = "runsc"
RUNTIMES = (RUNC, RUNSC)
AUTO = "auto"
#: What an operator runs to get the second wall (docs/isolation.md, scripts/runsc-setup).
INSTALL_HINT = "run `make runsc` (Debian's runsc, registered with the Docker engine)"


class RuntimeUnavailableError(RuntimeError):
    """The runtime asked for is not registered with the Docker engine; the message says how."""


def choose_runtime(requested: str | None, registered: Iterable[str]) -> str:
    """The runtime the sandboxes use, from the node's setting and the engine's runtimes."""
    wanted = (requested or AUTO).strip().lower()
    known = set(registered)
    if wanted == AUTO:
        return RUNSC if RUNSC in known else RUNC
    if wanted not in RUNTIMES:
        raise ValueError(f"UNSEEN_RUNTIME must be one of runc, runsc, auto; got {requested!r}")
    if wanted not in known:
        raise RuntimeUnavailableError(
            f"UNSEEN_RUNTIME={wanted} but the Docker engine has no runtime {wanted!r} "
            f"(it has: {', '.join(sorted(known)) or 'none'}); {INSTALL_HINT}, "
            "or set UNSEEN_RUNTIME=runc"
        )
    return wanted


ISOLATION_FORMS = ("zygote", "container")
#: Why the zygote form is not offered under runsc (docs/isolation.md, measured here): each
#: block gets pid, mount and IPC namespaces of its own and a /proc of its own, and Debian 12's
#: gVisor (2022-12-19) answers a new mount namespace with success while sharing the mount table:
#: the block's /proc would replace the zygote's. The zygote checks and refuses to start there.
ZYGOTE_UNDER_RUNSC = (
    "the zygote isolation form is not offered under runsc: this gVisor does not isolate "
    "mount namespaces, so a block cannot get a /proc of its own (docs/isolation.md); set "
    "UNSEEN_ISOLATION=container (a fresh gVisor sandbox per block) or UNSEEN_RUNTIME=runc"
)


def choose_isolation(requested: str | None, runtime: str) -> str:
    """The isolation form: the setting, else the runtime's default (zygote under runc, a
    container per block under runsc). Refuses a form the runtime does not offer."""
    if requested is not None and requested not in ISOLATION_FORMS:
        raise ValueError(f"UNSEEN_ISOLATION must be one of zygote, container; got {requested!r}")
    form = requested or ("container" if runtime == RUNSC else "zygote")
    if form == "zygote" and runtime == RUNSC:
        raise RuntimeUnavailableError(ZYGOTE_UNDER_RUNSC)
    return form


def registered_runtimes(client: docker.DockerClient) -> set[str]:
    """The runtimes the engine reports (``docker info``'s Runtimes)."""
    return set((client.info().get("Runtimes") or {}).keys())
