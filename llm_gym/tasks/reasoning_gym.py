"""reasoning-gym generators as llm_gym tasks: env ids ``llm_gym/RG-<generator>-v0`` (extra ``[reasoning]``).

Each generator's questions are the prompts, its answers the references, and its own scorer
(``dataset.score_answer(completion, entry)``) the gold verifier, so the 100+ procedural reasoning
tasks of reasoning-gym become token- and sequence-level envs without writing a task.

Why the static ``GENERATORS`` table: ``import reasoning_gym`` takes about 1 s, too much to pay on
every ``import llm_gym``; the table (generator names and measured windows, pinned to
reasoning-gym ``RG_VERSION``) lets us register the ids with string entry points, so reasoning-gym
is imported only when one of its envs is made. ``python -m llm_gym.tasks.reasoning_gym``
re-measures the table.

Why a byte-level default tokenizer (instead of the character tokenizer procedural tasks get):
generator texts use open-ended alphabets (emoji, box drawing, accented words), so a character
vocabulary trained on samples would miss characters, and sampling thousands of questions from the
slow generators (sudoku, futoshiki...) would take minutes; 256 bytes cover any text at once.
Windows are therefore measured in UTF-8 bytes, which bounds the token count of usual BPE
tokenizers too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerFast

from llm_gym.models import SPECIAL_TOKENS, train_tokenizer
from llm_gym.tasks.base import Sample, Task

RG_VERSION = "0.1.25"
ENV_PREFIX = "llm_gym/RG-"
# Generators without an env id, and why.
EXCLUDED = {
    "composite": "needs a config naming the generators it mixes",
    "number_sequence": "entry 163 of seed 0 never returns (reasoning-gym 0.1.25)",
}
UNBOUNDED_ANSWER_TOKENS = 256  # for generators without a single oracle answer (answer None)
MAX_NEW_TOKENS = 4096

# generator -> (max_prompt_tokens, max_new_tokens) for the default config, in bytes: the largest
# question + BOS and answer + EOS of seed 0's entries (all of them, or those made in 40 s for the
# slow generators), times 1.25, rounded up to 16 (see measure_window); answers capped at
# MAX_NEW_TOKENS. The comment gives the generation cost, to pick fast generators for quick runs.
GENERATORS: dict[str, tuple[int, int]] = {
    "ab": (736, 48),  # 0.02 ms/entry, 500 entries
    "acre": (1648, 32),  # 0.01 ms/entry, 500 entries
    "advanced_geometry": (432, 32),  # 5.62 ms/entry, 50 entries
    "aiw": (736, 16),  # 0.03 ms/entry, 10 entries
    "arc_1d": (1104, 80),  # 0.11 ms/entry, 500 entries
    "arc_agi": (20720, 2256),  # 0.54 ms/entry, 500 entries
    "base_conversion": (256, 16),  # 0.01 ms/entry, 500 entries
    "basic_arithmetic": (96, 32),  # 0.04 ms/entry, 500 entries
    "bf": (288, 16),  # 0.76 ms/entry, 500 entries
    "binary_alternation": (608, 16),  # 0.02 ms/entry, 500 entries
    "binary_matrix": (640, 256),  # 0.08 ms/entry, 500 entries
    "bitwise_arithmetic": (352, 32),  # 0.04 ms/entry, 500 entries
    "boxnet": (4896, 256),  # 0.07 ms/entry, 500 entries, no oracle answer
    "caesar_cipher": (304, 192),  # 0.02 ms/entry, 500 entries
    "calendar_arithmetic": (256, 16),  # 0.04 ms/entry, 500 entries
    "chain_sum": (128, 16),  # 0.01 ms/entry, 500 entries
    "circuit_logic": (3520, 16),  # 0.19 ms/entry, 100 entries
    "codeio": (23264, 4096),  # 2.72 ms/entry, 500 entries, capped (measured: 381168)
    "coin_flip": (96, 32),  # 0.02 ms/entry, 500 entries
    "color_cube_rotation": (576, 16),  # 0.04 ms/entry, 500 entries
    "complex_arithmetic": (80, 32),  # 0.02 ms/entry, 500 entries
    "count_bits": (112, 16),  # 0.01 ms/entry, 500 entries
    "count_primes": (96, 16),  # 0.15 ms/entry, 500 entries
    "countdown": (480, 48),  # 31.52 ms/entry, 500 entries
    "course_schedule": (608, 16),  # 0.08 ms/entry, 500 entries
    "cryptarithm": (384, 64),  # 0.10 ms/entry, 500 entries
    "decimal_arithmetic": (224, 32),  # 0.08 ms/entry, 500 entries
    "decimal_chain_sum": (160, 16),  # 0.05 ms/entry, 500 entries
    "dice": (336, 16),  # 0.23 ms/entry, 500 entries
    "emoji_mystery": (2432, 336),  # 0.07 ms/entry, 1000 entries
    "family_relationships": (384, 32),  # 0.14 ms/entry, 500 entries
    "figlet_font": (3440, 16),  # 15.99 ms/entry, 500 entries
    "fraction_simplification": (160, 32),  # 0.03 ms/entry, 500 entries
    "futoshiki": (1200, 768),  # 472.82 ms/entry, 117 entries
    "game_of_life": (656, 288),  # 9.46 ms/entry, 500 entries
    "game_of_life_halting": (736, 16),  # 5.89 ms/entry, 500 entries
    "gcd": (144, 16),  # 0.02 ms/entry, 500 entries
    "graph_color": (528, 256),  # 0.04 ms/entry, 500 entries, no oracle answer
    "group_anagrams": (864, 400),  # 0.10 ms/entry, 500 entries
    "gsm_symbolic": (816, 16),  # 0.04 ms/entry, 500 entries
    "intermediate_integration": (784, 96),  # 37.56 ms/entry, 500 entries
    "isomorphic_strings": (512, 16),  # 0.02 ms/entry, 500 entries
    "jugs": (848, 336),  # 7.54 ms/entry, 500 entries
    "kakurasu": (864, 64),  # 0.70 ms/entry, 500 entries
    "knight_swap": (1056, 288),  # 742.66 ms/entry, 5 entries
    "knights_knaves": (608, 80),  # 0.45 ms/entry, 500 entries
    "largest_island": (736, 16),  # 0.12 ms/entry, 500 entries
    "lcm": (80, 16),  # 0.03 ms/entry, 500 entries
    "leg_counting": (352, 16),  # 0.03 ms/entry, 500 entries
    "letter_counting": (224, 16),  # 0.03 ms/entry, 500 entries
    "letter_jumble": (688, 192),  # 0.06 ms/entry, 500 entries
    "list_functions": (880, 64),  # 0.06 ms/entry, 500 entries
    "mahjong_puzzle": (4000, 16),  # 1.81 ms/entry, 500 entries
    "manipulate_matrix": (944, 240),  # 0.20 ms/entry, 500 entries
    "maze": (416, 16),  # 0.09 ms/entry, 50 entries
    "mini_sudoku": (480, 48),  # 0.46 ms/entry, 500 entries
    "modulo_grid": (1728, 1536),  # 0.48 ms/entry, 500 entries
    "n_queens": (832, 160),  # 0.36 ms/entry, 500 entries
    "needle_haystack": (4096, 32),  # 0.13 ms/entry, 500 entries
    "number_filtering": (256, 128),  # 0.26 ms/entry, 500 entries
    "number_format": (384, 32),  # 0.02 ms/entry, 500 entries
    "number_sorting": (576, 128),  # 2.88 ms/entry, 500 entries
    "palindrome_generation": (512, 16),  # 0.02 ms/entry, 50 entries
    "palindrome_partitioning": (496, 4096),  # 0.14 ms/entry, 500 entries, capped (longest answer 11792 bytes)
    "path_star": (864, 48),  # 0.06 ms/entry, 500 entries
    "polynomial_equations": (1056, 32),  # 96.64 ms/entry, 415 entries
    "polynomial_multiplication": (640, 160),  # 23.14 ms/entry, 500 entries
    "pool_matrix": (896, 464),  # 0.47 ms/entry, 500 entries
    "power_function": (272, 32),  # 0.02 ms/entry, 500 entries
    "prime_factorization": (160, 64),  # 0.03 ms/entry, 500 entries
    "products": (128, 16),  # 0.03 ms/entry, 500 entries
    "propositional_logic": (736, 256),  # 0.13 ms/entry, 500 entries, no oracle answer
    "puzzle24": (400, 32),  # 744.45 ms/entry, 59 entries
    "quantum_lock": (672, 112),  # 361.61 ms/entry, 111 entries
    "ransom_note": (400, 16),  # 0.09 ms/entry, 500 entries
    "rearc": (5840, 608),  # 276.91 ms/entry, 146 entries
    "rectangle_count": (8848, 16),  # 9.20 ms/entry, 500 entries
    "rotate_matrix": (480, 256),  # 0.06 ms/entry, 500 entries
    "rotten_oranges": (2912, 16),  # 0.38 ms/entry, 500 entries
    "rubiks_cube": (688, 256),  # 10.78 ms/entry, 500 entries, no oracle answer
    "rush_hour": (560, 256),  # 0.04 ms/entry, 500 entries, no oracle answer
    "self_reference": (704, 16),  # 0.15 ms/entry, 500 entries
    "sentence_reordering": (272, 192),  # 0.13 ms/entry, 500 entries
    "shortest_path": (992, 96),  # 0.09 ms/entry, 500 entries
    "simple_equations": (96, 16),  # 5.69 ms/entry, 500 entries
    "simple_geometry": (320, 16),  # 0.02 ms/entry, 100 entries
    "simple_integration": (608, 80),  # 11.80 ms/entry, 500 entries
    "sokoban": (592, 112),  # 108.00 ms/entry, 372 entries
    "spell_backward": (80, 16),  # 0.02 ms/entry, 500 entries
    "spiral_matrix": (1232, 256),  # 1.39 ms/entry, 500 entries
    "string_insertion": (1184, 32),  # 0.05 ms/entry, 500 entries
    "string_manipulation": (1840, 32),  # 0.63 ms/entry, 500 entries
    "string_splitting": (1968, 16),  # 0.03 ms/entry, 500 entries
    "string_synthesis": (1520, 32),  # 0.02 ms/entry, 500 entries
    "sudoku": (416, 208),  # 134.94 ms/entry, 312 entries
    "survo": (512, 80),  # 2.40 ms/entry, 500 entries
    "syllogism": (240, 16),  # 1.36 ms/entry, 500 entries
    "time_intervals": (240, 32),  # 11.68 ms/entry, 500 entries
    "tower_of_hanoi": (608, 4096),  # 0.29 ms/entry, 500 entries, capped (longest answer 5088 bytes)
    "tsumego": (752, 16),  # 5.75 ms/entry, 500 entries
    "word_ladder": (256, 80),  # 35.52 ms/entry, 500 entries
    "word_sequence_reversal": (288, 96),  # 0.01 ms/entry, 500 entries
    "word_sorting": (496, 128),  # 0.03 ms/entry, 500 entries
    "zebra_puzzles": (1712, 16),  # 2535.91 ms/entry, 16 entries
}


def env_id(generator: str) -> str:
    return f"{ENV_PREFIX}{generator}-v0"


def installed() -> bool:
    """Whether reasoning-gym can be imported (checked without importing it)."""
    return importlib.util.find_spec("reasoning_gym") is not None


def _import_reasoning_gym():
    try:
        import reasoning_gym
    except ImportError as error:
        raise ImportError(
            f"reasoning-gym envs need the 'reasoning_gym' package: pip install 'llm-gym[reasoning]' "
            f"(pinned to reasoning-gym=={RG_VERSION})"
        ) from error
    return reasoning_gym


@contextlib.contextmanager
def _quiet():
    """Some generators print progress or debug lines; keep them out of the caller's stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


