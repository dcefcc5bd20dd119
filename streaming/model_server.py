"""Which registry version the scoring job serves, decided on the driver by a background poll.

At start, MODEL_URI (default models:/fraud-detector@champion) must resolve, or the job stops
with a clear error. Then a daemon thread asks the registry every ``refresh_seconds`` which
version MODEL_URI names (after mirroring the champion alias and the Production stage,
fraudops.modeling.champion: a stage transition in the MLflow UI moves the alias, and the other
way round); a new version becomes :attr:`ModelServer.served` (pinned as
models:/<name>/<version>) for the next micro-batches, the switch is logged and written to
audit_log. The poll never runs on the micro-batch path; if the registry cannot be reached, the
current version keeps scoring and the next poll retries. The Python workers load the pinned
pyfunc once each (streaming.scoring_pass.worker_model), so a switch costs one load per worker.
"""

from __future__ import annotations

import logging
import threading

from fraudops.modeling.champion import mirror_champion, mirrors
from fraudops.modeling.registry import (
    ServedModel,
    configure_tracking,
    parse_models_uri,
    resolve_challenger,
    resolve_served_model,
)

log = logging.getLogger("streaming.model_server")


class ModelUnavailableError(RuntimeError):
    """The model named by MODEL_URI cannot be resolved or loaded."""


class ModelServer:
    """The served version (:attr:`served`), kept current by a background registry poll."""

    def __init__(self, model_uri: str, settings, refresh_seconds: float = 10.0, audit=None):
        self.model_uri = model_uri
        self.settings = settings
        self.refresh_seconds = refresh_seconds
        self.audit = audit  # callable(event_type, details) writing audit_log, or None
        self.served: ServedModel | None = None
        # the challenger scored in shadow (Staging stage or `challenger` alias), None: none
        self.challenger: ServedModel | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ServedModel:
        """Resolve the model and start the poll; raises ModelUnavailableError naming the URI."""
        configure_tracking(self.settings)
        try:
            self.mirror()
            self.served = resolve_served_model(self.model_uri)
        except Exception as exc:  # registry down or no such version
            raise ModelUnavailableError(
                f"cannot resolve {self.model_uri} at the MLflow registry {self.settings.mlflow_tracking_uri}: "
                f"{exc}. Start MLflow with `make stack-up` and promote a model (`mlflow run . -e promote`)."
            ) from exc
        if self.served.feature_set_version:
            log.info("serving %s (feature set %s)", self.served.model_uri, self.served.feature_set_version)
        self.check_challenger()
        self._thread = threading.Thread(target=self._poll, name="registry-poll", daemon=True)
        self._thread.start()
        return self.served

    def stop(self) -> None:
        self._stop.set()

    def _poll(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.check()
            self.check_challenger()

    def check_challenger(self) -> bool:
        """Ask the registry for the challenger; pick up a new one, drop a gone one (audit_log
        records each change). Returns True when it changed."""
        try:
            challenger_served = resolve_challenger(parse_models_uri(self.model_uri)[0], self.served.version)
        except Exception as exc:  # noqa: BLE001 - keep the current challenger
            log.warning("registry not reachable for the challenger (%s)", exc)
            return False
        current = self.challenger
        if challenger_served is not None and challenger_served.feature_set_version != self.served.feature_set_version:
            if getattr(self, "_refused", None) != challenger_served.version:  # warn once per version
                self._refused = challenger_served.version
                log.warning("challenger version %s has feature set %s, the served version %s: not scored in shadow",
                            challenger_served.version, challenger_served.feature_set_version, self.served.feature_set_version)
            challenger_served = None
        if (challenger_served and challenger_served.version) == (current and current.version):
            return False
        if challenger_served is not None:
            try:
                import mlflow.pyfunc

                mlflow.pyfunc.load_model(challenger_served.model_uri)  # a challenger that cannot load never scores
            except Exception as exc:  # noqa: BLE001
                log.warning("could not load challenger version %s (%s)", challenger_served.version, exc)
                return False
        self.challenger = challenger_served
        log.warning("challenger: version %s -> %s", current and current.version, challenger_served and challenger_served.version)
        if self.audit:
            try:
                self.audit("challenger_switch", {"model": self.served.name,
                                                 "from_version": current and current.version,
                                                 "to_version": challenger_served and challenger_served.version,
                                                 "champion_version": self.served.version})
            except Exception as exc:  # noqa: BLE001 - best effort, like the model switch
                log.warning("could not audit the challenger change: %s", exc)
        return True

    def mirror(self) -> None:
        """Keep the champion alias and the Production stage on one version when MODEL_URI serves
        either (a UI stage transition then moves the alias, and the other way round)."""
        name = mirrors(self.model_uri)
        if name is not None:
            mirror_champion(name)

    def check(self) -> bool:
        """Ask the registry once; switch to a newly promoted version. Returns True when it switched."""
        try:
            self.mirror()
            served = resolve_served_model(self.model_uri)
        except Exception as exc:  # noqa: BLE001 - keep scoring with the current model
            log.warning("registry not reachable (%s); keeping version %s", exc, self.served.version)
            return False
        if served.version == self.served.version:
            return False
        try:
            import mlflow.pyfunc

            mlflow.pyfunc.load_model(served.model_uri)  # a version that cannot load never serves
        except Exception as exc:  # noqa: BLE001
            log.warning("could not load version %s (%s); keeping %s", served.version, exc, self.served.version)
            return False
        previous, self.served = self.served, served
        log.warning("model switched: version %s -> %s", previous.version, served.version)
        if self.audit:
            try:
                self.audit("model_switch", {"model": served.name, "from_version": previous.version,
                                            "to_version": served.version, "model_uri": self.model_uri})
            except Exception as exc:  # noqa: BLE001 - the switch stands; the audit row is best effort
                log.warning("could not audit the model switch: %s", exc)
        return True
