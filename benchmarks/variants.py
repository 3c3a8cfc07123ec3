"""Row labels of the leaderboard: one row per algorithm, or per algorithm setting when a grid has several."""

from __future__ import annotations

from benchmarks.records import RunRecord, config_hash
from benchmarks.runner import env_name


def row_label(record: RunRecord, labels_with_variants: set[str]) -> str:
    """The algorithm label, plus a short hash of its env-independent config when it has several."""
    if record.algo not in labels_with_variants:
        return record.algo
    return f"{record.algo}@{variant_hash(record)[:6]}"


def variant_hash(record: RunRecord) -> str:
    """Hash of the env-independent config: env kwargs dropped and the env's short name in algorithm
    kwargs put back to the grid's ``{env}`` placeholder (``runs/sft-sort`` -> ``runs/sft-{env}``),
    so one setting run on several envs stays one row."""
    config = {k: v for k, v in record.config.items() if k != "env_kwargs"}
    if isinstance(config.get("algo_kwargs"), dict):
        name = env_name(record.env_id)
        config["algo_kwargs"] = {k: v.replace(name, "{env}") if isinstance(v, str) else v
                                 for k, v in config["algo_kwargs"].items()}
    return config_hash(config)
