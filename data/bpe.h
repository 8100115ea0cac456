/* bpe.h - BPE tokenizers: GPT-2's byte-level BPE (vocab.json + merges.txt), the
 * one GPT-2, OPT and RoBERTa share, each with its own vocab.json id order; and
 * Hugging Face tokenizer.json files of byte-level BPE (other split regexes) or
 * SentencePiece-style BPE (see bpe_load_tokenizer_json).
 *
 * Encoding splits text with GPT-2's pre-tokenizer regex
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * (implemented by hand over UTF-8 code points, classes from unicode_classes.h),
 * maps each piece's bytes to token ids and applies merges lowest rank first,
 * merging every occurrence of the best pair left to right before picking the
 * next, exactly as OpenAI's encoder.py and Hugging Face's GPT2Tokenizer do.
 * Input is bytes, not necessarily valid UTF-8: each byte of an invalid sequence
 * counts as one code point of class "other", and decode(encode(x)) == x for
 * every byte string x.
 *
 * Leaves out: recognising special tokens inside text ("<|endoftext|>" in the
 * text is encoded as ordinary characters; callers add BOS/EOS/PAD ids from
 * the special ids below), added_tokens.json, Unigram and WordPiece models,
 * normalization beyond the forms below, truncation and padding.
 *
 * File rules (bpe_load):
 * - vocab.json: a JSON object mapping token strings (in the byte-level
 *   alphabet, e.g. "Ġgreat") to ids; ids are integers in [0, BPE_MAX_ID),
 *   unique, in any order, not necessarily dense.  All 256 single-byte tokens
 *   must be present.  A token with characters outside the byte-level
 *   alphabet is kept as a literal (decodes to its UTF-8 text, never produced
 *   by encode).
 * - merges.txt: an optional "#version..." first line, then one merge per line,
 *   "a b" (exactly one space); blank lines and a trailing '\r' are ignored.
 *   Rank = order of the merge lines.  A line that is not two parts, or whose
 *   parts or concatenation are not in vocab.json, is an error naming the file
 *   and line (as Hugging Face's tokenizers library does: a skipped merge would
 *   silently tokenize differently from the reference).  A repeated pair takes
 *   the rank of its last line, like encoder.py's dict().
 *
 * Ownership: bpe_load fills a caller-provided struct and owns everything it
 * allocates until bpe_free.  Pointers returned by bpe_id_to_token point into
 * the tokenizer and live until bpe_free.  The *_alloc functions return
 * malloc'd buffers that the caller frees with free().
 *
 * Threads: after bpe_load the tokenizer is read-only, so any number of threads
 * may encode, decode and look up concurrently; each call uses its own scratch
 * (and, for texts of 2 KB or more, its own small cache of recent words).
 */
#ifndef HELENE_BPE_H
#define HELENE_BPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define BPE_MAX_ID 10000000 /* ids must be below this */

typedef struct bpe_merge {
    uint64_t pair;   /* (left id << 32) | right id; UINT64_MAX = empty slot */
    int32_t rank;    /* line order in merges.txt, 0 = merged first */
    int32_t result;  /* id of the concatenation */
} bpe_merge;

typedef struct bpe {
    /* Special token ids, -1 when vocab.json lacks them.  GPT-2 has only
     * <|endoftext|>; OPT and RoBERTa have <s>=0, <pad>=1, </s>=2, <unk>=3,
     * RoBERTa also <mask> (50264). */
    int32_t id_s;         /* "<s>" */
    int32_t id_slash_s;   /* "</s>" */
    int32_t id_pad;       /* "<pad>" */
    int32_t id_unk;       /* "<unk>" */
    int32_t id_endoftext; /* "<|endoftext|>" */
    int32_t id_mask;      /* "<mask>" (RoBERTa) */

    /* Everything below is private to bpe.c. */
    int32_t n_ids;        /* V = max id + 1 */
    int32_t n_tokens;     /* entries in vocab.json (<= V) */
    int32_t n_merges;     /* distinct merge pairs */
    char *pool;           /* token bytes, all tokens back to back */
    uint32_t *tok_off;    /* [V] offset of id's bytes in pool */
    uint32_t *tok_len;    /* [V] length, UINT32_MAX for ids not in vocab.json */
    int32_t *tok_table;   /* [tok_cap] open addressing, bytes -> id; -1 = empty */
    uint32_t tok_cap;     /* power of two */
    bpe_merge *merges;    /* [merge_cap] open addressing, pair -> merge */
    uint32_t merge_cap;   /* power of two */
    int32_t byte_id[256]; /* id of each single-byte token */
    int32_t pretok;       /* bpe_pretok: which pre-tokenizer regex splits text */
    int32_t prepend_id;   /* tokenizer.json: the special token its post-processor puts
                             before every text (Llama 3's <|begin_of_text|>), or -1 */
    bool ignore_merges;   /* tokenizer.json (Llama 3): a piece that is a token as a
                             whole is that token, whatever the merges would make */
    /* SentencePiece-style BPE (Llama 2, TinyLlama, Mistral v0.1-0.3): tokens are
     * UTF-8 strings with "▁" for spaces; text becomes "▁" + text with every
     * space replaced, one piece; a character without a token becomes its
     * bytes' <0xXX> tokens (byte fallback) */
    bool spm;
    bool spm_metaspace;       /* Metaspace (prepend "first"): no "▁" is prepended to a
                                 text that already starts with a space */
    int32_t fallback_id[256]; /* spm: the id of <0xXX>, or -1 */
    int32_t unk_id;           /* spm: model.unk_token's id, or -1 */
} bpe;

