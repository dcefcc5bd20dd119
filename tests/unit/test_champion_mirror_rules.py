"""The champion mirror's decision (fraudops.modeling.champion.decide_mirror) and which URIs it
mirrors; tests/integration/test_champion_mirror.py runs it against the real registry."""

import pytest

from fraudops.modeling.champion import decide_mirror, mirrors

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("stage", "alias", "last", "expected"), [
    ("2", "2", ("1", "1"), None),                      # in agreement: nothing to do
    ("3", "2", ("2", "2"), "alias_follows_stage"),     # UI: Transition to -> Production
    ("2", "3", ("2", "2"), "stage_follows_alias"),     # alias editor, promote pipeline
    ("3", "4", ("2", "2"), "stage_follows_alias"),     # both moved: the alias wins
    (None, "2", ("2", "2"), None),                     # Production archived, nothing promoted
    ("2", None, ("2", "2"), None),                     # alias removed: the stage does not re-add it
    ("2", None, (None, None), "alias_follows_stage"),  # a registry from before the alias
    (None, "2", (None, None), "stage_follows_alias"),  # an alias-only registry
    ("1", "2", (None, None), "stage_follows_alias"),   # never mirrored and disagreeing: the alias wins
])
def test_decide_mirror(stage, alias, last, expected):
    assert decide_mirror(stage, alias, *last) == expected


def test_only_the_champion_alias_and_the_production_stage_are_mirrored():
    assert mirrors("models:/fraud-detector@champion") == "fraud-detector"
    assert mirrors("models:/fraud-detector/Production") == "fraud-detector"
    assert mirrors("models:/fraud-detector@challenger") is None
    assert mirrors("models:/fraud-detector/Staging") is None
    assert mirrors("models:/fraud-detector/3") is None
