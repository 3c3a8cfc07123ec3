"""How records become leaderboard rows: tracks, row labels and the runs each row pools.

Why one module: the tables (``benchmarks.leaderboard``) and the figures (``benchmarks.plots``)
must group runs identically, and both import this instead of each other. A row is one algorithm
*setting*: records with the same label whose configs differ only in the env, the preparation
(``{prep}``-filled paths) or the seed are one row, so the runs of every seed and every
independent SFT + reward-model preparation are pooled into its intervals. A label run with two
settings gets two rows, suffixed with a short hash of the setting. Records carry their track
(``verifier``, ``learned-rm``, ``rm-sweep``...) in ``config["tags"]``; tracks are tabulated apart.
"""

from __future__ import annotations

from collections import defaultdict

from agents.metrics import GOLD_REWARD, REWARD
from benchmarks.records import RunRecord, config_hash

Grouped = dict[str, dict[str, list[RunRecord]]]  # row label -> env id -> records


def env_name(env_id: str) -> str:
    """``llm_gym/Arithmetic-v0`` -> ``arithmetic``: the ``{env}`` placeholder's value."""
    return env_id.rsplit("/", 1)[-1].rsplit("-v", 1)[0].lower()


def tags(record: RunRecord) -> dict:
    return record.config.get("tags") or {}


def track(record: RunRecord) -> str:
    """The record's track tag; ``""`` for records from grids without tracks."""
    return str(tags(record).get("track", ""))


def proxy_is_gold(records: list[RunRecord]) -> bool:
    """Whether every run's final proxy reward is its gold reward (the verifier track): then tables show
    one set of reward columns and figures one line per learner."""
    return bool(records) and all(r.final.get(REWARD) == r.final.get(GOLD_REWARD) for r in records)


def split_tracks(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    out: dict[str, list[RunRecord]] = defaultdict(list)
    for r in records:
        out[track(r)].append(r)
    return dict(out)


def variant_hash(record: RunRecord) -> str:
    """The algorithm setting a record ran: the runner's ``variant`` (its config before ``{env}`` and
    ``{tag}`` filling); for older records, the config without env kwargs and tags, and with the env's
    short name in algorithm kwargs put back to ``{env}``."""
    if "variant" in record.config:
        return str(record.config["variant"])
    config = {k: v for k, v in record.config.items() if k not in ("env_kwargs", "tags")}
    if isinstance(config.get("algo_kwargs"), dict):
        name = env_name(record.env_id)
        config["algo_kwargs"] = {k: v.replace(name, "{env}") if isinstance(v, str) else v
                                 for k, v in config["algo_kwargs"].items()}
    return config_hash(config)


def row_label(record: RunRecord, labels_with_variants: set[str]) -> str:
    """The algorithm label, plus a short hash of its setting when the label has several."""
    if record.algo not in labels_with_variants:
        return record.algo
    return f"{record.algo}@{variant_hash(record)[:6]}"


def group_records(records: list[RunRecord], with_rm: bool = True) -> Grouped:
    """Row label -> env id -> the records that row pools (seeds and preparations). Runs against
    different reward models of a sweep (the ``rm`` tag) are different rows: ``best-of-n_4 [feedback128]``."""
    variants: dict[str, set[str]] = defaultdict(set)
    for r in records:
        variants[r.algo].add(variant_hash(r))
    multi = {a for a, hashes in variants.items() if len(hashes) > 1}
    out: Grouped = defaultdict(lambda: defaultdict(list))
    for r in records:
        rm = tags(r).get("rm") if with_rm else None
        out[row_label(r, multi) + (f" [{rm}]" if rm is not None else "")][r.env_id].append(r)
    return out
