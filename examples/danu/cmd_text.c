/* cmd_text.c - `danu tokenize` and `danu detokenize`. MODEL is anything
 * `danu` loads, or a bare tokenizer.model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

typedef struct tok_src { danu_model *m; danu_tokenizer *own; const danu_tokenizer *t; } tok_src;

static int open_tokenizer(const char *path, tok_src *ts)
{
    memset(ts, 0, sizeof *ts);
    size_t n = strlen(path);
    danu_options *o = cli_options(0);
    if (!o) return cli_fail("options", DANU_ERR_NOMEM);
    if (n > 6 && !strcmp(path + n - 6, ".model")) {
        danu_status s = danu_tokenizer_load(path, o, &ts->own);
        danu_options_free(o);
        if (s != DANU_OK) return cli_fail(path, s);
        ts->t = ts->own;
        return 0;
    }
    danu_status s = danu_options_set_int(o, DANU_OPT_REPACK, DANU_REPACK_OFF);   /* only the tokenizer is used */
    if (s != DANU_OK) { danu_options_free(o); return cli_fail("options", s); }
    ts->m = cli_load(path, o);
    danu_options_free(o);
    if (!ts->m) return EXIT_FAIL;
    ts->t = danu_model_tokenizer(ts->m);
    if (!ts->t) { cli_err("%s has no tokenizer", path); danu_model_free(ts->m); return EXIT_FAIL; }
    return 0;
}

static void close_tokenizer(tok_src *ts)
{
    danu_tokenizer_free(ts->own);
    danu_model_free(ts->m);
}

int cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL, *text = NULL, *file = NULL;
    uint32_t flags = DANU_TOKENIZE_ADD_BOS;
    for (int i = 1; i < argc; i++) {
        if (cli_is_flag(argv[i], "-h", "--help")) {
            printf("usage: danu tokenize -m MODEL [--no-bos] [--special] (-p TEXT | -f FILE)\n"
                   "  Prints the token ids on one line, separated by spaces. MODEL is a model path or a\n"
                   "  bare tokenizer.model. --special turns <s>, </s>, <unk> in the text into their ids.\n");
            return 0;
        } else if (cli_is_flag(argv[i], "-m", "--model") && i + 1 < argc) model = argv[++i];
        else if (cli_is_flag(argv[i], "-p", "--prompt") && i + 1 < argc) text = argv[++i];
        else if (cli_is_flag(argv[i], "-f", "--file") && i + 1 < argc) file = argv[++i];
        else if (cli_is_flag(argv[i], NULL, "--no-bos")) flags &= ~(uint32_t)DANU_TOKENIZE_ADD_BOS;
        else if (cli_is_flag(argv[i], NULL, "--special")) flags |= DANU_TOKENIZE_PARSE_SPECIAL;
        else if (cli_is_flag(argv[i], "-v", "--verbose")) continue;
        else { cli_err("unexpected argument %s", argv[i]); return EXIT_USAGE; }
    }
    if (!model || (!text == !file)) { cli_err("need -m MODEL and one of -p / -f"); return EXIT_USAGE; }
    size_t len = 0;
    char *buf = NULL;
    if (file) {
        buf = cli_read_all(file, &len);
        if (!buf) { cli_err("cannot read %s", file); return EXIT_FAIL; }
        text = buf;
    } else len = strlen(text);
    tok_src ts;
    int rc = open_tokenizer(model, &ts);
    if (rc) { free(buf); return rc; }
    size_t n = 0;
    danu_token *ids = NULL;
    danu_status s = cli_encode(ts.t, text, len, flags, (flags & DANU_TOKENIZE_ADD_BOS) != 0, &ids, &n);
    if (s != DANU_OK) rc = cli_fail("tokenize", s);
    else {
        for (size_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
        printf("\n");
    }
    free(ids);
    free(buf);
    close_tokenizer(&ts);
    return rc;
}

int cmd_detokenize(int argc, char **argv)
{
    const char *model = NULL, *text = NULL, *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_flag(argv[i], "-h", "--help")) {
            printf("usage: danu detokenize -m MODEL (-p \"IDS\" | -f FILE)\n  Prints the text of the ids.\n");
            return 0;
        } else if (cli_is_flag(argv[i], "-m", "--model") && i + 1 < argc) model = argv[++i];
        else if (cli_is_flag(argv[i], "-p", "--prompt") && i + 1 < argc) text = argv[++i];
        else if (cli_is_flag(argv[i], "-f", "--file") && i + 1 < argc) file = argv[++i];
        else if (cli_is_flag(argv[i], "-v", "--verbose")) continue;
        else { cli_err("unexpected argument %s", argv[i]); return EXIT_USAGE; }
    }
    if (!model || (!text == !file)) { cli_err("need -m MODEL and one of -p / -f"); return EXIT_USAGE; }
    size_t len;
    char *buf = NULL;
    if (file) {
        buf = cli_read_all(file, &len);
        if (!buf) { cli_err("cannot read %s", file); return EXIT_FAIL; }
        text = buf;
    }
    danu_token *ids = NULL;
    long n = cli_parse_ids(text, &ids);
    free(buf);
    if (n < 0) { cli_err("bad id list"); return EXIT_USAGE; }
    tok_src ts;
    int rc = open_tokenizer(model, &ts);
    if (rc) { free(ids); return rc; }
    size_t out_len = 0;
    danu_status s = danu_tokenizer_decode(ts.t, ids, (size_t)n, NULL, 0, &out_len);
    char *out = NULL;
    if (s == DANU_OK || s == DANU_ERR_BUFFER_TOO_SMALL) {
        out = malloc(out_len + 1);
        s = danu_tokenizer_decode(ts.t, ids, (size_t)n, out, out_len + 1, &out_len);
    }
    if (s != DANU_OK) rc = cli_fail("detokenize", s);
    else { fwrite(out, 1, out_len, stdout); printf("\n"); }
    free(out);
    free(ids);
    close_tokenizer(&ts);
    return rc;
}
