"""``jaxrnn generate``: sample text from the latest checkpoint of a charlm run."""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

import jax

from jaxrnn import data
from jaxrnn._app import trainer
from jaxrnn._app.options import RunError, positive
from jaxrnn._app.tasks import charlm

# The options' defaults.
LENGTH, TEMPERATURE = 200, 0.8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``jaxrnn generate`` to ``parser``."""
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        required=True,
        metavar="RUN_DIR",
        help="the folder of a charlm run (`jaxrnn train --task charlm --out RUN_DIR`)",
    )
    parser.add_argument(
        "--prompt", default=None, help="text to continue (default: the run's prompt, the start of its test split)"
    )
    parser.add_argument("--length", type=int, default=LENGTH, help=f"characters to generate (default {LENGTH})")
    parser.add_argument(
        "--temperature",
        type=float,
        default=TEMPERATURE,
        help=f"sampling temperature > 0; lower is more conservative (default {TEMPERATURE})",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; the same seed gives the same text (default 0)"
    )


def _read_run(out_dir: pathlib.Path) -> tuple:
    """``(config, vocab, prompt)`` of the charlm run in ``out_dir``; RunError for anything else."""
    try:
        config = json.loads((out_dir / "config.json").read_text())
    except OSError:
        raise RunError(
            f"--out {out_dir} holds no run (no config.json); train one with "
            f"`jaxrnn train --task charlm --out {out_dir}`."
        ) from None
    except ValueError as error:
        raise RunError(f"--out {out_dir} has an unreadable config.json ({error}).") from error
    if config.get("task") != "charlm":
        raise RunError(
            f"--out {out_dir} holds a {config.get('task')!r} run; generate needs a charlm run "
            f"(`jaxrnn train --task charlm --out DIR`)."
        )
    try:
        saved = json.loads((out_dir / charlm.VOCAB_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RunError(
            f"--out {out_dir} has no readable {charlm.VOCAB_FILE} ({error}); train the run again."
        ) from error
    return config, data.CharVocab(saved["chars"]), saved["prompt"]


def generate(
    out_dir, prompt: str | None = None, *, length: int = LENGTH, temperature: float = TEMPERATURE, seed: int = 0
) -> tuple:
    """Continue ``prompt`` with the latest checkpoint of the charlm run in ``out_dir``.

    Samples with the parameters ``report`` scores: those of the best evaluation so
    far, or the latest ones before any evaluation (see :func:`jaxrnn._app.tasks.charlm.sample`).

    Returns:
      ``(prompt, text)``: the prompt used and the ``length`` characters drawn.

    Raises:
      RunError: no run or no checkpoint in ``out_dir``, a run of another task, a
        temperature <= 0, a length < 1, or prompt characters outside the run's vocabulary.
    """
    out_dir = pathlib.Path(out_dir)
    if not (isinstance(temperature, (int, float)) and temperature > 0 and math.isfinite(temperature)):
        raise RunError(f"--temperature must be a positive number, got {temperature!r}.")
    positive(length, "length")
    config, vocab, saved_prompt = _read_run(out_dir)
    prompt = saved_prompt if prompt is None else prompt
    if not prompt:
        raise RunError("--prompt must not be empty.")
    unknown = sorted(set(prompt) - set(vocab.chars))
    if unknown:
        raise RunError(
            f"--prompt has {len(unknown)} characters outside the run's vocabulary: "
            f"{', '.join(map(repr, unknown))}; the run knows {vocab.chars!r}."
        )
    rnn, head, init_params = charlm.charlm_model(config, vocab.size)
    params = trainer.latest_params(out_dir, init_params, charlm.initial_carry(rnn, config["batch_size"]), config)
    if params is None:
        raise RunError(f"--out {out_dir} holds no checkpoint yet; train the run first.")
    return prompt, charlm.sample(rnn, head, params, vocab, prompt, length, temperature, jax.random.key(seed))


def main(args: argparse.Namespace, *, out=None) -> int:
    """``jaxrnn generate``: print the prompt and its continuation; returns 0, or 2 for a usage error."""
    out = sys.stdout if out is None else out
    try:
        prompt, text = generate(args.out, args.prompt, length=args.length, temperature=args.temperature, seed=args.seed)
    except RunError as error:
        print(f"jaxrnn generate: error: {error}", file=sys.stderr)
        return 2
    print(prompt + text, file=out)
    return 0
