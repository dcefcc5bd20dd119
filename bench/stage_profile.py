"""Where the scoring job spends its time: the same Kafka backlog through cumulative stages of the
job (in-process, the job's own functions), Spark's progress durations, and the per-user cost of
the stateful step with and without Spark.

Reads:  a backlog produced for the run (live simulator), a model registered for the run.
Writes: its own topics / schema / Redis prefix (removed afterwards); results returned or printed.
Run:    .venv/bin/python -m bench.stage_profile [--messages 5000] [--customers 2500]

Stages (each a fresh streaming query from the earliest offset of one backlog, noop sink):
  parse                 Kafka -> streaming.validation.parse_kafka_stream -> valid rows
  tws_passthrough       + groupBy(user_id).transformWithStateInPandas, no state access
  tws_state_round_trip  + the processor's state calls (exists, get, update of the UserState)
  tws_features          + the real features (features.stream.add_stream_features)
  apply_state_inline    the state calls through applyInPandasWithState instead (prototype)
  apply_features        the real per-user function through applyInPandasWithState (prototype)
  tws_features_score    + streaming.model_server.ModelServer.score (spark_udf)
  full_job              streaming.scoring_job.start_queries: scoring + quarantine, all sinks
Differences between stages divided by the (user, batch) pairs give per-key costs. Spark's
durationMs of the batches (addBatch = the batch's work, queryPlanning, walCommit, commitOffsets)
and the state operator's timings (allUpdatesTimeMs, commitTimeMs) come with each stage.

Without Spark: the per-user function features.stream.features_for_user_events called once per
user (what the processor does) against features.batch.compute_features on the same events in
one vectorised pass (what a per-partition, cross-user processor could do).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
from pyspark.sql.streaming.stateful_processor import StatefulProcessor

from bench.bench_support import (
    create_namespace,
    drop_namespace,
    live_messages,
    machine_load,
    produce,
    register_model,
    run_id,
)

PROGRESS_KEYS = ("addBatch", "queryPlanning", "getBatch", "latestOffset", "walCommit", "commitOffsets",
                 "triggerExecution")


# ---------------------------------------------------------------- stage variants

def _valid_rows(spark, settings, ns, max_offsets: int):
    from fraudops.contract.messages import REJECT_REASON_COLUMN
    from streaming.scoring_job import JobOptions, kafka_stream
    from streaming.validation import parse_kafka_stream

    options = JobOptions(checkpoint_dir=ns.checkpoint_dir, max_offsets_per_trigger=max_offsets)
    validated = parse_kafka_stream(kafka_stream(spark, settings, ns.topic, options))
    return validated.filter(validated[REJECT_REASON_COLUMN].isNull()).drop(REJECT_REASON_COLUMN, "raw_value")


class _PassThrough(StatefulProcessor):
    """Per-user transformWithStateInPandas that touches no state: the framework's per-key cost."""

    def init(self, handle) -> None:
        pass

    def handleInputRows(self, key, rows, timerValues):
        yield from rows

    def close(self) -> None:
        pass


class _StateRoundTrip(StatefulProcessor):
    """Per-user processor doing what the real one does with its state (exists, get, update of a
    UserState record), without computing features: adds the state round trips."""

    def init(self, handle) -> None:
        from features.spark_columns import USER_STATE_SCHEMA
        from features.stream import STATE_TTL_MS

        self.state = handle.getValueState("user_state", USER_STATE_SCHEMA, STATE_TTL_MS)

    def handleInputRows(self, key, rows, timerValues):
        from features.user_state import UserState

        prior = UserState.from_record(self.state.get()) if self.state.exists() else UserState()
        self.state.update(prior.to_record())
        yield from rows

    def close(self) -> None:
        pass


def _per_user_tws(valid, processor, with_features: bool):
    from features.spark_columns import schema_with_features, with_optional_spark_columns
    from features.stream import PROCESSOR_FEATURES

    prepared = with_optional_spark_columns(valid)
    schema = schema_with_features(prepared.schema, PROCESSOR_FEATURES) if with_features else prepared.schema
    return prepared.groupBy("user_id").transformWithStateInPandas(
        statefulProcessor=processor, outputStructType=schema, outputMode="Append", timeMode="ProcessingTime")


def _per_user_apply(valid, compute_features: bool):
    """The same per-user work through applyInPandasWithState (state travels inline with the
    Arrow batches instead of per-call round trips to the JVM).

    The state is one JSON string: in pyspark 4.3 applyInPandasWithState cannot read back a state
    schema with array fields (KeyError 'elementType' in StructType.fromJson), which the UserState
    record needs.
    """
    import json

    from pyspark.sql.streaming.state import GroupStateTimeout
    from pyspark.sql.types import StringType, StructField, StructType

    from features.spark_columns import schema_with_features, with_optional_spark_columns
    from features.stream import PROCESSOR_FEATURES, features_for_user_events
    from features.user_state import UserState

    prepared = with_optional_spark_columns(valid)
    schema = schema_with_features(prepared.schema, PROCESSOR_FEATURES) if compute_features else prepared.schema
    state_schema = StructType([StructField("record_json", StringType())])
    columns = schema.fieldNames()

    def per_user(key, frames, state):
        prior = UserState.from_record(json.loads(state.get[0])) if state.exists else None
        if compute_features:
            out, new_state = features_for_user_events(prior, pd.concat(list(frames), ignore_index=True))
            state.update((json.dumps(new_state.to_record()),))
            yield out[columns]
        else:
            state.update((json.dumps((prior or UserState()).to_record()),))
            yield from frames

    return prepared.groupBy("user_id").applyInPandasWithState(
        per_user, schema, state_schema, "append", GroupStateTimeout.NoTimeout)


