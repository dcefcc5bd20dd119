"""The champion is the alias; the Production stage is its mirror (for users of the MLflow UI).

The served model is ``models:/<name>@champion`` (MODEL_URI's default). MLflow deprecated stages
and registries such as Unity Catalog have none, but the MLflow UI's Stage menu (Transition to
Production) is still how many users promote. :func:`mirror_champion` keeps both on one version:

* the stage moved (a UI stage transition) and the alias did not: the alias follows the stage;
* the alias moved (the alias editor, a script, the promote pipeline): the stage follows, the
  previous Production version is archived. When both moved since the last check, the alias wins.
* neither moved: nothing; in particular archiving the Production version without promoting
  another changes nothing served, and removing the alias leaves the stage alone.

"Moved" is measured against the pair recorded at the last check, a tag of the registered model
(:data:`MIRROR_TAG`, ``"<Production version>:<champion version>"``): the check is stateless, so
any process (the streaming job's and the decision service's registry poll, at start and every
refresh) can run it, concurrently too (both would make the same idempotent changes).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

from fraudops.modeling.registry import (
    CHAMPION_ALIAS,
    PRODUCTION,
    _client,
    parse_models_uri,
    production_version,
)

MIRROR_TAG = "champion_mirror"
log = logging.getLogger("fraudops.modeling.champion")


@dataclass(frozen=True)
class MirrorResult:
    """What :func:`mirror_champion` found and did.

    Attributes:
        champion: the version both the alias and the stage name afterwards (None: no champion).
        action: ``"alias_follows_stage"``, ``"stage_follows_alias"`` or ``None`` (nothing changed).
    """

    champion: str | None
    action: str | None


def champion_alias_version(name: str, client=None) -> str | None:
    """The version the ``champion`` alias names (None when there is no such alias or model)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client(client).get_model_version_by_alias(name, CHAMPION_ALIAS).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def champion_version(name: str, client=None):
    """The served champion's ModelVersion: the ``champion`` alias's, else (a registry not mirrored
    yet) the Production stage's; None when there is neither. Read-only."""
    client = _client(client)
    alias = champion_alias_version(name, client)
    return client.get_model_version(name, alias) if alias is not None else production_version(name, client)


def _last_mirrored(name: str, client) -> tuple[str | None, str | None]:
    tag = (client.get_registered_model(name).tags or {}).get(MIRROR_TAG, ":")
    stage, _, alias = tag.partition(":")
    return stage or None, alias or None


def decide_mirror(stage: str | None, alias: str | None, last_stage: str | None,
                  last_alias: str | None) -> str | None:
    """The mirror's action for the current (stage, alias) versions and the last recorded pair. Pure.

    Returns ``"alias_follows_stage"``, ``"stage_follows_alias"`` or None.
    """
    if stage == alias:
        return None
    if alias is not None and alias != last_alias:
        return "stage_follows_alias"
    if stage is not None and stage != last_stage:
        return "alias_follows_stage"
    return None


def mirror_champion(name: str, client=None) -> MirrorResult:
    """Put the Production stage and the ``champion`` alias of ``name`` on one version (see module doc).

    Returns:
        A :class:`MirrorResult`; raises MlflowException when the registry cannot be reached.
    """
    client = _client(client)
    stage_version = production_version(name, client)
    stage = str(stage_version.version) if stage_version is not None else None
    alias = champion_alias_version(name, client)
    if stage is None and alias is None:
        return MirrorResult(None, None)
    last = _last_mirrored(name, client)
    action = decide_mirror(stage, alias, *last)
    if action == "alias_follows_stage":
        client.set_registered_model_alias(name, CHAMPION_ALIAS, stage)
        alias = stage
    elif action == "stage_follows_alias":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            client.transition_model_version_stage(name, alias, PRODUCTION, archive_existing_versions=True)
        stage = alias
    if action:
        log.warning("%s: %s, both on version %s", name, action, alias)
    if last != (stage, alias):
        client.set_registered_model_tag(name, MIRROR_TAG, f"{stage or ''}:{alias or ''}")
    return MirrorResult(alias, action)


def mirrors(model_uri: str) -> str | None:
    """The registered model whose champion ``model_uri`` serves (``@champion`` or ``/Production``),
    None for any other URI (a pinned version, another alias or stage): those are not mirrored."""
    name, ref, alias = parse_models_uri(model_uri)
    return name if alias == CHAMPION_ALIAS or ref == PRODUCTION else None