/* The pre-tokenizer regexes a byte-level BPE may use (tokenizer.json). */
typedef enum bpe_pretok {
    BPE_PRETOK_GPT2 = 0,   /* GPT-2's, above (also SmolLM's ByteLevel use_regex) */
    BPE_PRETOK_LLAMA3 = 1, /* Llama 3's Split regex: (?i:'s|'t|'re|'ve|'m|'ll|'d)|
                            * [^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
                            * \s*[\r\n]+|\s+(?!\S)|\s+ */
    BPE_PRETOK_QWEN2 = 2,  /* Qwen2's: the same with \p{N} one digit at a time */
} bpe_pretok;

/* Load a tokenizer.  On failure t is left freed (bpe_free is harmless) and
 * err names the file, and the line for merges.txt. */
hl_status bpe_load(bpe *t, const char *vocab_json_path, const char *merges_path, hl_err *err);

/* Where the pre-tokenizer piece that starts at text[p] ends (p < len), with
 * t's regex (exposed for tests). */
size_t bpe_pretok_end(const bpe *t, const char *text, size_t len, size_t p);

/* Load a Hugging Face tokenizer.json whose model is byte-level BPE (GPT-2,
 * SmolLM, Llama 3, Qwen2): model.vocab and model.merges (strings "a b" or
 * pairs ["a", "b"]), the added tokens (ids of their own, e.g.
 * <|begin_of_text|>; found with bpe_token_to_id), and a pre-tokenizer that is
 * ByteLevel with use_regex, or Split with Llama 3's or Qwen2's regex followed
 * by ByteLevel without; model.ignore_merges; an NFC normalizer (Qwen2's),
 * taken as the identity: text is expected in NFC already, as nearly all text
 * is (decomposed accents would tokenize differently from Hugging Face's).
 * SentencePiece-style BPE (byte_fallback) in both layouts HF writes: the
 * normalizer Sequence [Prepend "▁", Replace " " -> "▁"] without a
 * pre-tokenizer (Llama 2), or a Metaspace pre-tokenizer ("▁", prepend
 * first, no split) without a normalizer.  Anything else (a Unigram or
 * WordPiece model, another normalizer or regex) is refused naming the
 * field. */
hl_status bpe_load_tokenizer_json(bpe *t, const char *path, hl_err *err);
void bpe_free(bpe *t);

/* Encode len bytes of text (NUL bytes are ordinary bytes) into ids[0..cap).
 * *n_out is always set to the number of ids the text needs.  If that exceeds
 * cap, the first cap ids are written and HL_ERR_INVALID is returned, except
 * when ids is NULL, which asks for the count alone (returns HL_OK). */
hl_status bpe_encode(const bpe *t, const char *text, size_t len, int32_t *ids, size_t cap,
                     size_t *n_out, hl_err *err);
/* Same, into a malloc'd array (*ids_out, caller frees; NULL when *n_out is 0). */
hl_status bpe_encode_alloc(const bpe *t, const char *text, size_t len, int32_t **ids_out,
                           size_t *n_out, hl_err *err);

/* Decode n ids into out[0..cap): the bytes plus a terminating NUL.  *len_out
 * is always set to the byte count without the NUL; if cap < *len_out + 1
 * nothing useful is written and HL_ERR_INVALID is returned.  An id not in
 * vocab.json is HL_ERR_INVALID naming the id and its position. */
hl_status bpe_decode(const bpe *t, const int32_t *ids, size_t n, char *out, size_t cap,
                     size_t *len_out, hl_err *err);
/* Same, into a malloc'd NUL-terminated buffer (*out, caller frees). */
hl_status bpe_decode_alloc(const bpe *t, const int32_t *ids, size_t n, char **out,
                           size_t *len_out, hl_err *err);

/* Id of the token whose bytes are exactly bytes[0..len), e.g. " great"; -1 if
 * none.  For label words: check the result is not -1 to be sure the word is a
 * single token. */
int32_t bpe_token_to_id(const bpe *t, const char *bytes, size_t len);

/* GPT-2's byte-level alphabet (bytes_to_unicode): the code point byte b
 * (0..255) is written as in vocab.json: printable Latin-1 bytes stand for
 * themselves, the other 68 map to U+0100 upwards in byte order. */
int bpe_byte_codepoint(int b);
/* Bytes of token id (not NUL-terminated; *len set), or NULL if unknown. */
const char *bpe_id_to_token(const bpe *t, int32_t id, size_t *len);

/* V = max id + 1: the number of embedding rows the ids index (50257 for
 * GPT-2).  A model's vocab_size may be larger (padding rows). */
int32_t bpe_vocab_size(const bpe *t);

#endif
