/* cli.h - shared helpers of the danu command-line tool. */
#ifndef DANU_CLI_H
#define DANU_CLI_H
#include <stdio.h>
#include <stdint.h>
#include "danu.h"
#include "common/attr.h"   /* DN_PRINTF: MinGW's C99 printf is checked as gnu_printf */

/* Exit codes (documented in README): */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

extern const unsigned char danu_cli_tokenizer_model[];
extern const size_t danu_cli_tokenizer_model_len;

extern int cli_verbose;
/* The command running ("run", "chat", ...): every message is "danu CMD: ...". */
extern const char *cli_cmd;
/* Print "danu CMD: message" to stderr. */
void cli_err(const char *fmt, ...) DN_PRINTF(1, 2);

/* Strict numbers: the whole string, within min..max, else "danu CMD: FLAG
 * takes ..." is printed and -1 returned. */
int cli_parse_int(const char *flag, const char *v, double min, double max, int64_t *out);
/* "1,2,4": each value an integer within min..max (as cli_parse_int), at most
 * cap of them; returns how many, or -1 (printed, naming flag). */
int cli_parse_int_list(const char *flag, const char *v, double min, double max, int64_t *out, int cap);
int cli_parse_float(const char *flag, const char *v, double min, double max, double *out);
/* The value of an option key, checked against danu_param_bounds. */
int cli_parse_opt(const char *flag, const char *v, danu_param key, double *out);

/* Flag groups: load options, context options, sampling options; CLI_KV:
 * the KV cache's type alone (for commands that make contexts of their own
 * size, such as bench). */
enum { CLI_LOAD = 1, CLI_CTX = 2, CLI_SAMPLE = 4, CLI_KV = 8 };
/* Consume an option flag of those groups at argv[*i] (and its value): 1
 * done, 0 not one of them, -1 bad value (printed). */
int cli_flag(int argc, char **argv, int *i, int groups);
/* The word a word flag takes for value, the one list of them (e.g.
 * cli_flag_word("--kv-type", DANU_KV_Q8_0) is "q8_0"); NULL when the flag
 * takes no such word. In a static buffer, until the next call. */
const char *cli_flag_word(const char *flag, int value);
/* Record / look up an option value (flags, generation_config.json). */
void cli_set_opt(danu_param key, int groups, double v, const char *src);
int cli_opt_given(danu_param key, double *v);
/* Set the recorded options of those groups on o; 0, or EXIT_FAIL (printed). */
int cli_apply(danu_options *o, int groups);
/* Sampling values of MODEL/generation_config.json (HF directories) become
 * defaults where no flag gave them; with -v says what applies. Returns how
 * many were taken. */
int cli_generation_config(const char *model);
#define CLI_LOAD_HELP \
    "  --repack auto|on|off  copy weights into the faster interleaved layout at load\n" \
    "                    (auto, the default: where the kernels gain, for mapped files)\n" \
    "  --fast-bf16       bf16 weights times bf16-rounded activations: faster prompts,\n" \
    "                    less exact logits (repacked matrices on AVX-512 only)\n" \
    "  --sliding-window N  attention window (-1 the model's, the default; 0 none)\n" \
    "  --isa auto|scalar|avx2|avx2vnni|avx512|neon  cap the kernels (default auto)\n" \
    "  --no-mmap         read the file into memory instead of mapping it\n" \
    "  --validate        scan the weights for NaN/Inf at load\n" \
    "  -t N              threads (0, the default: all cores)\n"
#define CLI_CTX_HELP \
    "  -c N              context size (0, the default: the model's)\n" \
    "  -b N              prompt tokens per batch (default 512)\n" \
    "  --kv-type f16|f32|q8_0  KV cache type (default f16; q8_0: 8-bit, about half the\n" \
    "                    memory; --kv-f32 = --kv-type f32)\n" \
    "  --kv-huge-pages on|off  ask for huge pages under the KV cache (default on:\n" \
    "                    faster long contexts, the whole cache resident at once)\n" \
    "  --on-full error|shift  when the context is full: stop, or drop the older half\n" \
    "                    of the tokens after the first --n-keep N (default error)\n"

