"""Which adapter version answers: live, a canary share of new conversations, promotion and rollback.

    router = VersionRouter(registry, engine, store)   # ctx.extras["router"]; chat.start_turn asks it
    router.on_startup()                               # serve what the database says is live (and canary)
    router.promote("v0003", by="admin")               # GateFailedError (409) unless its gate passed or force
    router.start_canary("v0004", 0.2)                 # 20 % of new conversations, sticky per conversation
    router.rollback(None, by="admin")                 # back to the base model, instantly

Every change validates the adapter before the engine loads it (registry.validate), then swaps the engine
(`load_version` → `set_live` → `retire(old)`: running requests finish on their version), then records the
aliases and statuses in the database. With `engine=None` (the CLI when no server runs) only the database
changes, and the next server start serves it.

`CanaryMonitor` compares the canary's 👍 rate and A/B wins against live's on answers given since the canary
started, decides promote / rollback / wait once both have a minimum sample, and applies that when `auto`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import threading
from pathlib import Path
from typing import Any

from .engine import BASE
from .errors import AssistantError

log = logging.getLogger(__name__)


class GateFailedError(AssistantError):
    """Promotion refused: the version's gate failed or never ran (pass force to override)."""

    status = 409
    code = "gate_failed"


class VersionInUseError(AssistantError):
    status = 409
    code = "version_in_use"


