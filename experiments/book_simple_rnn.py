"""The numpy book's SimpleRnnlm toy: a tanh RNN (D = H = 100) on the first 1000
words of PTB train, B = 10, T = 5, SGD lr 0.1, 100 epochs. Train perplexity falls
from about the vocabulary size (418) to about 5 (the book reaches 5.3)."""
import argparse
import json

from jax_rnnlm import corpora, data, tokenizer, train
from jax_rnnlm.config import ModelConfig, TrainConfig


def toy_corpus(n_words=1000):
    text = tokenizer.read_text(data.split_paths(corpora.fetch("ptb"))["train"])
    tokens = tokenizer.tokenize(text, "word")[:n_words]
    vocab = data.Vocab.from_tokens(tokens)
    ids = data.token_ids(tokens, vocab)
    # The toy measures how well it fits its own text: all three splits are the 1000 words.
    return data.Corpus(vocab, ids, ids, ids, source=f"first {n_words} words of PTB train")


def run(workdir="runs/book_simple_rnn", epochs=100):
    corpus = toy_corpus()
    model_cfg = ModelConfig(vocab_size=len(corpus.vocab), embed_dim=100, hidden_dim=100,
                            cell="rnn", init_scale=0.173)
    train_cfg = TrainConfig(batch_size=10, bptt=5, optimizer="sgd", lr=0.1, clip=1e3,
                            epochs=epochs, eval_batch_size=10, windows_per_call=19,
                            log_every=19)
    return train.fit(model_cfg, train_cfg, corpus, workdir, echo=lambda s: None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?", default="runs/book_simple_rnn")
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    print(json.dumps(run(args.workdir, args.epochs)))
