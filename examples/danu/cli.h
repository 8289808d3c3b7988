/* cli.h - shared helpers of the danu command-line tool. */
#ifndef DANU_CLI_H
#define DANU_CLI_H
#include <stdio.h>
#include <stdint.h>
#include "danu.h"

/* Exit codes (documented in README): */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

extern const unsigned char danu_cli_tokenizer_model[];
extern const size_t danu_cli_tokenizer_model_len;

extern int cli_verbose;
/* --repack auto|on|off of the loading commands: DANU_REPACK_*, or -2 when
 * not given (the library default applies). */
extern int cli_repack;
/* --fast-bf16 of the loading commands: DANU_OPT_FAST_BF16 = 1 when given */
extern int cli_fast_bf16;
/* Consume a load flag at argv[*i] (and its value): 1 done, 0 not a load
 * flag, -1 bad value (printed). */
int cli_load_flag(int argc, char **argv, int *i);
#define CLI_LOAD_HELP \
    "  --repack auto|on|off  copy weights into the faster interleaved layout at load\n" \
    "                    (auto, the default: where the kernels gain, for mapped files)\n" \
    "  --fast-bf16       bf16 weights times bf16-rounded activations: faster prompts,\n" \
    "                    less exact logits (repacked matrices on AVX-512 only)\n"

/* Print "danu: what: status text: detail" to stderr and return EXIT_FAIL. */
int cli_fail(const char *what, danu_status s);
/* Options with the CLI's log callback (stderr with -v) and a progress bar on a tty. */
danu_options *cli_options(int progress);
/* Load a model, with a progress bar when stderr is a terminal. NULL on error (printed). */
danu_model *cli_load(const char *path, danu_options *o);
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
#endif
