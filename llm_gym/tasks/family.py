"""``FamilyTask``: a procedural task whose samples can come from the user's JSONL files instead."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from llm_gym.tasks.base import Sample, Split, Task
from llm_gym.tasks.datasets import DatasetTask
from llm_gym.tasks.files import DatasetError, jsonl_rows


class FamilyTask(Task):
    """A procedural task whose samples can come from JSONL files instead (``data_files=``).

    Why one base: every family (dialogue, summarisation, translation, code) keeps its own prompt
    format, verifier and rewards whether samples are generated or loaded, and file handling
    (parsing, ``file line N`` errors, the train/test split) is the dataset loader's, so there is
    one JSONL parser in the project.
    """

    data_format: ClassVar[str] = ""

    def __init__(
        self,
        data_files: str | Path | Sequence[str | Path] | None = None,
        test_files: str | Path | Sequence[str | Path] | None = None,
        test_fraction: float = 0.1,
    ):
        self.data: DatasetTask | None = None
        if data_files is None and test_files is not None:
            raise ValueError(f"{self.name}: test_files given without data_files")
        if data_files is not None:
            train = self.load(data_files)
            test = self.load(test_files) if test_files is not None else None
            self.data = DatasetTask(train, test, test_fraction=test_fraction)

    def load(self, files: str | Path | Sequence[str | Path]) -> list[Sample]:
        """Samples from JSONL files, one row each, through ``row_to_sample``."""
        paths = [Path(files)] if isinstance(files, (str, Path)) else [Path(f) for f in files]
        samples = []
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"{self.name} data file not found: {path}")
            for where, row in jsonl_rows(path):
                if not isinstance(row, Mapping):
                    raise DatasetError(f"{where}: row must be a JSON object, got {type(row).__name__}")
                samples.append(self.row_to_sample(row, where))
        if not samples:
            raise DatasetError(f"{', '.join(map(str, paths))}: the dataset is empty")
        return samples

    @abstractmethod
    def row_to_sample(self, row: Mapping[str, Any], where: str) -> Sample:
        """One JSONL row as a sample; errors start with ``where`` (``file line N``)."""

    def sample(self, rng: np.random.Generator, split: Split = "train") -> Sample:
        return self.data.sample(rng, split) if self.data is not None else super().sample(rng, split)
