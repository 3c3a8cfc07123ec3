"""``llm-gym`` subcommands built from config dataclasses, the way TRL's scripts are.

Why one module: every command (SFT, feedback, reward model, the RL algorithms, bench) should read
its options the way a TRL or ``transformers`` user expects, and a new command should get that for
free. A command is one ``@dataclass`` per option group; ``transformers.HfArgumentParser`` turns
each field into ``--field_name`` (with ``--field-name`` as alias), ``metadata={"help": ...}`` is its
help, ``Literal`` fields list their choices and booleans are switches. On top of that this module
adds what TRL's ``TrlParser`` adds and a few things it does not:

- ``--config FILE.yaml``: a mapping of option names to values, applied as defaults, so flags
  given on the command line override it (unknown keys and bad choices in the file are errors);
  a dataclass with its own ``config`` field (``bench run``'s grid file) replaces this option;
- mapping fields (``dict``) read JSON or YAML from the command line: ``--env_kwargs '{"digits": 2}'``;
- path fields checked before anything is loaded: ``metadata={"path": "dir"}`` (``"file"``, ``"exists"``)
  makes a missing path a usage error; ``"output"`` marks a path that need not exist; every ``"path"``
  field is recorded absolute by ``agents.run_record``;
- errors as one line ``llm-gym <command>: error: <cause>``, exit status 2 for usage errors and 1
  for expected failures at run time (``CommandError``, ``OSError``, ``ValueError``), 130 for Ctrl-C;
  ``--debug`` re-raises them with the traceback;
- quiet by default: transformers' and datasets' loading bars and load reports are silenced while
  a command runs (our own progress bars stay); ``-v`` keeps them.

API
---
``add_dataclass_command(subparsers, name, help, config_classes, run, description=None) -> CommandParser``
    Adds ``llm-gym <name>``. ``config_classes`` is one dataclass or a sequence of them (their field
    names must not collide). When the command runs, ``run(*configs)`` is called with one instance per
    class, in order, built from defaults <- ``--config`` file <- flags; a ``ValueError``/``TypeError``
    raised while building them (``__post_init__`` validation) is a usage error. ``run`` returns the
    exit status as an ``int``; any other value (``None``, a training result) means 0.
    ``description`` defaults to the first paragraph of the first dataclass's docstring.
``CommandParser``
    The ``argparse`` parser class of ``llm-gym`` and of every subcommand (``HfArgumentParser`` plus
    the above). A plain ``subparsers.add_parser(name)`` also gets it, so hand-written commands
    share the one-line errors, ``--debug`` and ``-v`` (nested subparsers need a ``dest`` for errors
    to name the subcommand). ``parser.configs_from(namespace)`` builds the dataclass instances from a
    parsed namespace.
``run_cli(parser, argv=None) -> int``
    Parses ``argv`` (``--debug``/``-v`` anywhere), quiets third-party logging, calls the chosen
    command and turns expected errors into one line. ``llm_gym.cli.main`` is ``run_cli(build_parser())``.
``CommandError``
    Raise it for an expected failure whose message is the whole story (exit status 1).
``parse_mapping(text) -> dict``
    The JSON/YAML mapping reader used for ``dict`` fields.
``require_env_id(env_id)``, ``ENV_KWARGS_HELP``, ``RESUME_HELP``
    The shared validation and help texts of ``--env_id``, ``--env_kwargs``, ``--resume_from_checkpoint``.

Wiring one subcommand per registered algorithm (``llm-gym grpo``, like ``trl grpo``)::

    def add_algorithm_commands(subparsers):
        for name, algo in ALGORITHMS.items():
            add_dataclass_command(
                subparsers, name, help=algo.summary, config_classes=[algo.config_class, RunArguments],
                run=lambda config, run_args, name=name: train(name, config, run_args),
            )
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import difflib
import os
import sys
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import gymnasium
import yaml
from transformers import HfArgumentParser
from transformers.utils import logging as hf_logging

DEBUG_SWITCH = "--debug"
VERBOSE_SWITCHES = ("-v", "--verbose")
CONFIG_OPTION = "--config"
PATH_KINDS = ("dir", "file", "exists", "output")
ENV_KWARGS_HELP = (
    "keyword arguments for gymnasium.make(env_id), a JSON or YAML mapping, "
    "e.g. '{\"reward\": \"learned:path=runs/rm\", \"task_kwargs\": {\"digits\": 2}}'"
)
RESUME_HELP = "checkpoint directory to resume from, or 'auto' for the newest one in output_dir (if any)"


class CommandError(Exception):
    """An expected failure of a command: printed as ``llm-gym <command>: error: <message>``, exit status 1."""


# what a user's input or setup can raise (a bad value, a missing file, an optional package not installed): one line
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (CommandError, OSError, ValueError, ImportError)


def require_env_id(env_id: str) -> None:
    """Raise ``ValueError`` naming the closest registered ids when ``env_id`` is not registered (for ``__post_init__``)."""
    if env_id not in gymnasium.registry:
        close = difflib.get_close_matches(env_id, list(gymnasium.registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `llm-gym envs` lists them"
        raise ValueError(f"argument --env_id: unknown env id {env_id!r}{hint}")


def parse_mapping(text: str) -> dict[str, Any]:
    """A JSON or YAML mapping given on the command line, e.g. ``'{"reward": "exact_match"}'`` or ``'{reward: exact_match}'``."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"not a JSON/YAML mapping: {text!r} ({err.__class__.__name__})") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping like '{{\"key\": value}}', got {text!r}")
    return value