def stage_frames(spark, settings, ns, model_server, max_offsets: int) -> dict:
    from features.stream import add_stream_features

    valid = _valid_rows(spark, settings, ns, max_offsets)
    return {
        "parse": lambda: valid,
        "tws_passthrough": lambda: _per_user_tws(valid, _PassThrough(), with_features=False),
        "tws_state_round_trip": lambda: _per_user_tws(valid, _StateRoundTrip(), with_features=False),
        "tws_features": lambda: add_stream_features(valid),
        "apply_state_inline": lambda: _per_user_apply(valid, compute_features=False),
        "apply_features": lambda: _per_user_apply(valid, compute_features=True),
        "tws_features_score": lambda: model_server.score(add_stream_features(valid)),
    }


def run_query(df, name: str, checkpoint: Path, trigger_seconds: float = 0.5):
    query = (df.writeStream.queryName(name).format("noop").option("checkpointLocation", str(checkpoint))
             .trigger(processingTime=f"{trigger_seconds} seconds").start())
    started = time.perf_counter()
    try:
        query.processAllAvailable()
    finally:
        seconds = time.perf_counter() - started
        progress = list(query.recentProgress)
        query.stop()
    return seconds, progress


def summarize_progress(progress) -> dict:
    """Per batch: input rows and durationMs; state operator timings; totals over batches."""
    batches = [p for p in progress if p.numInputRows]
    out = {"batches": len(batches), "input_rows": sum(p.numInputRows for p in batches)}
    for key in PROGRESS_KEYS:
        out[f"{key}_ms"] = sum(int(p.durationMs.get(key, 0)) for p in batches)
    states = [s for p in batches for s in p.stateOperators]
    if states:
        out["state_all_updates_ms"] = sum(s.allUpdatesTimeMs for s in states)
        out["state_commit_ms"] = sum(s.commitTimeMs for s in states)
        out["state_rows_total"] = max(s.numRowsTotal for s in states)
    if batches:
        out["per_batch"] = [{"rows": p.numInputRows, **{k: int(p.durationMs.get(k, 0)) for k in PROGRESS_KEYS}}
                            for p in batches]
    return out


def profile_stages(spark, settings, model_name: str, ns, messages: int, max_offsets: int, scratch: Path) -> dict:
    from streaming.model_server import ModelServer
    from streaming.scoring_job import JobOptions, start_queries

    server = ModelServer(spark, f"models:/{model_name}/Production", settings, refresh_seconds=3600)
    server.start()
    stages = {}
    for name, build in stage_frames(spark, settings, ns, server, max_offsets).items():
        load = machine_load()
        try:
            seconds, progress = run_query(build(), f"{ns.pg_schema}_{name}", scratch / f"cp-{name}")
        except Exception as exc:  # noqa: BLE001 - record it, profile the other stages
            stages[name] = {"error": str(exc).splitlines()[0][:500], "load": load}
            print(f"  {name}: failed: {stages[name]['error']}", flush=True)
            continue
        stages[name] = {"seconds": round(seconds, 2), "rows_per_second": round(messages / seconds, 1),
                        "load": load, **summarize_progress(progress)}
        print(f"  {name}: {seconds:.1f}s ({messages / seconds:,.0f} rows/s), load {load['load_1m']}", flush=True)
    options = JobOptions(checkpoint_dir=scratch / "cp-full", pg_schema=ns.pg_schema, redis_prefix=ns.redis_prefix,
                         topic=ns.topic, alerts_topic=ns.alerts_topic, model_uri=f"models:/{model_name}/Production",
                         max_offsets_per_trigger=max_offsets, trigger_seconds=0.5, with_labels=False,
                         model_refresh_seconds=3600, merchant_refresh_seconds=3600, query_prefix=f"{ns.pg_schema}_")
    load = machine_load()
    job = start_queries(spark, settings, options)
    started = time.perf_counter()
    try:
        job.process_all_available()
    finally:
        seconds = time.perf_counter() - started
        scoring = next(q for q in job.queries if q.name.endswith("scoring"))
        progress = list(scoring.recentProgress)
        job.stop()
    stages["full_job"] = {"seconds": round(seconds, 2), "rows_per_second": round(messages / seconds, 1),
                          "load": load, **summarize_progress(progress)}
    print(f"  full_job: {seconds:.1f}s ({messages / seconds:,.0f} rows/s), load {load['load_1m']}", flush=True)
    return stages


