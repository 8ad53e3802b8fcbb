"""A small typed HTTP client for the unseen API: the CLI, the demo and the tests all use it.

It imports nothing of the server. Errors come back as :class:`UnseenError` carrying the
server's stable ``error`` code and its one-line message that names the fix.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

TERMINAL = frozenset({"released", "rejected", "failed"})
RESTING = TERMINAL | {"awaiting_review", "partially_reviewed"}


class UnseenError(Exception):
    def __init__(self, status: int, code: str, message: str, body: dict[str, Any]) -> None:
        super().__init__(f"{message} [{code}, HTTP {status}]")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class UnseenClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.token = token
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def __enter__(self) -> UnseenClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def url(self) -> str:
        """The server this client talks to, without a trailing slash."""
        return str(self._http.base_url).rstrip("/")

    def with_token(self, token: str) -> UnseenClient:
        return UnseenClient(str(self._http.base_url), token, self._http.timeout.read or 60.0)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The response, or UnseenError with the server's error code and message."""
        response = self._http.request(method, path, **kwargs)
        if response.is_error:
            try:
                body = response.json()
            except ValueError:
                body = {"error": "http_error", "message": response.text[:500]}
            raise UnseenError(
                response.status_code,
                str(body.get("error", "http_error")),
                str(body.get("message", body)),
                body,
            )
        return response

    # accounts
    def health(self) -> dict[str, Any]:
        return self._request("GET", "/healthz")

    def create_organizer(self, name: str, password: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        if password is not None:
            body["password"] = password
        return self._request("POST", "/v1/organizers", json=body)

    def login(
        self, name: str, password: str, label: str = "", expires_in: int | None = None
    ) -> dict[str, Any]:
        """A new token for this name and password (the client's own token is not needed),
        valid ``expires_in`` seconds (default: the server's)."""
        body: dict[str, Any] = {"name": name, "password": password, "label": label}
        if expires_in is not None:
            body["expires_in"] = expires_in
        return self._request("POST", "/v1/login", json=body)

    def set_password(self, password: str, current: str | None = None) -> None:
        """Set your password; ``current`` is needed once the account has one."""
        body = {"password": password}
        if current is not None:
            body["current_password"] = current
        self._request("PUT", "/v1/me/password", json=body)

    def reset_password(self, name: str) -> dict[str, Any]:
        """Organizers: a contestant's temporary password (shown once); their tokens revoked."""
        return self._request("PUT", f"/v1/users/{name}/password")

    def teams(self) -> list[dict[str, Any]]:
        """Organizers: every team's id and name."""
        return self._request("GET", "/v1/teams")

    def tokens(self, of: str | None = None) -> list[dict[str, Any]]:
        """Your tokens (organizers: ``of`` another user's), revoked ones included."""
        return self._request("GET", "/v1/tokens", params={"of": of} if of else None)

    def revoke_token(self, token_id: str) -> None:
        self._request("DELETE", f"/v1/tokens/{token_id}")

    def revoke_other_tokens(self) -> list[str]:
        """Revoke every token of yours but this client's; the ids revoked."""
        return list(self._request("DELETE", "/v1/tokens")["revoked"])

    def token_policy(self) -> dict[str, Any]:
        """A new token's default and maximum lifetime, in seconds."""
        return self._request("GET", "/v1/token-policy")

    def set_token_policy(self, default_seconds: int, max_seconds: int) -> dict[str, Any]:
        """Organizers: set them; live tokens past the new maximum are cut back to it."""
        body = {"default_seconds": default_seconds, "max_seconds": max_seconds}
        return self._request("PUT", "/v1/token-policy", json=body)

    def me(self) -> dict[str, Any]:
        return self._request("GET", "/v1/me")

    def create_team(self, name: str, contest: str | None = None) -> dict[str, Any]:
        body = {"name": name} if contest is None else {"name": name, "contest": contest}
        return self._request("POST", "/v1/teams", json=body)

    # contests (organizers unless said otherwise)
    def create_contest(self, name: str, description: str = "") -> dict[str, Any]:
        body = {"name": name, "description": description}
        return self._request("POST", "/v1/contests", json=body)

    def contests(self) -> list[dict[str, Any]]:
        """Organizers: every contest; contestants: their team's."""
        return self._request("GET", "/v1/contests")

    def set_round(
        self, contest: str, number: int, opens_at: datetime, closes_at: datetime
    ) -> dict[str, Any]:
        body = {"opens_at": opens_at.isoformat(), "closes_at": closes_at.isoformat()}
        return self._request("PUT", f"/v1/contests/{contest}/rounds/{number}", json=body)

    def admit(self, team: str, admitted: bool = True) -> dict[str, Any]:
        return self._request("PUT", f"/v1/teams/{team}/admission", json={"admitted": admitted})

    def verify_identity(self, user: str, verified: bool = True) -> dict[str, Any]:
        return self._request("PUT", f"/v1/users/{user}/identity", json={"verified": verified})

    def teams_status(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/teams/status")

    def upload_licence(self, team: str, content: bytes, filename: str) -> dict[str, Any]:
        """Contestants (or organizers): the team's signed licence, PDF, PNG or JPEG."""
        files = {"file": (filename, content, "application/octet-stream")}
        return self._request("POST", f"/v1/teams/{team}/licences", files=files)

    def licences(self, team: str) -> list[dict[str, Any]]:
        return self._request("GET", f"/v1/teams/{team}/licences")

    def licence_file(self, licence_id: str) -> bytes:
        return self._request("GET", f"/v1/licences/{licence_id}/file")

    def approve_licence(self, licence_id: str) -> dict[str, Any]:
        return self._request("POST", f"/v1/licences/{licence_id}/approve")

    def reject_licence(self, licence_id: str, reason: str) -> dict[str, Any]:
        return self._request("POST", f"/v1/licences/{licence_id}/reject", json={"reason": reason})

    def results(self, contest: str | None = None, as_csv: bool = False) -> Any:
        """Released outputs, one row per value: a list, or CSV text."""
        params = {"format": "csv" if as_csv else "json"}
        if contest is not None:
            params["contest"] = contest
        found = self._request("GET", "/v1/results", params=params)
        return found.decode("utf-8") if as_csv else found

    def add_member(self, team: str, name: str, password: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        if password is not None:
            body["password"] = password
        return self._request("POST", f"/v1/teams/{team}/members", json=body)

    # catalog
    def create_node(self, name: str) -> dict[str, Any]:
        """Organizers: a data node's credential (its token is shown once)."""
        return self._request("POST", "/v1/nodes", json={"name": name})

    def node_datasets(self) -> list[dict[str, Any]]:
        """Data nodes: the datasets this node holds."""
        return self._request("GET", "/v1/node/datasets")

    def register_dataset(self, **body: Any) -> dict[str, Any]:
        return self._request("POST", "/v1/datasets", json=body)

    def synthesize(self, dataset: str, **spec: Any) -> dict[str, Any]:
        """Make the dataset's public sample a DP synthetic table (organizers): its report."""
        return self._request("POST", f"/v1/datasets/{dataset}/synthesize", json=spec)

    def syntheses(self, dataset: str) -> list[dict[str, Any]]:
        return self._request("GET", f"/v1/datasets/{dataset}/syntheses")

    def datasets(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/datasets")

    def download_sample(self, dataset: str, out: Path) -> Path:
        self.fetch_sample(dataset, out)
        return out

    def fetch_sample(self, dataset: str, out: Path) -> str | None:
        """Write the public sample to ``out``; the runner image the server's sandboxes use
        (None from a server that does not say), to run the same harness locally."""
        response = self._send("GET", f"/v1/datasets/{dataset}/sample")
        out.write_bytes(response.content)
        return response.headers.get("x-unseen-runner-image")

    # jobs
    def estimate(
        self,
        dataset: str,
        outputs: list[dict[str, Any]] | None = None,
        epsilon: float = 1.0,
        combine: str = "mean",
        plan: dict[str, Any] | None = None,
        delta: float = 0.0,
        code: str | None = None,
    ) -> list[dict[str, Any]]:
        """Noise scale and 95 % error bound of an aggregate job's outputs or a query plan;
        with ``code``, the server's pre-flight policy checks it too (422 bad_code)."""
        body: dict[str, Any] = {"dataset": dataset, "epsilon": epsilon, "combine": combine}
        if delta:
            body["delta"] = delta
        if code is not None:
            body["code"] = code
        if plan is not None:
            body["plan"] = plan
        else:
            body["outputs"] = outputs or []
        return self._request("POST", "/v1/estimate", json=body)

    def query(
        self, dataset: str, plan: dict[str, Any], epsilon: float, delta: float = 0.0
    ) -> dict[str, Any]:
        """Queue a query-mode job: a declarative plan, user-level ε-DP release ((ε, δ) when
        keys without a public set are chosen by partition selection)."""
        body: dict[str, Any] = {"dataset": dataset, "plan": plan, "epsilon": epsilon}
        if delta:
            body["delta"] = delta
        return self._request("POST", "/v1/queries", json=body)

    def submit(
        self,
        dataset: str,
        code: str,
        outputs: list[dict[str, Any]],
        epsilon: float | None,
        combine: str = "mean",
        target: str = "full",
        block_seconds: float | None = None,
    ) -> dict[str, Any]:
        """Queue a full-data job (or run on the sample). ``block_seconds`` is every block's
        public time T; the job's length, fixed from it, is in the answer's ``schedule``."""
        body: dict[str, Any] = {
            "dataset": dataset,
            "code": code,
            "outputs": outputs,
            "epsilon": epsilon,
            "combine": combine,
            "target": target,
        }
        if block_seconds is not None:
            body["block_seconds"] = block_seconds
        return self._request("POST", "/v1/jobs", json=body)

    def schedule_rules(self) -> dict[str, Any]:
        """The node's public scheduling rules (block time limits, start allowance, slots)."""
        return self._request("GET", "/v1/schedule")

    def run_on_sample(
        self, dataset: str, code: str, outputs: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Run on the public sample now: raw values and full logs, no budget."""
        return self.submit(dataset, code, outputs, None, target="sample")

    def job(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}")

    def jobs(self, prefix: str | None = None) -> list[dict[str, Any]]:
        """Your team's jobs (organizers: all), newest first; only ids starting with ``prefix``."""
        return self._request("GET", "/v1/jobs", params={"prefix": prefix} if prefix else None)

    def wait(
        self,
        job_id: str,
        until: frozenset[str] = RESTING,
        timeout: float = 600.0,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        interval: float = 0.5,
    ) -> dict[str, Any]:
        """Poll until the job reaches one of ``until``; raises TimeoutError naming the job.
        A server briefly unable to answer (503: its database restarting) is polled again."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                job = self.job(job_id)
            except UnseenError as exc:
                if exc.status != 503 or time.monotonic() > deadline:
                    raise
                time.sleep(interval)
                continue
            if on_update is not None:
                on_update(job)
            if job["state"] in until:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout:.0f} s")
            time.sleep(interval)

    # review and budget
    def review_queue(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/review")

    def release(self, job_id: str) -> dict[str, Any]:
        """Approve the release; the answer's state is ``released`` once enough organizers
        have (its ``review`` says who and how many are needed)."""
        return self._request("POST", f"/v1/jobs/{job_id}/release")

    def set_review_rule(self, contest: str, approvals: int | None) -> dict[str, Any]:
        return self._request("PUT", f"/v1/contests/{contest}/review",
                             json={"approvals": approvals})  # fmt: skip

    def reject(self, job_id: str, reason: str) -> dict[str, Any]:
        return self._request("POST", f"/v1/jobs/{job_id}/reject", json={"reason": reason})

    def budget(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/budget")

    def audit(
        self,
        action: str | None = None,
        job: str | None = None,
        actor: str | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        """Organizers: the audit log, newest first, optionally one action, job or actor."""
        filters = {"action": action, "job": job, "actor": actor}
        params = {"limit": limit, **{k: v for k, v in filters.items() if v is not None}}
        return self._request("GET", "/v1/audit", params=params)

    def verify_audit(self) -> dict[str, Any]:
        """Organizers: recompute the audit log's hash chain on the server."""
        return self._request("GET", "/v1/audit/verify")

    def set_budget_cap(
        self, team: str, dataset: str, epsilon: float, delta: float | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"epsilon": epsilon}
        if delta is not None:
            body["delta"] = delta
        return self._request("PUT", f"/v1/teams/{team}/budgets/{dataset}", json=body)

    def populations(self) -> list[dict[str, Any]]:
        """Organizers: every population, its datasets and contest-wide ledger."""
        return self._request("GET", "/v1/populations")

    def set_population_cap(
        self, population: str, epsilon: float, delta: float | None = None
    ) -> dict[str, Any]:
        """Organizers: the contest-wide cap of a population, over all teams together."""
        body: dict[str, Any] = {"epsilon": epsilon}
        if delta is not None:
            body["delta"] = delta
        return self._request("PUT", f"/v1/populations/{population}", json=body)