/* Print "danu CMD: detail" (the library's danu_last_error(), which names what
 * failed and where; "what: status text" when there is none) to stderr and
 * return EXIT_FAIL. */
int cli_fail(const char *what, danu_status s);
/* Options with the CLI's log callback (stderr with -v) and a progress bar on a tty. */
danu_options *cli_options(int progress);
/* Load a model, with a progress bar when stderr is a terminal. NULL on error (printed). */
danu_model *cli_load(const char *path, danu_options *o);
/* The bytes of a file ("-": stdin), NUL-terminated, malloc'd; NULL on error. */
char *cli_read_all(const char *path, size_t *len);
/* Encode text (flags without ADD_BOS) and with add_bos put BOS in front
 * unless the text already starts with it (--special "<s>..."). *out malloc'd. */
danu_status cli_encode(const danu_tokenizer *tok, const char *text, size_t len, uint32_t flags, int add_bos,
                       danu_token **out, size_t *n_out);
/* Parse "1 2 3" or "1,2,3" into ids; returns count or -1. *out malloc'd. */
long cli_parse_ids(const char *s, danu_token **out);
/* The default demo model: a small synthetic model in the user's cache
 * directory, generated on first use. Returns a malloc'd path or NULL. */
char *cli_default_model(void);
/* Peak resident set size of this process, in bytes. */
uint64_t cli_peak_rss(void);
uint64_t cli_current_rss(void);
double cli_now(void);
int cli_is_flag(const char *arg, const char *s, const char *l);

/* Constrained output (issue 18): --grammar-file F [--grammar-root NAME],
 * --json-schema F [--schema-spaces], --choice A (repeatable), --choice-file F
 * (one per line); run and bench take them. */
typedef struct cli_cons {
    const char *grammar_file, *root, *schema_file, *choice_file;
    const char *args[256];   /* the --choice values */
    size_t n_args;
    int spaces;
    char *text;              /* cli_cons_load: the file's bytes */
    size_t len;
    const char **list;       /* cli_cons_load: every choice (flags, then the file's lines) */
    size_t n_list;
} cli_cons;
#define CLI_CONS_HELP \
    "  --grammar-file F  the output follows the GBNF grammar in F (llama.cpp's format);\n" \
    "                    --grammar-root NAME starts at rule NAME instead of root\n" \
    "  --json-schema F   the output is one JSON value valid under the JSON Schema in F\n" \
    "                    (compact; --schema-spaces allows whitespace between tokens)\n" \
    "  --choice TEXT     the output is exactly one of the --choice values (repeat it);\n" \
    "  --choice-file F   or of the lines of F. These three are mutually exclusive; the\n" \
    "                    stop reason is then \"grammar\" once the text is complete\n"
/* Consume a constraint flag at argv[*i]: 1 done, 0 not one, -1 bad (printed). */
int cli_cons_flag(int argc, char **argv, int *i, cli_cons *cc);
int cli_cons_given(const cli_cons *cc);
/* Mutually exclusive kinds, --grammar-root only with a grammar: 0 or -1 (printed). */
int cli_cons_check(const cli_cons *cc);
/* Read the file (and split the choices): 0 or EXIT_FAIL (printed). */
int cli_cons_load(cli_cons *cc);
/* Compile the loaded constraint (*out NULL when none is given): 0, or
 * EXIT_FAIL with "danu CMD: FILE: detail" printed (line and column of a
 * syntax error). */
int cli_cons_compile(const danu_tokenizer *tok, const cli_cons *cc, danu_constraint **out);
danu_status cli_cons_compile_quiet(const danu_tokenizer *tok, const cli_cons *cc, danu_constraint **out);
void cli_cons_free(cli_cons *cc);
/* "length", "eos", ..., "grammar" */
const char *cli_stop_name(int32_t why);
/* danu bench with a constraint flag (cmd_grammar.c). */
int cli_bench_grammar(danu_model *m, cli_cons *cc, const int *threads, int nt, int64_t tg, int64_t reps);

int cmd_info(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_grammar(int argc, char **argv);
#endif
