"""The seed's registry verbs, over fraudops.modeling.registry (the MLflow Model Registry).

Reads/writes: the registry of MLFLOW_TRACKING_URI, model MODEL_NAME (fraud-detector).

    python -m pipelines.registry --action list                 # every version, stage, aliases, threshold
    python -m pipelines.registry --action active               # the Production version
    python -m pipelines.registry --action register --model-uri runs:/<run_id>/model \
        --threshold 0.3 [--feature-set-version fs-v1]          # a new version (tags required)
    python -m pipelines.registry --action activate --version 3 # Production + alias champion
        (no champion/challenger gate here: `mlflow run . -e promote` applies the gate)
"""

from __future__ import annotations

import argparse
import sys

from features.definition import FEATURE_SET_VERSION
from fraudops.modeling import registry
from fraudops.settings import load_settings

ACTIONS = ("register", "activate", "list", "active")


def describe(model_version) -> str:
    aliases = ",".join(getattr(model_version, "aliases", []) or []) or "-"
    threshold = model_version.tags.get(registry.TAG_THRESHOLD, "?")
    return (f"{model_version.name} v{model_version.version:<4} stage={model_version.current_stage:<10} "
            f"aliases={aliases:<10} threshold={threshold} run={model_version.run_id}")


def run_action(args, client) -> int:
    name = args.model_name
    if args.action == "list":
        for mv in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version)):
            print(describe(mv))
        return 0
    if args.action == "active":
        mv = registry.production_version(name, client)
        if mv is None:
            print(f"{name} has no Production version", file=sys.stderr)
            return 1
        print(describe(mv))
        return 0
    if args.action == "register":
        tags = {registry.TAG_THRESHOLD: args.threshold, registry.TAG_FEATURE_SET_VERSION: args.feature_set_version}
        print(describe(registry.register_model_version(args.model_uri, name, tags, client=client)))
        return 0
    promoted, previous = registry.promote_to_production(name, args.version, client)
    print(describe(client.get_model_version(name, promoted.version)))
    print(f"previous Production: {previous or 'none'} (archived)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m pipelines.registry`` (the seed's registry verbs)."""
    from fraudops.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m pipelines.registry", formatter_class=HelpFormatter,
                                     description="registry verbs of the seed (register, activate, list, active)")
    parser.add_argument("--action", required=True, choices=ACTIONS, help="what to do")
    parser.add_argument("--model-name", default=None, help="registered model (default: MODEL_NAME)")
    parser.add_argument("--model-uri", help="register: the logged model (runs:/<run_id>/model; default: none)")
    parser.add_argument("--threshold", type=float, help="register: the version's decision threshold (default: none)")
    parser.add_argument("--feature-set-version", default=FEATURE_SET_VERSION,
                        help="register: the feature set the version was trained on")
    parser.add_argument("--version", help="activate: the version number to make Production (default: none)")
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = load_settings()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.model_name = args.model_name or settings.model_name
    if args.action == "register" and (not args.model_uri or args.threshold is None):
        parser.error("argument --model-uri and --threshold: required for --action register")
    if args.action == "activate" and not (args.version or "").isdigit():
        parser.error("argument --version: a version number is required for --action activate")
    registry.configure_tracking(settings)
    try:
        return run_action(args, registry.registry_client(settings))
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
