/* cmd_quantize.c - `danu quantize INPUT OUTPUT.gguf --type TYPE`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "cli.h"
#include "common/os.h"

static const char *const quant_types[] = { "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1",
                                           "q4_k", "q5_k", "q6_k", "q4_k_m", "q5_k_m" };

static void quantize_usage(FILE *f)
{
    fprintf(f, "usage: danu quantize INPUT OUTPUT.gguf --type TYPE [-t THREADS] [-v]\n"
               "  INPUT: a Hugging Face model directory (config.json, tokenizer.model, safetensors)\n"
               "         or a GGUF file (requantized: its tensors are dequantized first).\n"
               "  TYPE:  f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k q4_k_m q5_k_m\n"
               "         (q4_k/q5_k are llama.cpp's Q4_K_S/Q5_K_S; the _m mixes give attn_v and\n"
               "         ffn_down of some layers q6_K; output.weight is q6_K in k and 4/5-bit mixes).\n"
               "  The file is laid out as llama.cpp's converter and llama-quantize write it.\n"
               "  It is written as OUTPUT.gguf.tmp and renamed when complete; OUTPUT must not exist.\n"
               "  -t N   threads (0, the default: all cores)\n");
}

int cmd_quantize(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *type = NULL;
    double threads = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_flag(argv[i], "-h", "--help")) { quantize_usage(stdout); return 0; }
        else if (cli_is_flag(argv[i], NULL, "--type") && i + 1 < argc) type = argv[++i];
        else if (cli_is_flag(argv[i], "-t", "--threads")) {
            const char *v = i + 1 < argc ? argv[++i] : NULL;
            if (cli_parse_opt("-t", v, DANU_OPT_N_THREADS, &threads)) return EXIT_USAGE;
        } else if (cli_is_flag(argv[i], "-v", "--verbose")) continue;
        else if (argv[i][0] != '-' && !in) in = argv[i];
        else if (argv[i][0] != '-' && !out) out = argv[i];
        else { cli_err("unexpected argument %s", argv[i]); quantize_usage(stderr); return EXIT_USAGE; }
    }
    if (!in || !out || !type) {
        cli_err("INPUT, OUTPUT and --type are required");
        quantize_usage(stderr);
        return EXIT_USAGE;
    }
    int known = 0;
    for (size_t i = 0; i < sizeof quant_types / sizeof quant_types[0]; i++) known |= !strcasecmp(type, quant_types[i]);
    if (!known) { cli_err("unknown --type %s", type); quantize_usage(stderr); return EXIT_USAGE; }
    danu_options *o = cli_options(1);
    if (!o) return EXIT_FAIL;
    danu_status s = danu_options_set_int(o, DANU_OPT_N_THREADS, (int64_t)threads);
    if (s != DANU_OK) { danu_options_free(o); return cli_fail("options", s); }
    double t0 = cli_now();
    s = danu_quantize(in, out, type, o);
    danu_options_free(o);
    if (s != DANU_OK) return cli_fail("quantize", s);
    uint64_t size = 0;
    double mb = dn_file_size(out, &size) == 0 ? (double)size / 1e6 : 0.0;
    cli_err("wrote %s (%s, %.1f MB) in %.1f s, peak RSS %.0f MB", out, type, mb,
            cli_now() - t0, cli_peak_rss() / 1e6);
    return 0;
}