# ---------------------------------------------------------------- the per-user function alone

def per_user_costs(messages: list[tuple[str, bytes]], sample_users: int = 2000) -> dict:
    """features_for_user_events once per user (the processor's call) vs one vectorised pass."""
    from features.batch import compute_features
    from features.stream import features_for_user_events
    from features.user_state import UserState
    from fraudops.contract.messages import validate_messages_frame

    frame = validate_messages_frame([value for _, value in messages]).drop(columns=["reject_reason"])
    frame["transaction_time"] = frame["transaction_time"].dt.tz_convert("UTC")
    users = frame["user_id"].drop_duplicates().head(sample_users)
    events = frame[frame["user_id"].isin(users)]
    groups = [g for _, g in events.groupby("user_id", sort=False)]
    wall, cpu = time.perf_counter(), time.process_time()
    states = []
    for group in groups:
        _, state = features_for_user_events(None, group.reset_index(drop=True))
        states.append(state)
    first_wall, first_cpu = time.perf_counter() - wall, time.process_time() - cpu
    later_batches = [group.assign(transaction_time=group["transaction_time"] + pd.Timedelta(hours=1),
                                  transaction_id=group["transaction_id"] + "_2").reset_index(drop=True)
                     for group in groups]
    records = [state.to_record() for state in states]
    wall, cpu = time.perf_counter(), time.process_time()
    for later, record in zip(later_batches, records, strict=True):  # a second batch: every user has a state
        features_for_user_events(UserState.from_record(record), later)
    later_wall, later_cpu = time.perf_counter() - wall, time.process_time() - cpu
    wall, cpu = time.perf_counter(), time.process_time()
    compute_features(events)
    vector_wall, vector_cpu = time.perf_counter() - wall, time.process_time() - cpu
    # a cross-user processor would run the same core over every user's history plus the batch
    with_history = pd.concat([events, *later_batches], ignore_index=True)
    cpu = time.process_time()
    compute_features(with_history)
    history_cpu = time.process_time() - cpu
    n, users = len(events), len(groups)
    return {"users": users, "events": n, "events_per_user": round(n / users, 2),
            "per_user_call_ms_new_users": round(1000 * first_wall / users, 3),
            "per_user_call_cpu_ms_new_users": round(1000 * first_cpu / users, 3),
            "per_user_call_ms_with_state": round(1000 * later_wall / users, 3),
            "per_user_call_cpu_ms_with_state": round(1000 * later_cpu / users, 3),
            "per_user_events_per_cpu_second": round(n / later_cpu), "vectorised_cpu_seconds": round(vector_cpu, 3),
            "vectorised_events_per_cpu_second": round(n / vector_cpu),
            "speedup_vectorised_vs_per_user_cpu": round(later_cpu / vector_cpu, 1),
            "vectorised_wall_seconds": round(vector_wall, 3),
            "vectorised_with_history_cpu_ms_per_user": round(1000 * history_cpu / users, 3),
            "load": machine_load()}


def user_batches(messages: list[tuple[str, bytes]], max_offsets: int) -> int:
    """Estimated (user, micro-batch) pairs: the processor is called once per user and batch."""
    per_batch = max(1, max_offsets)
    return sum(len({key for key, _ in messages[i:i + per_batch]}) for i in range(0, len(messages), per_batch))


def run(settings, messages: int = 5_000, customers: int = 2_500, max_offsets: int = 2_500, model=None) -> dict:
    """Per-user costs and the stage profile; ``model`` is registered when not given."""
    from fraudops.spark_session import build_spark_session

    model = model or register_model(settings, f"bench-fraud-detector-{run_id()}")
    stream = live_messages(messages, customers)
    results = {"messages": messages, "customers": customers, "max_offsets_per_trigger": max_offsets,
               "user_batches": user_batches(stream, max_offsets), "per_user_function": per_user_costs(stream)}
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as scratch:
        spark = build_spark_session("bench-stages", master="local[2]", shuffle_partitions=4)
        spark.sparkContext.setLogLevel("ERROR")
        ns = create_namespace(settings, run_id(), 2, Path(scratch))
        try:
            produce(settings, ns.topic, stream)
            results["stages"] = profile_stages(spark, settings, model.name, ns, messages, max_offsets, Path(scratch))
            for stage in results["stages"].values():
                stage["add_batch_ms_per_user_batch"] = round(stage.get("addBatch_ms", 0) / results["user_batches"], 3)
        finally:
            drop_namespace(settings, ns)
            spark.stop()
    return results


def main(argv: list[str] | None = None) -> dict:
    from fraudops.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--customers", type=int, default=2_500, help="few enough that users recur across batches")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=2_500)
    args = parser.parse_args(argv)
    results = run(load_settings(), args.messages, args.customers, args.max_offsets_per_trigger)
    print(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
