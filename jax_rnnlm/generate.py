"""Using a trained model: sample text, and score text by its log-probability.

``sample`` primes the carry on a prompt with one ``forward`` (a scan), then draws
tokens inside a jitted ``lax.scan``; ``log_prob`` scores every next token of a
sequence. Both are pure: params, carry and key in, results out.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jax_rnnlm import data, model, tokenizer


def filter_logits(logits_BV, *, temperature=1.0, top_k=0, top_p=1.0, skip_ids=()):
    """Logits [B, V] of the distribution to sample from (-inf where excluded).

    Tokens in ``skip_ids`` are excluded outright: sampling from the rest is the
    same as resampling until a non-skipped token comes up, and the recurrent
    state never sees the rejected draws. ``top_k`` keeps the k most likely
    tokens (0: all); ``top_p`` keeps the smallest set whose probability reaches p.
    """
    if skip_ids:
        logits_BV = logits_BV.at[:, jnp.asarray(skip_ids)].set(-jnp.inf)
    logits_BV = logits_BV / max(temperature, 1e-6)
    if top_k:
        kth_BV = jax.lax.top_k(logits_BV, top_k)[0][:, -1:]
        logits_BV = jnp.where(logits_BV < kth_BV, -jnp.inf, logits_BV)
    if top_p < 1.0:
        sorted_BV = jnp.sort(logits_BV, axis=-1)[:, ::-1]
        cum_BV = jnp.cumsum(jax.nn.softmax(sorted_BV, axis=-1), axis=-1)
        # the smallest logit still inside the nucleus: the first one where cum >= p
        cutoff_B1 = jnp.take_along_axis(
            sorted_BV, jnp.sum(cum_BV < top_p, axis=-1, keepdims=True), axis=-1)
        logits_BV = jnp.where(logits_BV < cutoff_B1, -jnp.inf, logits_BV)
    return logits_BV


def pick(key, logits_BV, *, temperature=1.0, top_k=0, top_p=1.0, skip_ids=()):
    """Next tokens [B]: a draw from the filtered distribution, or argmax when temperature is 0."""
    filtered = filter_logits(logits_BV, temperature=temperature, top_k=top_k, top_p=top_p,
                             skip_ids=skip_ids)
    if temperature == 0.0:
        return jnp.argmax(filtered, axis=-1)
    return jax.random.categorical(key, filtered, axis=-1)


def prime(params, cfg, carry, prompt_BT):
    """Run the prompt [B, T] through the model: (logits [B, V] for the next token, carry)."""
    logits_BTV, carry = model.forward(params, cfg, carry, prompt_BT)
    return logits_BTV[:, -1], carry


@functools.partial(jax.jit, static_argnames=("cfg", "length", "temperature", "top_k", "top_p",
                                             "skip_ids"))
def sample(params, cfg, carry, key, prompt_BT, *, length, temperature=1.0, top_k=0, top_p=1.0,
           skip_ids=()):
    """Continue each row of ``prompt_BT`` by ``length`` sampled tokens: ([B, length], carry)."""
    logits_BV, carry = prime(params, cfg, carry, prompt_BT)

    def step(state, k):
        logits_BV, carry = state
        tok_B = pick(k, logits_BV, temperature=temperature, top_k=top_k, top_p=top_p,
                     skip_ids=skip_ids)
        logits_B1V, carry = model.forward(params, cfg, carry, tok_B[:, None])
        return (logits_B1V[:, 0], carry), tok_B

    (_, carry), toks_TB = jax.lax.scan(step, (logits_BV, carry), jax.random.split(key, length))
    return toks_TB.T, carry


@functools.partial(jax.jit, static_argnames="cfg")
def log_prob(params, cfg, carry, tokens_BT):
    """Natural-log probability of each next token: ([B, T-1] for tokens[:, 1:], carry).

    The carry returned has read tokens[:, :-1], so scoring a long text in
    pieces that overlap by one token gives the same numbers as one piece.
    """
    ce_BT, carry = model.token_losses(params, cfg, carry, tokens_BT[:, :-1], tokens_BT[:, 1:])
    return -ce_BT, carry


def prompt_ids(prompt, vocab, level):
    """Ids of a prompt (``Vocab.ids``); a word-level prompt starts after an <eos>, as
    sentences do in training."""
    tokens = list(prompt) if level == "char" else [tokenizer.EOS] + prompt.split()
    if not tokens:  # an empty char-level prompt starts after a newline, or at token 0
        tokens = ["\n"] if "\n" in vocab.index else [vocab.words[0]]
    ids = vocab.ids(tokens, missing=-1)
    if (ids < 0).any():
        unknown = sorted({t for t, i in zip(tokens, ids) if i < 0})
        raise ValueError(f"prompt has tokens that are not in the vocabulary, which has no "
                         f"{tokenizer.UNK}: {', '.join(map(repr, unknown))}; rephrase the prompt")
    return ids.tolist()


def detokenize(ids, vocab, level):
    words = [vocab.words[i] for i in ids]
    if level == "char":
        return "".join(words)
    return " ".join(words).replace(f" {tokenizer.EOS} ", "\n").replace(tokenizer.EOS, "\n")


def generate_texts(run, prompt, *, length, seed=0, num_samples=1, skip=(), temperature=1.0,
                   top_k=0, top_p=1.0):
    """Prompt plus ``length`` sampled tokens, for each of ``num_samples`` samples."""
    level = run.level
    ids = prompt_ids(prompt, run.vocab, level)
    skip_ids = tuple(sorted(run.vocab.index[t] for t in skip if t in run.vocab.index))
    prompt_BT = jnp.tile(jnp.asarray(ids, jnp.int32)[None], (num_samples, 1))
    toks, _ = sample(run.params, run.model_cfg, model.init_carry(run.model_cfg, num_samples),
                     jax.random.key(seed), prompt_BT, length=length, temperature=temperature,
                     top_k=top_k, top_p=top_p, skip_ids=skip_ids)
    shown = ids[1:] if level == "word" else ids  # the leading <eos> is context, not text
    return [detokenize(shown + list(map(int, row)), run.vocab, level) for row in np.asarray(toks)]


def score_text(run, text, *, per="line", source="text"):
    """JSON-ready records: one per line (or one for the whole text), then a total.

    Per line, the state starts fresh after an <eos> and every token of the line,
    its <eos> included, is scored. Per text, the text is one stream as in
    ``jax-rnnlm eval``: every token after the first is scored. A text with
    nothing to score is a ValueError.
    """
    level = run.level
    ids_of = lambda tokens: data.token_ids(tokens, run.vocab, source=source, text=text,
                                           level=level)
    if per == "text":
        lines = [(None, ids_of(tokenizer.tokenize(text, level)))]
    else:
        lines = [(line, ids_of([tokenizer.EOS] + tokenizer.tokenize(line + "\n", level)
                               if level == "word" else list(line + "\n")))
                 for line in text.splitlines() if line.strip()]
    if sum(max(len(ids) - 1, 0) for _, ids in lines) == 0:
        raise ValueError(f"{source}: nothing to score (it needs at least one line "
                         f"with a token, or two tokens with --per text)")
    total_lp, total_n = 0.0, 0
    for line, ids in lines:
        lp = token_log_probs(run.params, run.model_cfg, ids)
        total_lp, total_n = total_lp + float(lp.sum()), total_n + len(lp)
        if line is not None:
            yield {"text": line, "tokens": len(lp), "log_prob": float(lp.sum()),
                   "ppl": math.exp(-float(lp.mean())), "token_log_probs": lp.round(4).tolist()}
    yield {"total_tokens": total_n, "log_prob": total_lp, "ppl": math.exp(-total_lp / total_n)}


def token_log_probs(params, cfg, ids, bucket=64):
    """Log-probabilities [M - 1] of ids[1:] (M ids), padded to a multiple of ``bucket`` so
    that texts of similar length share one compiled function (padding sits after the
    scored tokens of a causal model, so it changes none of them)."""
    n = len(ids)
    padded = np.zeros(-(-n // bucket) * bucket, np.int32)
    padded[:n] = ids
    lp, _ = log_prob(params, cfg, model.init_carry(cfg, 1), jnp.asarray(padded)[None])
    return np.asarray(lp[0, : n - 1], np.float64)