@lru_cache(maxsize=1)
def byte_tokenizer() -> PreTrainedTokenizerFast:
    """The default tokenizer of reasoning-gym envs: 256 bytes + specials, covering any text."""
    return train_tokenizer([], kind="bpe", vocab_size=256 + len(SPECIAL_TOKENS))


class ReasoningGymTask(Task):
    """One reasoning-gym generator as a ``Task``, gold-scored by the generator's own ``score_answer``.

    Why: reasoning-gym's datasets are indexed (entry ``i`` of seed ``s`` is always the same), so a
    draw picks an index with the env's generator and the episode is reproducible from the env seed;
    ``seed``/``size`` and any generator option go to reasoning-gym's config (``size`` entries per
    dataset, its default 500), and the stable hash split on the question separates train from test.
    Generators without a single oracle answer have an empty reference (their scorer still judges).
    """

    default_reward = "verifier"
    description = "a reasoning-gym generator; gold: its score_answer"

    def __init__(self, generator: str, seed: int = 0, test_fraction: float = 0.1, **config: Any):
        rg = _import_reasoning_gym()
        if generator not in rg.factory.DATASETS:
            raise KeyError(
                f"unknown reasoning-gym generator {generator!r}; known: {', '.join(sorted(rg.factory.DATASETS))}"
            )
        with _quiet():
            self.rg_dataset = rg.create_dataset(generator, seed=seed, **config)
        self.generator, self.name, self.test_fraction = generator, f"rg_{generator}", test_fraction
        if generator in GENERATORS:
            self.max_prompt_tokens, self.max_new_tokens = GENERATORS[generator]
        self._entries: dict[int, Sample] = {}

    def default_tokenizer(self) -> PreTrainedTokenizerFast:
        """``byte_tokenizer()``: questions hold any Unicode, which a sample-trained vocabulary would miss."""
        return byte_tokenizer()

    def entry(self, index: int) -> Sample:
        """Entry ``index`` of the dataset as a sample (cached: slow generators take up to ~0.6 s each)."""
        if index not in self._entries:
            with _quiet():
                entry = self.rg_dataset[index]
            answer = entry["answer"]
            self._entries[index] = Sample(entry["question"], "" if answer is None else str(answer), {"entry": entry})
        return self._entries[index]

    def generate(self, rng: np.random.Generator) -> Sample:
        return self.entry(int(rng.integers(len(self.rg_dataset))))

    def verify(
        self, prompts: Sequence[str], completions: Sequence[str], metadata: Sequence[Mapping[str, Any]]
    ) -> np.ndarray:
        return np.array([self._score(c, m["entry"]) for c, m in zip(completions, metadata)], dtype=np.float32)

    def _score(self, completion: str, entry: Mapping[str, Any]) -> float:
        # A policy emits arbitrary text and a few scorers raise on unparsable answers instead of
        # returning 0; an unparsable answer is a wrong answer, not an env crash.
        try:
            with _quiet():
                return float(self.rg_dataset.score_answer(completion, entry))
        except Exception:  # noqa: BLE001
            return 0.0


