"""The seed's other uses of a recurrent network, on padded batches of variable-length
sequences, built on the language model's core (``cells``, ``layers``, ``precision``,
``data.Vocab``, ``optim.make_optimizer``):

  many-to-one    a sequence classifier (SMS spam)          heads.classifier_*
  many-to-many   a token tagger (CoNLL-2003 POS, NER)      heads.tagger_*
  bidirectional  a forward and a backward masked scan      encoder.bidirectional
  seq2seq        encoder-decoder (peeky, attention), and   seq2seq
                 one-to-many decoding from a vector

Modules, one concept each:

  encoder    EncoderConfig; embeddings of F token features + a masked (bi)recurrent stack
  heads      HeadConfig; classifier and tagger logits and losses over the encoder
  seq2seq    Seq2seqConfig; encode_source, decoder_step, loss, greedy and beam decoding
  fit        FitConfig; pad_batch, length-sorted batches, the jitted step, the epoch loop
  datasets   loaders and splits: SMS Spam, CoNLL-2003, the textbook's addition / date
  metrics    accuracy, precision/recall/F1, CoNLL entity F1 (IOB1)

Every model function follows the core's convention ``f(params, cfg, ..., key=None)``:
``cfg`` is a frozen dataclass (static under jit), the matmul precision is its
``dtype``, and dropout applies exactly when a PRNG ``key`` is given. Shape letters
are the package's (see ``jax_rnnlm``'s docstring).
"""
