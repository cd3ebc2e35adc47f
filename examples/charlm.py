"""A character language model trained by truncated BPTT over one long text stream.

The text (``data.load_text()``, ~150 KB of Python's standard-library docstrings) is
one long sequence of character ids. ``train.stream_chunks`` cuts it into 32
parallel rows and those into consecutive chunks of 64 characters; chunk k + 1
continues every row of chunk k. ``train.make_stream_train_step`` trains on one
chunk and returns the LSTM's final state, which we pass in with the next chunk:
the model reads the text as one stream, while the gradient stops at chunk borders
(truncated BPTT), so memory and time per step stay fixed.

The score is bits per character on held-out text (the last 10%), read the same
way with the state carried along. A uniform guess over the 96 characters costs
log2(96) = 6.6 bits; the defaults (500 steps, about 20 s on two CPU cores) get
the held-out text to 2.85 bits per character (the training chunks to about 2.3:
the held-out docstrings come from other modules; training longer mostly
memorises the training text). Then we sample: one
character at a time, each fed back as the next input, drawn from the softmax of
the logits divided by a temperature (below 1: safer, more repetitive text).

Run: ``python examples/charlm.py [--steps N] [--temperature T] [--sample-length N]``.
"""

import argparse
import math

import jax
import jax.numpy as jnp

import jaxrnn as jr
from jaxrnn import data, train

BATCH_SIZE = 32  # parallel rows of the stream
CHUNK_LENGTH = 64  # steps per chunk: how far back the gradient reaches


def main(steps=500, temperature=0.7, sample_length=300, seed=0):
    text = data.load_text()
    vocab = data.CharVocab.from_text(text)
    ids = vocab.encode(text)
    split = int(0.9 * len(ids))
    train_chunks = train.stream_chunks(ids[:split], BATCH_SIZE, CHUNK_LENGTH)  # [num_chunks, B, L + 1]
    val_chunks = train.stream_chunks(ids[split:], BATCH_SIZE, CHUNK_LENGTH)

    # Characters enter one-hot, so the input size is the vocabulary's; the readout
    # gives one logit per character.
    model = jr.LSTM(input_size=vocab.size, hidden_size=128)
    head = jr.readout(vocab.size)
    key = jax.random.key(seed)
    params = train.StreamParams(
        model.init(jax.random.fold_in(key, 0)), head.init(jax.random.fold_in(key, 1), model.output_size)
    )
    optimizer = train.default_optimizer(1e-2)
    state = train.init_state(params, optimizer, jax.random.fold_in(key, 2))
    train_step = train.make_stream_train_step(model, head, optimizer)

    carry = None  # None: zero state at the start of the stream
    report_every = max(1, steps // 5)
    for step in range(steps):
        chunk_index = step % len(train_chunks)
        if chunk_index == 0:
            carry = None  # a new pass over the text starts from the beginning of every row
        state, carry, metrics = train_step(state, train_chunks[chunk_index], carry)
        if not metrics["finite"]:
            raise FloatingPointError(f"non-finite loss at step {int(state.step)}")
        if (step + 1) % report_every == 0:
            print(f"step {step + 1:5d}  train {float(metrics['loss']) / math.log(2):.3f} bits per character")

    @jax.jit
    def chunk_loss(params, chunk, carry):
        xs = jax.nn.one_hot(chunk[:, :-1], vocab.size)
        logits, carry = train.stream_forward(model, head, params, xs, carry)
        return train.cross_entropy(logits, chunk[:, 1:]), carry

    # Held-out text read as a stream too: every chunk starts from the state the
    # previous one ended in, as in training.
    carry, total = model.initial_state((BATCH_SIZE,)), 0.0
    for chunk in val_chunks:
        loss, carry = chunk_loss(state.params, chunk, carry)
        total += float(loss)
    bits = total / len(val_chunks) / math.log(2)  # nats to bits
    print(
        f"held-out {bits:.3f} bits per character  (uniform over {vocab.size} characters: "
        f"{math.log2(vocab.size):.3f}; {steps} steps)"
    )

    @jax.jit
    def sample_step(params, char, carry, key):
        # One step of the stream: a [1, 1] chunk of one character, from the carried state.
        logits, carry = train.stream_forward(model, head, params, jax.nn.one_hot(char, vocab.size)[None, None], carry)
        return jax.random.categorical(key, logits[0, -1] / temperature), carry

    prompt = "The "
    carry, sampled = model.initial_state((1,)), []
    # Read the prompt first, so the sample continues it; the last draw during the
    # prompt is the first sampled character.
    for i, c in enumerate(vocab.encode(prompt)):
        char, carry = sample_step(state.params, jnp.int32(c), carry, jax.random.fold_in(key, 10**6 + i))
    for i in range(sample_length):
        sampled.append(int(char))
        char, carry = sample_step(state.params, char, carry, jax.random.fold_in(key, 2 * 10**6 + i))
    print(f"sample (temperature {temperature}):")
    print(prompt + vocab.decode(sampled))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--sample-length", type=int, default=300)
    args = parser.parse_args()
    main(args.steps, args.temperature, args.sample_length)