def _round_up(x: float, multiple: int = 16) -> int:
    return int(math.ceil(x / multiple) * multiple)


def measure_window(generator: str, budget_s: float = 40.0, **config: Any) -> dict[str, Any]:
    """Window (bytes, see ``GENERATORS``) and generation speed over the entries made within ``budget_s``."""
    task = ReasoningGymTask(generator, **config)
    prompt_bytes, answer_bytes, start = [], [], time.perf_counter()
    for index in range(len(task.rg_dataset)):
        sample = task.entry(index)
        prompt_bytes.append(len(sample.prompt.encode()))
        if sample.metadata["entry"]["answer"] is not None:
            answer_bytes.append(len(sample.reference.encode()))
        if time.perf_counter() - start > budget_s:
            break
    seconds = time.perf_counter() - start
    new_tokens = UNBOUNDED_ANSWER_TOKENS
    if answer_bytes:
        new_tokens = min(_round_up(1.25 * (max(answer_bytes) + 1)), MAX_NEW_TOKENS)
    return {
        "window": (_round_up(1.25 * (max(prompt_bytes) + 1)), new_tokens),
        "entries": len(prompt_bytes),
        "ms_per_entry": 1000 * seconds / len(prompt_bytes),
    }


if __name__ == "__main__":
    rg = _import_reasoning_gym()
    for name in sorted(rg.factory.DATASETS):
        if name not in EXCLUDED:
            measured = measure_window(name)
            print(f'    "{name}": {measured["window"]},  # {measured["ms_per_entry"]:.2f} ms/entry')