def _existing(kind: str, convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """Wrap an argparse type so a path that must exist is checked while parsing (before any model loads)."""

    def check(text: str) -> Any:
        value = convert(text) if convert else text
        path = Path(value)
        if kind == "dir" and not path.is_dir():
            raise argparse.ArgumentTypeError(f"directory not found: {value}")
        if kind == "file" and not path.is_file():
            raise argparse.ArgumentTypeError(f"file not found: {value}")
        if kind == "exists" and not path.exists():
            raise argparse.ArgumentTypeError(f"path not found: {value}")
        return value

    check.__name__ = getattr(convert, "__name__", "path")
    return check


def _unwrap_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


class CommandHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(required)`` for required options and the default only where one applies (not ``None``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required and action.option_strings:
            return f"{text} (required)"
        if (
            "%(default)" in text
            or action.default in (None, argparse.SUPPRESS)
            or isinstance(action, (argparse._StoreConstAction, argparse._HelpAction, argparse._VersionAction))
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


class CommandParser(HfArgumentParser):
    """``HfArgumentParser`` with ``--config`` YAML defaults, mapping and path fields, and one-line errors."""

    def __init__(self, dataclass_types: Any = None, **kwargs: Any):
        kwargs.setdefault("formatter_class", CommandHelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(dataclass_types, **kwargs)
        own_config = any(f.name == "config" for dtype in self.dataclass_types for f in dataclasses.fields(dtype))
        self.reads_config_file = bool(self.dataclass_types) and not own_config
        if self.reads_config_file:
            self.add_argument(CONFIG_OPTION, metavar="FILE.yaml", type=_existing("file", str),
                              help="YAML mapping of option names to values; options given as flags override it")
        # Read by run_cli wherever they appear on the line; declared here for --help only (nothing in the namespace).
        self.add_argument(DEBUG_SWITCH, action="store_true", default=argparse.SUPPRESS,
                          help="on an error, show the full Python traceback")
        self.add_argument(*VERBOSE_SWITCHES, action="store_true", default=argparse.SUPPRESS,
                          help="show third-party logging and loading progress bars (hidden by default)")

    @staticmethod
    def _parse_dataclass_field(parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
        metadata = dict(field.metadata)
        path_kind = metadata.pop("path", None)
        if path_kind is not None and path_kind not in PATH_KINDS:
            raise ValueError(f"field {field.name!r}: metadata 'path' must be one of {PATH_KINDS}, got {path_kind!r}")
        names = [f"--{field.name}"] + ([f"--{field.name.replace('_', '-')}"] if "_" in field.name else [])
        if typing.get_origin(_unwrap_optional(field.type)) is dict or _unwrap_optional(field.type) is dict:
            default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
            parser.add_argument(*names, type=parse_mapping, metavar="MAPPING", help=metadata.get("help"),
                                required=default is dataclasses.MISSING,
                                default=None if default is dataclasses.MISSING else default)
            return
        plain = copy.copy(field)
        plain.metadata = types.MappingProxyType(metadata)
        HfArgumentParser._parse_dataclass_field(parser, plain)
        if path_kind in ("dir", "file", "exists"):
            action = next(a for a in parser._actions if a.option_strings and a.option_strings[0] == names[0])
            action.type = _existing(path_kind, action.type)

    # ----------------------------------------------------------------------------- --config YAML
    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        args = list(sys.argv[1:] if args is None else args)
        if self.reads_config_file:
            for i, arg in enumerate(args):
                if arg == CONFIG_OPTION and i + 1 < len(args):
                    self._apply_config_file(args[i + 1])
                elif arg.startswith(CONFIG_OPTION + "="):
                    self._apply_config_file(arg.split("=", 1)[1])
        return super().parse_known_args(args, namespace)

    def _apply_config_file(self, path: str) -> None:
        """Make the values of a YAML config file the defaults, so flags override them."""
        if not Path(path).is_file():
            self.error(f"argument {CONFIG_OPTION}: file not found: {path}")
        try:
            values = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as err:
            self.error(f"{CONFIG_OPTION} {path}: not valid YAML ({' '.join(str(err).split())})")
        if values is None:
            return
        if not isinstance(values, dict):
            self.error(f"{CONFIG_OPTION} {path}: expected a mapping of option: value, got {type(values).__name__}")
        values = {str(key).replace("-", "_"): value for key, value in values.items()}
        known = {f.name for dtype in self.dataclass_types for f in dataclasses.fields(dtype) if f.init}
        unknown = sorted(set(values) - known)
        if unknown:
            hints = [f"{key} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(key, known, n=1)) else key
                     for key in unknown]
            self.error(f"{CONFIG_OPTION} {path}: unknown option(s) {', '.join(hints)}")
        for action in self._actions:
            if action.dest in values and action.option_strings and not action.option_strings[0].startswith("--no_"):
                action.default = values[action.dest]
                action.required = False

    # ------------------------------------------------------------------------------- dataclasses
    def configs_from(self, namespace: argparse.Namespace) -> tuple[Any, ...]:
        """One instance per dataclass from a parsed namespace; bad values are usage errors naming the option."""
        configs = []
        for dtype in self.dataclass_types:
            hints = typing.get_type_hints(dtype)
            values = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(dtype) if f.init and hasattr(namespace, f.name)}
            for name, value in values.items():
                hint = _unwrap_optional(hints[name])
                if typing.get_origin(hint) is Literal and value is not None and value not in typing.get_args(hint):
                    choices = ", ".join(repr(c) for c in typing.get_args(hint))
                    self.error(f"argument --{name}: invalid choice: {value!r} (choose from {choices})")
            try:
                configs.append(dtype(**values))
            except (TypeError, ValueError) as err:
                self.error(str(err))
        return tuple(configs)

    def error(self, message: str) -> typing.NoReturn:
        """One line on stderr (no usage block), exit status 2."""
        self.exit(2, f"{self.prog}: error: {_one_line(message)}\n")


def _one_line(message: Any) -> str:
    return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def add_dataclass_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    help: str,
    config_classes: type | Sequence[type],
    run: Callable[..., int | None],
    description: str | None = None,
) -> CommandParser:
    """Add ``llm-gym <name>`` whose options are the fields of ``config_classes``; see the module docstring."""
    classes = list(config_classes) if isinstance(config_classes, Sequence) else [config_classes]
    if description is None:
        description = " ".join((classes[0].__doc__ or help).split("\n\n")[0].split())
    parser = subparsers.add_parser(name, help=help, description=description, dataclass_types=classes)
    if not isinstance(parser, CommandParser):
        raise TypeError(f"{name}: subparsers must be created by a CommandParser (add_subparsers on llm_gym.cli's parser)")
    parser.set_defaults(func=lambda args: run(*parser.configs_from(args)))
    return parser


@contextlib.contextmanager
def quiet_third_party(verbose: bool = False) -> Iterator[None]:
    """Silence transformers'/datasets' logging and loading bars for the duration (unless ``verbose``); restore after."""
    if verbose:
        yield
        return
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    saved_env = {key: os.environ.get(key) for key in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "DATASETS_VERBOSITY")}
    datasets_logging = None
    if "datasets" in sys.modules:  # already imported: use its switches; else its import reads these variables
        datasets_logging = sys.modules["datasets"].utils.logging
        datasets_state = datasets_logging.get_verbosity(), datasets_logging.is_progress_bar_enabled()
        datasets_logging.set_verbosity_error()
        datasets_logging.disable_progress_bar()
    os.environ.update({"HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "DATASETS_VERBOSITY": "error"})
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
        if datasets_logging is not None:
            datasets_logging.set_verbosity(datasets_state[0])
            if datasets_state[1]:
                datasets_logging.enable_progress_bar()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost (sub)command parser ``args`` was parsed by: follow each subparsers' ``dest`` to the chosen name."""
    while True:
        action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = getattr(args, action.dest, None) if action is not None and action.dest != argparse.SUPPRESS else None
        if name not in getattr(action, "choices", {}):
            return parser
        parser = action.choices[name]


# TRL's TrainingArguments flags that have another spelling here: the error for one says which
TRL_EQUIVALENTS = {
    "--max_completion_length": "--env_kwargs '{max_new_tokens: N}'",
    "--max_prompt_length": "--env_kwargs '{max_prompt_tokens: N}'",
    "--per_device_train_batch_size": "--batch_size (completions per iteration and process)",
    "--max_steps": "--budget (completions in total)",
    "--num_train_epochs": "--budget (completions in total)",
    "--bf16": "--mixed_precision bf16",
    "--fp16": "--mixed_precision fp16",
    "--use_peft": "--lora_r N",
    "--report_to": "nothing: TensorBoard logs go to OUTPUT_DIR/tb",
    "--logging_steps": "nothing: every iteration is logged",
}


def unrecognized(extras: Sequence[str]) -> str:
    """The "unrecognized arguments" message, with llm_gym's spelling of any TRL flag among ``extras``."""
    flags = {arg.split("=")[0].replace("-", "_").replace("__", "--", 1) for arg in extras if arg.startswith("--")}
    hints = [f"TRL's {flag} is {TRL_EQUIVALENTS[flag]} here" for flag in sorted(flags) if flag in TRL_EQUIVALENTS]
    return f"unrecognized arguments: {' '.join(extras)}" + "".join(f"; {hint}" for hint in hints)


def run_cli(parser: CommandParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the chosen command quietly, and print expected errors as one line (see module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_SWITCH in argv
    verbose = any(switch in argv for switch in VERBOSE_SWITCHES)
    argv = [arg for arg in argv if arg not in (DEBUG_SWITCH, *VERBOSE_SWITCHES)]
    args, extras = parser.parse_known_args(argv)
    command_parser = chosen_parser(parser, args)
    if extras:
        command_parser.error(unrecognized(extras))
    try:
        with quiet_third_party(verbose):
            status = args.func(args)
    except EXPECTED_ERRORS as err:
        if debug:
            raise
        print(f"{command_parser.prog}: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{command_parser.prog}: interrupted", file=sys.stderr)
        return 130
    return status if isinstance(status, int) else 0
