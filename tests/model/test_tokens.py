"""embedgrid.model.tokens: cut token ids equal the tokenizer's own truncated call, with and without the prefix cut."""
from __future__ import annotations

import random

import pytest

from embedgrid.model.tokens import CHARS_PER_TOKEN, SPLIT_PATTERNS, cuttable, prefix_cut, text_token_ids

PIECES = ["word", "Words", "x", "the", "'s", "'ll", "'D", "don't", "42", "1234567", "3.14", "--", "!!", "?", ",",
          "(a)", "naïve", "café", "東京", "😀", "<|endoftext|>", " ", "  ", "   ", "\n", "\n\n", " \n", "\t",
          "\r\n", "e-mail", "U.S.A.", "http://x.y/z?q=1", "ǅ", "İ"]


def adversarial_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        parts = [rng.choice(PIECES) + rng.choice(["", " ", " ", "  ", "\n"]) for _ in range(rng.randint(5, 400))]
        texts.append("".join(parts))
    return texts


def reference(tok, texts, limit):
    return tok(texts, add_special_tokens=False, truncation=True, max_length=limit).input_ids


def fast(tok):
    tok(["reset"], add_special_tokens=False)  # a plain call leaves the backend without truncation set
    return tok


@pytest.fixture(scope="module")
def smollm2():
    from embedgrid.assets import smollm2_tokenizer_dir
    from embedgrid.model.backbone import load_tokenizer

    return load_tokenizer(smollm2_tokenizer_dir())


def trained_tokenizer(pre_tokenizer, normalizer=None):
    """A small BPE trained here on WordNet glosses, with the given pre-tokenizer (no download)."""
    from tokenizers import Tokenizer, decoders, models, trainers
    from transformers import PreTrainedTokenizerFast

    from embedgrid.data.wordnet import load_synsets

    glosses = [s.definition for s in list(load_synsets().values())[:3000]]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.normalizer = normalizer
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(glosses + adversarial_texts(200, seed=9), trainers.BpeTrainer(
        vocab_size=800, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=__import__("tokenizers").pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def qwen2_style():
    from tokenizers import Regex, pre_tokenizers

    pattern = sorted(SPLIT_PATTERNS)[0]
    return trained_tokenizer(pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]))


@pytest.mark.parametrize("limit", [4, 9, 31, 127])
def test_cut_ids_equal_the_truncated_tokenizer_call_on_adversarial_text(smollm2, limit):
    tok, texts = fast(smollm2), adversarial_texts(400)
    assert cuttable(tok.backend_tokenizer)
    assert sum(prefix_cut(t, limit) is not None for t in texts) > 50  # the cut really happens
    assert text_token_ids(tok, texts, limit) == reference(tok, texts, limit)


@pytest.mark.parametrize("limit", [16, 128, 512])
def test_cut_ids_equal_the_truncated_tokenizer_call_on_real_documents(smollm2, limit):
    from benchmarks.encode import corpus

    tok, texts = fast(smollm2), corpus(1500)
    assert limit == 512 or sum(prefix_cut(t, limit) is not None for t in texts) > 100
    assert text_token_ids(tok, texts, limit) == reference(tok, texts, limit)


def test_a_cl100k_style_split_tokenizer_is_cut_exactly():
    tok = fast(qwen2_style())
    texts = adversarial_texts(300, seed=1)
    assert cuttable(tok.backend_tokenizer)
    for limit in (5, 17, 60):
        assert text_token_ids(tok, texts, limit) == reference(tok, texts, limit)


def test_other_tokenizers_are_never_cut_and_stay_exact():
    from tokenizers import normalizers, pre_tokenizers

    metaspace = fast(trained_tokenizer(pre_tokenizers.Metaspace()))
    lowercased = fast(trained_tokenizer(pre_tokenizers.ByteLevel(use_regex=True), normalizers.Lowercase()))
    texts = adversarial_texts(100, seed=2)
    for tok in (metaspace, lowercased):
        assert not cuttable(tok.backend_tokenizer)
        assert text_token_ids(tok, texts, 7) == reference(tok, texts, 7)


def test_prefix_cut_is_an_inner_space_of_long_texts_only():
    assert prefix_cut("short text", 4) is None
    assert prefix_cut("x" * 100, 4) is None  # no space at all
    text = "ab " * 40
    cut = prefix_cut(text, 4)
    assert cut is not None and text[cut] == " " and text[cut - 1] != " " and text[cut + 1] != " "
    assert 4 * CHARS_PER_TOKEN // 2 <= cut < 4 * CHARS_PER_TOKEN
    assert prefix_cut("a" + "  " * 50, 4) is None  # only double spaces: no space between two non-spaces


def test_a_cut_that_keeps_too_few_tokens_is_tokenized_whole(smollm2):
    """A text whose first limit x CHARS_PER_TOKEN characters hold fewer than limit tokens is tokenized whole."""
    tok = fast(smollm2)
    long_words = ["responsibility", "international", "understanding", "environmental", "administration"]
    text = "Some " + " ".join(long_words * 8) + " and short tail words that count"  # ~14 characters per token
    limit = 40
    assert prefix_cut(text, limit) is not None
    assert len(tok(text[:prefix_cut(text, limit)], add_special_tokens=False).input_ids) < limit
    assert text_token_ids(tok, [text], limit) == reference(tok, [text], limit)
