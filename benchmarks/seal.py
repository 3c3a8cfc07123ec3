"""``llm-gym bench seal`` (or ``python -m benchmarks.seal``): a finished board becomes a committed, read-only one.

Why: a board's records carry every run's learning curve as JSON floats, so a 16384-sample board's
``records.jsonl`` (and its tuning records) run to about 90 MB, over what a repository should carry in
one file and several times what a commit replacing a board can afford. Sealing gzip-compresses each
records file in place (about fivefold), lossless by construction: the compressed file is written under
a temporary name, decompressed and compared byte for byte (sha256) with the original before it
replaces it, and it is written without a name or timestamp, so sealing the same records twice gives
the same bytes. A sealed board is read like any other (``benchmarks.records.records_file``): the page
is re-rendered from it and ``llm-gym bench rescore`` adds columns beside it, but the suite and the runner
refuse to add runs to it. Sealing refuses a board whose ``progress.json`` lists a stage that did not
finish, and records the board's directory as ``leaderboard_dir`` in its ``suite_config.yaml``, so
``python -m benchmarks.suite --config <dir>/suite_config.yaml --stages leaderboard`` re-renders it where it is.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from benchmarks.leaderboard import PROGRESS_FILE, SUITE_CONFIG_FILE, TUNING_DIR
from benchmarks.records import RECORDS_FILE, SEALED_RECORDS_FILE, records_file
from llm_gym.commands import CommandParser, run_cli


@dataclass
class SealConfig:
    """Which finished board to seal."""

    board_dir: str = field(metadata={"help": "the board's directory (records.jsonl, progress.json, tuning/, rollouts/)",
                                     "path": "dir"})
    allow_unfinished: bool = field(default=False, metadata={"help": "seal although progress.json lists a stage "
                                                                    "that did not finish"})


def unfinished_stages(board_dir: Path) -> list[str]:
    """The stages in the board's ``progress.json`` whose status is not ``done`` (none without the file)."""
    path = board_dir / PROGRESS_FILE
    if not path.is_file():
        return []
    stages = json.loads(path.read_text()).get("stages", {})
    return [f"{name} ({entry.get('status')})" for name, entry in stages.items() if entry.get("status") != "done"]


def seal_records(plain: Path) -> Path:
    """Replace ``plain`` (a records JSONL) by ``plain.gz`` holding the same bytes; returns the sealed path."""
    sealed = plain.with_name(plain.name + ".gz")
    tmp = sealed.with_name(sealed.name + ".tmp")
    with plain.open("rb") as src, tmp.open("wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as out:
        shutil.copyfileobj(src, out, 1 << 20)
    with plain.open("rb") as f:
        want = hashlib.file_digest(f, "sha256").hexdigest()
    with gzip.open(tmp, "rb") as f:
        got = hashlib.file_digest(f, "sha256").hexdigest()
    if got != want:
        tmp.unlink()
        raise OSError(f"{tmp} does not decompress to {plain} (sha256 {got[:12]} != {want[:12]}); {plain} is kept")
    os.replace(tmp, sealed)
    plain.unlink()
    return sealed


def seal_board(config: SealConfig) -> list[Path]:
    """Seal the board in ``config.board_dir`` (its records and its tuning records); returns the sealed files."""
    board = Path(config.board_dir)
    plain = records_file(board)
    if plain.name == SEALED_RECORDS_FILE:
        raise ValueError(f"{board} is already sealed ({plain})")
    if not plain.is_file():
        raise ValueError(f"{board} holds no {RECORDS_FILE}: nothing to seal")
    unfinished = unfinished_stages(board)
    if unfinished and not config.allow_unfinished:
        raise ValueError(f"{board / PROGRESS_FILE} lists stages that did not finish: {', '.join(unfinished)}. Finish "
                         f"the board (rerun its suite command), or pass --allow_unfinished true to seal it as it is")
    sealed = [seal_records(plain)]
    tuning = board / TUNING_DIR / RECORDS_FILE
    if tuning.is_file():
        sealed.append(seal_records(tuning))
    suite_config = board / SUITE_CONFIG_FILE
    if suite_config.is_file():
        setup = yaml.safe_load(suite_config.read_text()) or {}
        setup["leaderboard_dir"] = str(board)
        tmp = suite_config.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(setup, sort_keys=False))
        os.replace(tmp, suite_config)
    return sealed


def run_seal(config: SealConfig) -> int:
    for path in seal_board(config):
        print(f"sealed: {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.seal --board_dir DIR``."""
    parser = CommandParser(SealConfig, prog="python -m benchmarks.seal", description=__doc__.split("\n\n")[0])
    parser.set_defaults(func=lambda args: run_seal(*parser.configs_from(args)))
    return run_cli(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
