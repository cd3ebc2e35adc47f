"""A character language model trained by truncated BPTT over one text (bits per character).

The one task whose model carries state from batch to batch: its Setup has an
``initial_carry`` and a ``loss_fn(params, batch, carry, rng) -> (loss, carry)``; see
``docs/training-design.md``. :func:`sample` draws text from a model, for the
report and for ``jaxrnn generate`` (:mod:`jaxrnn._app.generate`). With a Newton
``--solver`` its steps record no iterations and ``--warm-start`` is refused.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn as jr
from jaxrnn import data, train
from jaxrnn._app.tasks.base import DTYPE, SHARED, Params, Setup, Task, init, int_option, model, solver_option

# The stream's split, in order: the first 90% trains, the next 5% validates, the last 5% tests.
SPLIT = (0.9, 0.05)
# Validation and test streams are cut into at most this many rows, each run in one pass.
EVAL_ROWS = 16
# The report's samples: this many characters at each temperature, after a prompt of
# the first PROMPT characters of the test split.
SAMPLE_LENGTH, TEMPERATURES, PROMPT = 200, (0.5, 0.8, 1.0), 32
# What a charlm run writes into its folder so `jaxrnn generate` works without the text.
VOCAB_FILE = "vocab.json"


def charlm_model(config: dict, vocab_size: int) -> tuple:
    """``(model, head, init_params)`` of a charlm config: one-hot characters in, logits out."""
    rnn, head = model(config, vocab_size), jr.readout(vocab_size)
    return rnn, head, init(rnn, head)


def initial_carry(rnn: jr.StackedRNN, batch_size: int):
    """The zero state a run carries into its first chunk (and a checkpoint's template of it)."""
    return rnn.initial_state((batch_size,), dtype=DTYPE)


def _rows(tokens: np.ndarray, length: int) -> np.ndarray:
    """``tokens`` cut into up to EVAL_ROWS contiguous rows of at least ``length + 1``."""
    count = max(1, min(EVAL_ROWS, len(tokens) // (length + 1)))
    return tokens[: count * (len(tokens) // count)].reshape(count, -1)


def _bpc_fn(rnn, head, solver) -> Callable[[Params, dict], dict]:
    """Bits per character of next-character prediction over whole rows ``[R, M]``, with ``solver``.

    One pass over a row equals carrying the state across its chunks
    (:func:`jaxrnn.train.stream_forward`), without the chunk loop.
    """

    def eval_fn(params: Params, batch: dict) -> dict:
        tokens = batch["tokens"]
        xs = jax.nn.one_hot(tokens[:, :-1], rnn.input_size, dtype=DTYPE)
        ys, _ = rnn.apply(params.rnn, xs, solver=solver)
        return {"bpc": train.cross_entropy(head.apply(params.head, ys), tokens[:, 1:]) / math.log(2)}

    return eval_fn


def sample(
    rnn, head, params: Params, vocab: data.CharVocab, prompt: str, length: int, temperature: float, key: jax.Array
) -> str:
    """``length`` characters that follow ``prompt``, drawn one at a time.

    The prompt runs through ``model.apply`` from zero state; then each step draws a
    character with ``jax.random.categorical(key, logits / temperature)`` and feeds
    it back with ``model.apply`` on that one step from the carried state.

    Args:
      rnn, head, params: from :func:`charlm_model` (``params`` trained or not).
      vocab: the run's vocabulary; every character of ``prompt`` must be in it.
      prompt: a non-empty text to continue.
      length: how many characters to draw.
      temperature: > 0; below 1 sharpens the distribution, above 1 flattens it.
      key: PRNG key; the same key gives the same text.

    Returns:
      The drawn characters (without the prompt).
    """
    ids = jnp.asarray(vocab.encode(prompt))[None]
    return vocab.decode(np.asarray(_draw(rnn, head, length)(params, ids, jnp.asarray(temperature, DTYPE), key)))


@functools.lru_cache(maxsize=16)
def _draw(rnn, head, length: int):
    def one_hot(ids):
        return jax.nn.one_hot(ids, rnn.input_size, dtype=DTYPE)

    def draw(params, ids, temperature, key):
        ys, state = rnn.apply(params.rnn, one_hot(ids))
        logits = head.apply(params.head, ys[:, -1])

        def step(carry, key):
            state, logits = carry
            token = jax.random.categorical(key, logits / temperature)
            ys, state = rnn.apply(params.rnn, one_hot(token[:, None]), state=state)
            return (state, head.apply(params.head, ys[:, -1])), token[0]

        _, tokens = jax.lax.scan(step, (state, logits), jax.random.split(key, length))
        return tokens

    return jax.jit(draw)


def build(config: dict) -> Setup:
    length = int_option(config, "length")
    text = data.load_text(config.get("text"))
    vocab = data.CharVocab.from_text(text)
    tokens = vocab.encode(text)
    rnn, head, init_params = charlm_model(config, vocab.size)
    solver = solver_option(config, rnn)
    if config.get("warm_start"):
        raise ValueError(
            "--warm-start is not available for the charlm task: its steps continue a stream with a carried "
            "state (truncated BPTT), and its Newton solves start from zeros; drop --warm-start"
        )
    batch_size = config["batch_size"]
    n_train = int(SPLIT[0] * len(tokens))
    n_val = int(SPLIT[1] * len(tokens))
    splits = tokens[:n_train], tokens[n_train : n_train + n_val], tokens[n_train + n_val :]
    where = "the default corpus" if config.get("text") is None else f"--text {config['text']}"
    if n_train // batch_size < length + 1:
        raise ValueError(
            f"{where} has {len(tokens)} characters; its training 90% ({n_train}) cut into --batch-size "
            f"{batch_size} rows is shorter than one chunk of --length {length} + 1; use a longer text, a "
            f"smaller --batch-size or a shorter --length"
        )
    if min(len(splits[1]), len(splits[2])) < 2:
        raise ValueError(
            f"{where} has {len(tokens)} characters, too few for validation and test splits of "
            f"5% with at least 2 characters each; use a longer text"
        )
    chunks = np.asarray(train.stream_chunks(splits[0], batch_size, length))  # [num_chunks, B, L + 1]
    eval_fn = _bpc_fn(rnn, head, solver)
    prompt = vocab.decode(splits[2][:PROMPT])

    def train_batch(step: int) -> dict:
        # The stream wraps around after its last chunk; the carry restarts from zeros there.
        index = step % len(chunks)
        return {"tokens": chunks[index], "reset": np.asarray(index == 0)}

    def loss_fn(params: Params, batch: dict, carry, rng):
        carry = jax.tree_util.tree_map(lambda c: jnp.where(batch["reset"], jnp.zeros_like(c), c), carry)
        tokens = batch["tokens"]
        xs = jax.nn.one_hot(tokens[:, :-1], vocab.size, dtype=DTYPE)
        logits, carry = train.stream_forward(
            rnn, head, train.StreamParams(params.rnn, params.head), xs, carry, solver=solver
        )
        return train.cross_entropy(logits, tokens[:, 1:]), carry

    def report(params: Params, out_dir) -> dict:
        test = train.evaluate(train.make_eval_step(eval_fn), params, [{"tokens": _rows(splits[2], length)}])
        counts = np.bincount(splits[0], minlength=vocab.size)
        p = counts[counts > 0] / counts.sum()
        keys = jax.random.split(jax.random.key(config["seed"]), len(TEMPERATURES))
        samples = {
            str(t): sample(rnn, head, params, vocab, prompt, SAMPLE_LENGTH, t, k) for t, k in zip(TEMPERATURES, keys)
        }
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "samples.txt"), "w", encoding="utf-8") as f:
            f.writelines(f"--- temperature {t} ---\n{prompt}{s}\n" for t, s in samples.items())
        return {
            "test_bpc": test["bpc"],
            "unigram_bpc": float(-(p * np.log2(p)).sum()),
            "prompt": prompt,
            "samples": samples,
        }

    return Setup(
        init_params=init_params,
        train_batch=train_batch,
        loss_fn=loss_fn,
        eval_batches=[{"tokens": _rows(splits[1], length)}],
        eval_fn=eval_fn,
        report=report,
        initial_carry=initial_carry(rnn, batch_size),
        files={VOCAB_FILE: json.dumps({"chars": vocab.chars, "prompt": prompt}) + "\n"},
    )


TASK = Task(
    "charlm",
    "character language model, truncated BPTT over a text (bits per character; --text FILE)",
    # 1200 steps take 56 s on 2 shared CPU cores (~20 steps/s): on the default corpus test
    # bpc 2.65 against a unigram entropy of 4.73 bits; validation bpc 3.05 (the validation
    # 5% is harder text than the test 5%: indented lists of names).
    {**SHARED, "hidden": 128, "length": 64, "steps": 1200, "batch_size": 32, "learning_rate": 5e-3, "eval_every": 200},
    ("bpc", "min"),
    build,
)
