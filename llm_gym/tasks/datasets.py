"""Tasks from fixed datasets: local JSONL files and Hugging Face datasets saved on disk.

Rows come in the column layouts TRL users already have (the format is detected from the columns
or given explicitly):

- ``prompt_completion``: ``prompt``, ``completion`` -> reference = completion;
- ``alpaca``: ``instruction``, optional ``input``, ``output`` -> prompt from ``ALPACA_TEMPLATE``;
- ``messages``: a chat ``messages`` list -> prompt = the tokenizer's chat template applied to all
  but the last message (with the generation prompt), reference = the last (assistant) message;
- ``preference``: ``prompt``, ``chosen``, ``rejected`` -> reference = chosen; both answers kept in
  the sample metadata.

Other columns of a row are kept in its metadata (custom rewards can read them). The gold verifier
is an exact match with the reference (whitespace-normalised).

In an env: ``gymnasium.make("llm_gym/Dataset-v0", data_files="train.jsonl", tokenizer=tok)`` (or
``task=DatasetTask.from_jsonl(...)`` instead of ``data_files``; ``make_vec`` works the same). The
window (``max_prompt_tokens``/``max_new_tokens``) is sized to the longest prompt and reference in
the data unless given (``DatasetTask.window``); without a tokenizer a character tokenizer is
trained on the data's text (``DatasetTask.default_tokenizer``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np
from transformers import PreTrainedTokenizerBase

from llm_gym.scoring import exact_match
from llm_gym.tasks.base import Sample, Split, Task, char_tokenizer, split_of
from llm_gym.tasks.files import DatasetError, chat_prompt, jsonl_rows, require_field, require_text
from llm_gym.tokenization import encode_completions, encode_prompts

if TYPE_CHECKING:
    import datasets

Format = Literal["prompt_completion", "alpaca", "messages", "preference"]
PathLike = str | Path
# Where rows come from: files/directories, or a ``datasets`` object already in memory.
DataFiles = Union[PathLike, Sequence[PathLike], "datasets.Dataset", "datasets.DatasetDict"]

# Required columns per format, in detection order (preference before prompt_completion: both have "prompt").
FORMAT_FIELDS: dict[str, tuple[str, ...]] = {
    "preference": ("prompt", "chosen", "rejected"),
    "prompt_completion": ("prompt", "completion"),
    "alpaca": ("instruction", "output"),
    "messages": ("messages",),
}
ALPACA_TEMPLATE = "### Instruction:\n{instruction}\n\n### Response:\n"
ALPACA_INPUT_TEMPLATE = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"


def detect_format(columns: Iterable[str], where: str) -> Format:
    """The first format whose required columns are all present."""
    columns = set(columns)
    for name, fields in FORMAT_FIELDS.items():
        if columns.issuperset(fields):
            return name  # type: ignore[return-value]
    closest = max(FORMAT_FIELDS, key=lambda name: len(columns & set(FORMAT_FIELDS[name])) / len(FORMAT_FIELDS[name]))
    missing = [f for f in FORMAT_FIELDS[closest] if f not in columns]
    known = "; ".join(f"{name}: {', '.join(fields)}" for name, fields in FORMAT_FIELDS.items())
    raise DatasetError(
        f"{where}: cannot detect the dataset format from columns {sorted(columns)} (closest: {closest!r}, "
        f"missing field {', '.join(map(repr, missing))}); expected the columns of one of {known}"
    )


def row_to_sample(
    row: Mapping[str, Any], fmt: Format, where: str, tokenizer: PreTrainedTokenizerBase | None = None
) -> Sample:
    """One dataset row as a ``Sample``; ``where`` (e.g. ``"data.jsonl line 3"``) prefixes every error."""
    if not isinstance(row, Mapping):
        raise DatasetError(f"{where}: row must be a JSON object, got {type(row).__name__}")
    if fmt not in FORMAT_FIELDS:
        raise DatasetError(f"unknown dataset format {fmt!r}; known: {', '.join(FORMAT_FIELDS)}")
    own = FORMAT_FIELDS[fmt] + (("input",) if fmt == "alpaca" else ())
    extra = {k: v for k, v in row.items() if k not in own}
    if fmt == "prompt_completion":
        return Sample(require_text(row, "prompt", where, fmt), require_text(row, "completion", where, fmt), extra)
    if fmt == "preference":
        chosen, rejected = require_text(row, "chosen", where, fmt), require_text(row, "rejected", where, fmt)
        return Sample(require_text(row, "prompt", where, fmt), chosen, {**extra, "chosen": chosen, "rejected": rejected})
    if fmt == "alpaca":
        instruction, output = require_text(row, "instruction", where, fmt), require_text(row, "output", where, fmt)
        extra_input = row.get("input") or ""
        if not isinstance(extra_input, str):
            raise DatasetError(f"{where}: field 'input' must be a string, got {type(extra_input).__name__}")
        template = ALPACA_INPUT_TEMPLATE if extra_input else ALPACA_TEMPLATE
        return Sample(template.format(instruction=instruction, input=extra_input), output, extra)
    messages = require_field(row, "messages", where, fmt)
    prompt, reference = chat_prompt(messages, where, tokenizer)
    return Sample(prompt, reference, extra, split_key=json.dumps(messages[:-1], sort_keys=True, ensure_ascii=False),
                  messages=tuple(messages[:-1]))


def rows_to_samples(
    rows: Iterable[tuple[str, Mapping[str, Any]]],
    fmt: Format | None,
    source: str,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> list[Sample]:
    """Convert ``(where, row)`` pairs; the format is detected from the first row when not given."""
    samples: list[Sample] = []
    for where, row in rows:
        if fmt is None:
            if not isinstance(row, Mapping):
                raise DatasetError(f"{where}: row must be a JSON object, got {type(row).__name__}")
            fmt = detect_format(row.keys(), where)
        samples.append(row_to_sample(row, fmt, where, tokenizer))
    if not samples:
        raise DatasetError(f"{source}: the dataset is empty")
    return samples


def load_jsonl(
    path: PathLike, fmt: Format | None = None, tokenizer: PreTrainedTokenizerBase | None = None
) -> list[Sample]:
    """Samples from a JSON-lines file (one object per line; blank lines are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file not found: {path}")
    return rows_to_samples(jsonl_rows(path), fmt, str(path), tokenizer)


def _load_from_disk(path: Path):
    try:
        import datasets
    except ImportError as error:
        raise ImportError(
            f"loading {path} needs the 'datasets' package: pip install 'llm-gym[datasets]'"
        ) from error
    return datasets.load_from_disk(str(path))


def _is_dataset_dict(data: Any) -> bool:
    return isinstance(getattr(data, "column_names", None), dict)


def _hf_samples(data: Any, source: str, fmt: Format | None, tokenizer: PreTrainedTokenizerBase | None) -> list[Sample]:
    return rows_to_samples(((f"{source} row {i}", row) for i, row in enumerate(data, start=1)), fmt, source, tokenizer)


def load_hf_disk(
    path: PathLike,
    fmt: Format | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    split: str | None = None,
) -> list[Sample]:
    """Samples from a ``datasets`` ``save_to_disk`` directory (a ``DatasetDict`` needs ``split``); rows count from 1."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"dataset directory not found: {path}")
    data = _load_from_disk(path)
    if not _is_dataset_dict(data):
        return _hf_samples(data, str(path), fmt, tokenizer)
    if split is None or split not in data:
        raise DatasetError(f"{path} holds splits {sorted(data)}; choose one with split=")
    return _hf_samples(data[split], f"{path} (split {split})", fmt, tokenizer)


def load_samples(
    path: PathLike,
    fmt: Format | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    split: str | None = None,
) -> list[Sample]:
    """A JSONL file, or a Hugging Face dataset directory saved with ``save_to_disk``."""
    return load_hf_disk(path, fmt, tokenizer, split) if Path(path).is_dir() else load_jsonl(path, fmt, tokenizer)


def _as_paths(files: PathLike | Sequence[PathLike]) -> list[PathLike]:
    return [files] if isinstance(files, (str, Path)) else list(files)


def _in_memory(data: Any) -> bool:
    """A ``datasets.Dataset`` or ``DatasetDict`` object (both have ``column_names``), not a path."""
    return hasattr(data, "column_names")


def _split_samples(
    data: Any, source: str, fmt: Format | None, tokenizer: PreTrainedTokenizerBase | None
) -> tuple[list[Sample], list[Sample] | None]:
    """``(train, test)`` of a ``DatasetDict``: its ``train`` split and its ``test`` (or ``validation``) split if any."""
    if "train" not in data:
        raise DatasetError(f"{source} holds splits {sorted(data)} but no 'train' split")
    train = _hf_samples(data["train"], f"{source} (split train)", fmt, tokenizer)
    test_split = next((s for s in ("test", "validation") if s in data), None)
    test = None if test_split is None else _hf_samples(data[test_split], f"{source} (split {test_split})", fmt, tokenizer)
    return train, test


def _samples_of(
    files: Any, fmt: Format | None, tokenizer: PreTrainedTokenizerBase | None, what: str
) -> list[Sample]:
    """Samples of an in-memory ``Dataset`` or of JSONL files / ``save_to_disk`` directories."""
    if _is_dataset_dict(files):
        raise DatasetError(f"{what} is a DatasetDict: give one split (e.g. dataset['test']) or pass it as data_files")
    if _in_memory(files):
        return _hf_samples(files, f"in-memory dataset ({what})", fmt, tokenizer)
    return [s for path in _as_paths(files) for s in load_samples(path, fmt, tokenizer)]


class DatasetTask(Task):
    """A task that serves the prompts of a fixed dataset, with its references and an exact-match verifier.

    Why: SFT data and preference pairs users already have become RL environments without writing
    a generator. Train/test come from separate files when given, else from the same stable hash
    split procedural tasks use (``split_of``), so held-out prompts never reach training.
    """

    name = "dataset"
    description = "prompts from a dataset; gold: exact match with the reference"
    default_reward = "verifier"

    def __init__(
        self,
        train: Sequence[Sample],
        test: Sequence[Sample] | None = None,
        test_fraction: float = 0.1,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_prompt_tokens: int | None = None,
        max_new_tokens: int | None = None,
    ):
        if not train:
            raise DatasetError("a DatasetTask needs at least one training sample")
        self.test_fraction = test_fraction
        if test is None:
            self.splits: dict[str, list[Sample]] = {"train": [], "test": []}
            for sample in train:  # by content: a chat row's messages, not their rendering
                self.splits[split_of(sample.split_key or sample.prompt, test_fraction)].append(sample)
        else:
            self.splits = {"train": list(train), "test": list(test)}
        self.samples = self.splits["train"] + self.splits["test"]
        self.given_window = (max_prompt_tokens, max_new_tokens)
        self.max_prompt_tokens = max_prompt_tokens or self.max_prompt_tokens
        self.max_new_tokens = max_new_tokens or self.max_new_tokens
        if tokenizer is not None:
            self.max_prompt_tokens, self.max_new_tokens = self.window(tokenizer)

    @classmethod
    def from_files(
        cls,
        data_files: DataFiles | None = None,
        test_files: DataFiles | None = None,
        format: Format | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        **kwargs: Any,
    ) -> DatasetTask:
        """JSONL files, ``save_to_disk`` directories or in-memory ``datasets.Dataset``/``DatasetDict`` objects
        (a ``DatasetDict`` gives its train/test splits).

        This is the ``"dataset"`` entry of the task registry, so ``gymnasium.make("llm_gym/Dataset-v0",
        data_files=...)`` ends here.
        """
        if data_files is None:
            raise DatasetError(
                "task 'dataset' (llm_gym/Dataset-v0) needs data_files= (JSONL files or a save_to_disk "
                "directory), or pass task=DatasetTask(...) instead"
            )
        if test_files is None and _is_dataset_dict(data_files):  # in memory, with its own splits
            return cls(*_split_samples(data_files, "in-memory DatasetDict", format, tokenizer), tokenizer=tokenizer,
                       **kwargs)
        if not _in_memory(data_files):
            paths = _as_paths(data_files)
            if not paths:
                raise DatasetError("data_files is empty; give a JSONL file or a save_to_disk directory")
            if test_files is None and len(paths) == 1 and Path(paths[0]).is_dir():
                data = _load_from_disk(Path(paths[0]))
                if _is_dataset_dict(data):  # its own splits: "train", and "test" (or "validation") if present
                    return cls(*_split_samples(data, str(paths[0]), format, tokenizer), tokenizer=tokenizer, **kwargs)
        train = _samples_of(data_files, format, tokenizer, "data_files")
        test = None if test_files is None else _samples_of(test_files, format, tokenizer, "test_files")
        return cls(train, test, tokenizer=tokenizer, **kwargs)

    @classmethod
    def from_jsonl(
        cls,
        train_file: PathLike,
        test_file: PathLike | None = None,
        format: Format | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        **kwargs: Any,
    ) -> DatasetTask:
        train = load_jsonl(train_file, format, tokenizer)
        test = load_jsonl(test_file, format, tokenizer) if test_file is not None else None
        return cls(train, test, tokenizer=tokenizer, **kwargs)

    @classmethod
    def from_disk(
        cls, path: PathLike, format: Format | None = None, tokenizer: PreTrainedTokenizerBase | None = None, **kwargs
    ) -> DatasetTask:
        return cls.from_files(path, None, format, tokenizer, **kwargs)

    def window(self, tokenizer: PreTrainedTokenizerBase, max_new_tokens: int | None = None) -> tuple[int, int]:
        """The longest prompt and reference (+ EOS) in tokens of ``tokenizer``, unless given at construction
        or (the completion window) here."""
        given_prompt, given_new = self.given_window
        given_new = max_new_tokens or given_new
        if given_prompt and given_new:
            return given_prompt, given_new
        prompts = encode_prompts(tokenizer, [s.prompt for s in self.samples])
        references = encode_completions(tokenizer, [s.reference for s in self.samples])
        return given_prompt or max(map(len, prompts)), given_new or max(map(len, references)) + 1

    def default_tokenizer(self) -> PreTrainedTokenizerBase:
        """A character tokenizer over the data's prompts and references."""
        return char_tokenizer(tuple(s.prompt + s.reference for s in self.samples))

    def generate(self, rng: np.random.Generator) -> Sample:
        return self.samples[int(rng.integers(len(self.samples)))]

    def sample(self, rng: np.random.Generator, split: Split = "train") -> Sample:
        rows = self.splits.get(split)
        if rows is None:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if not rows:
            raise DatasetError(
                f"the dataset has no {split!r} rows ({len(self.samples)} rows, hash split with "
                f"test_fraction={self.test_fraction}); give a separate test file or more rows"
            )
        return rows[int(rng.integers(len(rows)))]

    def verify(
        self, prompts: Sequence[str], completions: Sequence[str], metadata: Sequence[Mapping[str, Any]]
    ) -> np.ndarray:
        return exact_match(completions, [m["reference"] for m in metadata])