def canary_bucket(conversation_id: str, salt: str) -> float:
    """A conversation's fixed place in [0, 1): the same id always lands in the same bucket."""
    digest = hashlib.sha256(f"{salt}:{conversation_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class VersionRouter:
    """Routes chats to versions and changes what serves. Thread-safe; changes are serialised."""

    def __init__(self, registry: Any, engine: Any | None, store: Any | None = None) -> None:
        self.registry = registry
        self.engine = engine
        self.store = store if store is not None else registry.store
        self._lock = threading.RLock()
        self._random = random.Random()
        # (version, share, since) read without the lock on every chat turn: replaced as a whole.
        self._canary: tuple[str | None, float, str] = (None, 0.0, "")
        self._refresh_canary()

    # ------------------------------------------------------------------ routing (every chat turn)
    def version_for(self, conversation_id: str | None) -> str | None:
        """The version for this conversation's next answer; None means the engine's live version.

        A conversation that already has an answer stays on the version that gave it (sticky) as long as
        that is the canary; a new one with an id goes to the canary when its hash bucket is below the
        share; one without an id yet (its first turn) is drawn at random with the same odds.
        """
        version, share, _ = self._canary
        if version is None or share <= 0.0:
            return None
        if self.engine is not None and version not in self.engine.loaded_versions:
            return None
        if conversation_id:
            previous = self._last_answer_version(conversation_id)
            if previous is not None:
                return version if previous == version else None
            bucket = canary_bucket(conversation_id, version)
        else:
            bucket = self._random.random()
        return version if bucket < share else None

    def _last_answer_version(self, conversation_id: str) -> str | None:
        if self.store is None:
            return None
        rows = self.store.query(
            """SELECT COALESCE(adapter_version, 'base') AS version FROM messages
               WHERE conversation_id = ? AND role = 'assistant' AND source != 'correction'
               ORDER BY created_at DESC LIMIT 1""",
            [conversation_id],
        )
        return rows[0]["version"] if rows else None

    # ------------------------------------------------------------------ state
    @property
    def canary_version(self) -> str | None:
        return self._canary[0]

    @property
    def canary_share(self) -> float:
        return self._canary[1]

    @property
    def canary_since(self) -> str:
        return self._canary[2]

    @property
    def live_version(self) -> str | None:
        """What serves new conversations now (None: the base model)."""
        if self.engine is not None:
            live = self.engine.live_version
            return None if live == BASE else live
        return self.registry.live()

    def state(self) -> dict[str, Any]:
        return {
            "live": self.live_version,
            "canary": self.canary_version,
            "canary_share": self.canary_share,
            "canary_since": self.canary_since or None,
            "loaded": sorted(self.engine.loaded_versions) if self.engine is not None else None,
            "serving": self.engine is not None,
        }

    def _refresh_canary(self) -> None:
        alias = self.registry.alias("canary")
        if alias and alias["version"]:
            self._canary = (alias["version"], float(alias["share"] or 0.0), alias["updated_at"] or "")
        else:
            self._canary = (None, 0.0, "")

    # ------------------------------------------------------------------ changes
    def promote(self, version: str, by: str = "admin", force: bool = False) -> dict[str, Any]:
        """Make `version` live for new requests. Refused (409) if its gate did not pass, unless force."""
        with self._lock:
            row = self.registry.require(version)
            if not force:
                self._check_gate(row)
            previous = self.registry.live()
            canary, _ = self.registry.canary()
            changes: dict[str, tuple[str | None, float]] = {"live": (version, 1.0)}
            if canary == version:
                changes["canary"] = (None, 0.0)  # the canary graduated
            statuses = {version: "live"}
            if previous and previous != version:
                statuses[previous] = "retired"
            self._swap_live(version, changes, statuses, by, keep=None if canary == version else canary)
            log.info("%s promoted %s to live (was %s)%s", by, version, previous or BASE,
                     " [forced]" if force else "")
            return self.state()

    def rollback(self, version: str | None = None, by: str = "admin") -> dict[str, Any]:
        """Serve `version` (None: the base model) from now on; instant when it is still loaded.

        No gate check: rollback is the way back to a known state.
        """
        with self._lock:
            if version is not None:
                self.registry.require(version)
            previous = self.registry.live()
            canary, _ = self.registry.canary()
            changes: dict[str, tuple[str | None, float]] = {"live": (version, 1.0)}
            if canary is not None and canary == version:
                changes["canary"] = (None, 0.0)
            statuses: dict[str, str] = {}
            if version is not None:
                statuses[version] = "live"
            if previous and previous != version:
                statuses[previous] = "retired"
            self._swap_live(version, changes, statuses, by, keep=None if canary == version else canary)
            log.info("%s rolled back live to %s (was %s)", by, version or BASE, previous or BASE)
            return self.state()

    def start_canary(
        self, version: str, share: float, by: str = "admin", force: bool = False
    ) -> dict[str, Any]:
        """Send `share` of new conversations to `version`; 409 if its gate did not pass, unless force."""
        if not 0.0 < share <= 1.0:
            raise _InvalidShare(share)
        with self._lock:
            row = self.registry.require(version)
            if not force:
                self._check_gate(row)
            if version == self.live_version:
                raise VersionInUseError(f"{version} is already live; a canary must be a different version")
            old, _ = self.registry.canary()
            if self.engine is not None:
                self._ensure_loaded(version)
            statuses = {version: "canary"}
            if old and old != version and old != self.registry.live():
                statuses[old] = "candidate"
            self.registry.update_aliases({"canary": (version, share)}, by=by, statuses=statuses)
            self._refresh_canary()
            if self.engine is not None and old and old != version:
                self._retire_unless_used(old)
            log.info("%s started canary %s at %.0f %% of new conversations", by, version, share * 100)
            return self.state()

    def stop_canary(self, by: str = "admin", reject: bool = False) -> dict[str, Any]:
        """End the canary; its conversations go back to live. `reject` marks the version rejected."""
        with self._lock:
            old, _ = self.registry.canary()
            statuses = {}
            if old and old != self.registry.live():
                statuses[old] = "rejected" if reject else "candidate"
            self.registry.update_aliases({"canary": (None, 0.0)}, by=by, statuses=statuses)
            self._refresh_canary()
            if self.engine is not None and old:
                self._retire_unless_used(old)
            if old:
                log.info("%s stopped canary %s%s", by, old, " (rejected)" if reject else "")
            return self.state()

    def load(self, version: str) -> dict[str, Any]:
        """Validate and load a registered version without serving it (addressable as model=<version>)."""
        with self._lock:
            self.registry.require(version)
            if self.engine is None:
                raise _NoEngine()
            self._ensure_loaded(version)
            return self.state()

    def unload(self, version: str) -> None:
        """Unload a version once its running requests end; the live one and the canary are refused."""
        with self._lock:
            if version in (self.live_version, self.canary_version):
                raise VersionInUseError(
                    f"{version} is serving ({'live' if version == self.live_version else 'canary'}); "
                    "roll back or stop the canary first"
                )
            if self.engine is not None:
                self._retire(version)

    def on_startup(self) -> dict[str, Any]:
        """Register version directories written while the server was down, then load what the database
        says is live and canary. A version that no longer validates is logged and not served (base or
        the live version serves instead); the database is left as it is for an admin to decide."""
        errors: dict[str, str] = {}
        with self._lock:
            try:
                self.registry.sync()
            except Exception as exc:  # a bad directory must not stop the server
                log.exception("scanning %s failed", self.registry.adapters_dir)
                errors["sync"] = str(exc)
            if self.engine is not None:
                live = self.registry.live()
                if live is not None:
                    try:
                        self._ensure_loaded(live)
                        self.engine.set_live(live)
                    except AssistantError as exc:
                        log.error("not serving live version %s: %s; serving %s instead", live, exc, BASE)
                        errors[live] = str(exc)
                canary, _ = self.registry.canary()
                if canary is not None:
                    try:
                        self._ensure_loaded(canary)
                    except AssistantError as exc:
                        log.error("not serving canary %s: %s", canary, exc)
                        errors[canary] = str(exc)
            self._refresh_canary()
        return {**self.state(), "errors": errors}

    # ------------------------------------------------------------------ internals
    def _check_gate(self, row: dict[str, Any]) -> None:
        if row["gate_passed"] is True:
            return
        if row["gate_passed"] is None:
            raise GateFailedError(
                f"{row['id']} has no gate report yet; run `python -m assistant eval {row['id']}` first, "
                "or pass force to override"
            )
        failed = ""
        gate = row.get("gate") or {}
        if isinstance(gate, dict):
            reasons = gate.get("reasons") or gate.get("failures") or gate.get("failed")
            if reasons:
                failed = f" ({reasons if isinstance(reasons, str) else '; '.join(map(str, reasons))})"
        raise GateFailedError(
            f"{row['id']} failed the promotion gate{failed}; fix and retrain, or pass force to override"
        )

    def _ensure_loaded(self, version: str) -> None:
        """Validate, then load into the engine (no-op when loaded). Raises AdapterRejectedError first."""
        engine = self.engine
        assert engine is not None
        if version in engine.loaded_versions:
            # Loaded but maybe waiting to be unloaded (retired): keep it. The engine has no public call
            # for this; its retire set is guarded by its condition variable.
            retiring = getattr(engine, "_retire", None)
            if retiring is not None and version in retiring:
                with engine._cv:
                    retiring.discard(version)
            if version in engine.loaded_versions:
                return
        row = self.registry.validate_registered(version)
        engine.load_version(version, Path(row["path"]))

    def _swap_live(
        self,
        version: str | None,
        changes: dict[str, tuple[str | None, float]],
        statuses: dict[str, str],
        by: str,
        keep: str | None,
    ) -> None:
        """Engine first (validate → load → set_live), then the database; undo the engine if that fails."""
        old = None
        if self.engine is not None:
            if version is not None:
                self._ensure_loaded(version)
            old = self.engine.set_live(version or BASE)
        try:
            self.registry.update_aliases(changes, by=by, statuses=statuses)
        except BaseException:
            if self.engine is not None and old is not None:
                self.engine.set_live(old)
            raise
        self._refresh_canary()
        if self.engine is not None and old is not None and old not in (version or BASE, keep):
            self._retire_unless_used(old)

    def _retire_unless_used(self, version: str) -> None:
        if version in (BASE, self.live_version, self.canary_version):
            return
        self._retire(version)

    def _retire(self, version: str) -> None:
        assert self.engine is not None
        self.engine.retire(version)
        # The worker sleeps until a request or command arrives (retire alone doesn't wake it): a no-op
        # command makes it unload now rather than at the next chat.
        self.engine.call(lambda: None)


class _InvalidShare(AssistantError):
    status = 400
    code = "invalid_request_error"

    def __init__(self, share: float) -> None:
        super().__init__(f"canary share must be greater than 0 and at most 1, got {share}")


class _NoEngine(AssistantError):
    status = 503
    code = "not_ready"

    def __init__(self) -> None:
        super().__init__("no model is running in this process; start the server to load versions")


# ---------------------------------------------------------------------------- statistics (no scipy)
def prob_beta_less(a1: float, b1: float, a2: int, b2: float) -> float:
    """P(X1 < X2) for X1 ~ Beta(a1, b1), X2 ~ Beta(a2, b2) with integer a2 (Evan Miller's closed form)."""

    def lbeta(x: float, y: float) -> float:
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    total = 0.0
    base = lbeta(a1, b1)
    for i in range(int(a2)):
        total += math.exp(lbeta(a1 + i, b1 + b2) - math.log(b2 + i) - lbeta(1 + i, b2) - base)
    return min(1.0, max(0.0, total))


def prob_beta_below_half(a: int, b: int) -> float:
    """P(X < 0.5) for X ~ Beta(a, b) with integer a, b: P(Binomial(a + b - 1, 0.5) ≥ a), exactly."""
    n = a + b - 1
    return sum(math.comb(n, k) for k in range(a, n + 1)) / 2**n


def two_proportion_z(up1: int, n1: int, up2: int, n2: int) -> tuple[float, float]:
    """(z, one-sided p-value that proportion 1 < proportion 2), for reporting beside the Bayesian test."""
    if n1 == 0 or n2 == 0:
        return 0.0, 1.0
    pooled = (up1 + up2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (up1 / n1 - up2 / n2) / se
    return z, 0.5 * math.erfc(-z / math.sqrt(2))


class CanaryMonitor:
    """Decides a running canary from live feedback: promote, rollback or wait.

    Both versions are judged on answers given since the canary started (same period, same users):
    - 👍 rate: Beta(1 + up, 1 + down) posteriors; P(canary worse) > `confidence` → rollback; P(canary
      better) > `confidence`, or after `ample` rated answers each no worse on average → promote.
    - A/B votes between the two (ties and both-bad ignored): the same test on the canary's win share.
    Nothing is decided until one signal has `min_samples` (rated answers each, or decisive votes).
    """

    def __init__(
        self,
        store: Any,
        registry: Any,
        router: VersionRouter,
        *,
        min_samples: int = 30,
        confidence: float = 0.95,
        ample: int = 200,
        auto: bool = False,
    ) -> None:
        self.store = store
        self.registry = registry
        self.router = router
        self.min_samples = min_samples
        self.confidence = confidence
        self.ample = ample
        self.auto = auto
        self.last: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def counts(self, canary: str, live: str | None, since: str) -> dict[str, Any]:
        live_name = live or BASE
        thumbs = {canary: {"up": 0, "down": 0}, live_name: {"up": 0, "down": 0}}
        rows = self.store.query(
            """
            SELECT COALESCE(m.adapter_version, 'base') AS version,
                   sum(cur.rating = 'up') AS up, sum(cur.rating = 'down') AS down
            FROM ratings cur JOIN messages m ON m.id = cur.message_id
            WHERE cur.id = (SELECT max(r2.id) FROM ratings r2
                            WHERE r2.message_id = cur.message_id AND r2.rater = cur.rater)
              AND cur.rating IS NOT NULL AND m.role = 'assistant' AND m.source != 'correction'
              AND m.created_at >= ? AND COALESCE(m.adapter_version, 'base') IN (?, ?)
            GROUP BY COALESCE(m.adapter_version, 'base')
            """,
            [since, canary, live_name],
        )
        for row in rows:
            thumbs[row["version"]] = {"up": int(row["up"] or 0), "down": int(row["down"] or 0)}
        wins = {"canary": 0, "live": 0, "tie": 0, "both_bad": 0}
        for row in self.store.query(
            """
            SELECT c.winner, COALESCE(a.adapter_version, 'base') AS va,
                   COALESCE(b.adapter_version, 'base') AS vb
            FROM comparisons c JOIN messages a ON a.id = c.message_a JOIN messages b ON b.id = c.message_b
            WHERE c.created_at >= ?
            """,
            [since],
        ):
            if {row["va"], row["vb"]} != {canary, live_name}:
                continue
            if row["winner"] in ("tie", "both_bad"):
                wins[row["winner"]] += 1
            else:
                winner_version = row["va"] if row["winner"] == "a" else row["vb"]
                wins["canary" if winner_version == canary else "live"] += 1
        return {"canary": thumbs[canary], "live": thumbs[live_name], "ab": wins}

    def decide(self) -> dict[str, Any]:
        """The verdict now, with the numbers behind it (no side effects)."""
        canary, share, since = self.router._canary
        live = self.router.live_version
        if canary is None:
            return {"decision": "none", "reason": "no canary is running"}
        counts = self.counts(canary, live, since)
        c, lv, ab = counts["canary"], counts["live"], counts["ab"]
        n_c, n_l = c["up"] + c["down"], lv["up"] + lv["down"]
        report: dict[str, Any] = {
            "canary": canary, "live": live or BASE, "share": share, "since": since,
            "thumbs": {"canary": {**c, "n": n_c, "rate": c["up"] / n_c if n_c else None},
                       "live": {**lv, "n": n_l, "rate": lv["up"] / n_l if n_l else None}},
            "ab": ab, "min_samples": self.min_samples, "confidence": self.confidence,
        }
        thumbs_ready = n_c >= self.min_samples and n_l >= self.min_samples
        p_worse = None
        if thumbs_ready:
            # P(canary rate < live rate) under uniform priors.
            p_worse = prob_beta_less(1 + c["up"], 1 + c["down"], 1 + lv["up"], 1 + lv["down"])
            z, p_value = two_proportion_z(c["up"], n_c, lv["up"], n_l)
            report["thumbs"].update(p_canary_worse=p_worse, z=z, p_value_worse=p_value)
        decisive = ab["canary"] + ab["live"]
        ab_ready = decisive >= self.min_samples
        ab_worse = None
        if ab_ready:
            ab_worse = prob_beta_below_half(1 + ab["canary"], 1 + ab["live"])  # P(win share < 1/2)
            report["ab_p_canary_worse"] = ab_worse
        worse = [p for p in (p_worse, ab_worse) if p is not None]
        if not worse:
            report.update(decision="wait", reason=(
                f"need ≥ {self.min_samples} rated answers each (canary {n_c}, live {n_l}) "
                f"or ≥ {self.min_samples} A/B votes ({decisive})"))
        elif max(worse) > self.confidence:
            which = "👍 rate" if p_worse is not None and p_worse > self.confidence else "A/B votes"
            report.update(decision="rollback", reason=(
                f"canary is worse than live on {which} (P = {max(worse):.3f} > {self.confidence})"))
        elif min(worse) < 1 - self.confidence and max(worse) < 0.5:
            report.update(decision="promote", reason=(
                f"canary is better than live (P(worse) = {min(worse):.3f}) and not worse on the other "
                "signal"))
        elif thumbs_ready and min(n_c, n_l) >= self.ample and max(worse) < 0.5:
            report.update(decision="promote", reason=(
                f"after ≥ {self.ample} rated answers each the canary is no worse than live"))
        else:
            report.update(decision="wait", reason="no clear difference yet; keep collecting feedback")
        return report

    def check(self) -> dict[str, Any]:
        """Decide; with `auto` on, apply a promote (gate still required) or rollback (stop + reject)."""
        report = self.decide()
        report["applied"] = False
        if self.auto and report["decision"] in ("promote", "rollback"):
            canary = report["canary"]
            try:
                if report["decision"] == "rollback":
                    self.router.stop_canary(by="canary-monitor", reject=True)
                else:
                    self.router.promote(canary, by="canary-monitor")
                report["applied"] = True
                log.warning("canary monitor: %s %s — %s", report["decision"], canary, report["reason"])
            except AssistantError as exc:
                report["error"] = str(exc)
                log.warning("canary monitor could not %s %s: %s", report["decision"], canary, exc)
        self.last = report
        return report

    def start(self, interval_s: float = 60.0) -> CanaryMonitor:
        """Check every `interval_s` seconds on a daemon thread (no torch runs on it)."""
        if self._thread is None:
            def loop() -> None:
                while not self._stop.wait(interval_s):
                    if self.router.canary_version is None:
                        continue
                    try:
                        self.check()
                    except Exception:  # keep watching; the next check may succeed
                        log.exception("canary check failed")

            self._thread = threading.Thread(target=loop, name="canary-monitor", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
