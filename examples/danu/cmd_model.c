/* cmd_model.c - `danu info` and `danu synth`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "cli.h"
#include "common/os.h"

int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    int tensors = 0, lf;
    for (int i = 1; i < argc; i++) {
        if (cli_is_flag(argv[i], "-h", "--help")) {
            printf("usage: danu info PATH [--tensors] [load options]\n  PATH: HF directory or .gguf file. Prints the architecture,\n"
                   "  format, tensor types and sizes, repacked matrices, load time and resident memory.\n"
                   CLI_LOAD_HELP);
            return 0;
        } else if (cli_is_flag(argv[i], NULL, "--tensors")) tensors = 1;
        else if ((lf = cli_flag(argc, argv, &i, CLI_LOAD)) != 0) { if (lf < 0) return EXIT_USAGE; }
        else if (cli_is_flag(argv[i], "-v", "--verbose")) continue;
        else if (cli_is_flag(argv[i], "-m", "--model") && i + 1 < argc) path = argv[++i];
        else if (argv[i][0] != '-' && !path) path = argv[i];
        else { cli_err("unexpected argument %s", argv[i]); return EXIT_USAGE; }
    }
    if (!path) { cli_err("PATH is required"); return EXIT_USAGE; }
    danu_options *o = cli_options(1);
    double t0 = cli_now();
    uint64_t rss0 = cli_current_rss();
    danu_model *m = cli_load(path, o);
    double dt = cli_now() - t0;
    danu_options_free(o);
    if (!m) return EXIT_FAIL;
    uint64_t rss1 = cli_current_rss();
    int64_t v[24] = { 0 };
    for (int k = DANU_INFO_VOCAB; k <= DANU_INFO_REPACKED_BYTES; k++) danu_model_get_int(m, k, &v[k]);
    double theta = 0, eps = 0;
    danu_model_get_float(m, DANU_INFO_ROPE_THETA, &theta);
    danu_model_get_float(m, DANU_INFO_RMS_EPS, &eps);
    static const char *isa[] = { "reference", "scalar", "avx2", "avx512", "neon", "avx2vnni" };
    printf("path            %s\n", path);
    printf("format          %s\n", v[DANU_INFO_FORMAT] == DANU_FORMAT_HF ? "HF directory (safetensors)" : "GGUF");
    printf("vocab           %lld\n", (long long)v[DANU_INFO_VOCAB]);
    printf("hidden          %lld\n", (long long)v[DANU_INFO_HIDDEN]);
    printf("layers          %lld\n", (long long)v[DANU_INFO_LAYERS]);
    printf("heads           %lld (kv heads %lld, head_dim %lld)\n", (long long)v[DANU_INFO_HEADS],
           (long long)v[DANU_INFO_KV_HEADS], (long long)v[DANU_INFO_HEAD_DIM]);
    printf("ffn             %lld\n", (long long)v[DANU_INFO_FFN]);
    printf("context length  %lld\n", (long long)v[DANU_INFO_CONTEXT_LENGTH]);
    printf("sliding window  %lld%s\n", (long long)v[DANU_INFO_SLIDING_WINDOW], v[DANU_INFO_SLIDING_WINDOW] ? "" : " (none)");
    printf("rope theta      %g\n", theta);
    printf("rms eps         %g\n", eps);
    printf("tied lm_head    %s\n", v[DANU_INFO_TIED_EMBEDDINGS] ? "yes" : "no");
    printf("bos / eos / unk %lld / %lld / %lld\n", (long long)v[DANU_INFO_BOS], (long long)v[DANU_INFO_EOS],
           (long long)v[DANU_INFO_UNK]);
    /* tensors by type */
    int64_t count[64] = { 0 };
    double bytes[64] = { 0 };
    for (int64_t i = 0; i < v[DANU_INFO_TENSOR_COUNT]; i++) {
        const char *name;
        int32_t type, nd;
        int64_t dims[4];
        danu_model_tensor(m, i, &name, &type, &nd, dims);
        double n = 1;
        for (int d = 0; d < nd; d++) n *= (double)dims[d];
        if (type >= 0 && type < 64) {
            count[type]++;
            static const double bits[64] = { [0] = 32, [1] = 16, [30] = 16, [2] = 4.5, [3] = 5, [6] = 5.5, [7] = 6,
                                             [8] = 8.5, [12] = 4.5, [13] = 5.5, [14] = 6.5625 };
            bytes[type] += n * bits[type] / 8;
        }
        if (tensors) {
            printf("  %-48s %-5s [", name, danu_type_name(type));
            for (int d = 0; d < nd; d++) printf("%s%lld", d ? ", " : "", (long long)dims[d]);
            printf("]\n");
        }
    }
    printf("tensors         %lld:", (long long)v[DANU_INFO_TENSOR_COUNT]);
    for (int t = 0; t < 64; t++)
        if (count[t]) printf(" %lld %s (%.1f MB)", (long long)count[t], danu_type_name(t), bytes[t] / 1e6);
    printf("\nweight bytes    %lld (%.2f GiB)\n", (long long)v[DANU_INFO_WEIGHT_BYTES],
           (double)v[DANU_INFO_WEIGHT_BYTES] / (1 << 30));
    printf("kernels         %s\n", v[DANU_INFO_ISA] >= 0 && v[DANU_INFO_ISA] <= 5 ? isa[v[DANU_INFO_ISA]] : "?");
    printf("repacked        %lld matrices (%.1f MB)\n", (long long)v[DANU_INFO_REPACKED_MATRICES],
           (double)v[DANU_INFO_REPACKED_BYTES] / 1e6);
    printf("load time       %.3f s\n", dt);
    printf("resident memory %.1f MB after load (+%.1f MB for the load)\n", rss1 / 1e6, (double)(rss1 - rss0) / 1e6);
    danu_model_free(m);
    return 0;
}

int cmd_synth(int argc, char **argv)
{
    const char *config = "tiny-a", *out = NULL, *format = "gguf", *type = "bf16", *tok = NULL;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        if (cli_is_flag(argv[i], "-h", "--help")) {
            printf("usage: danu synth --config danube-1.8b|tiny-a|tiny-b|tiny-q [--seed N] [--format hf|gguf]\n"
                   "                  [--type bf16|f16|f32|q8_0|q4_0|q4_1|q5_0|q5_1|q4_k|q5_k|q6_k]\n"
                   "                  [--tokenizer tokenizer.model] OUT\n"
                   "  Writes a model whose weights are a formula of (seed, tensor, element), in an HF\n"
                   "  directory (config.json, model.safetensors, tokenizer.model) or a GGUF file.\n"
                   "  Full-size danube-1.8b takes 3.7 GB in bf16; free space is checked first.\n");
            return 0;
        } else if (cli_is_flag(argv[i], NULL, "--config") && i + 1 < argc) config = argv[++i];
        else if (cli_is_flag(argv[i], NULL, "--seed")) {
            double v;
            const char *a = argv[i], *arg = i + 1 < argc ? argv[++i] : NULL;
            if (cli_parse_opt(a, arg, DANU_OPT_SEED, &v)) return EXIT_USAGE;
            seed = (unsigned long long)v;
        }
        else if (cli_is_flag(argv[i], NULL, "--format") && i + 1 < argc) format = argv[++i];
        else if (cli_is_flag(argv[i], NULL, "--type") && i + 1 < argc) type = argv[++i];
        else if (cli_is_flag(argv[i], NULL, "--tokenizer") && i + 1 < argc) tok = argv[++i];
        else if (cli_is_flag(argv[i], "-v", "--verbose")) continue;
        else if (argv[i][0] != '-' && !out) out = argv[i];
        else { cli_err("unexpected argument %s", argv[i]); return EXIT_USAGE; }
    }
    if (!out) { cli_err("OUT is required"); return EXIT_USAGE; }
    int fmt = !strcmp(format, "hf") ? DANU_FORMAT_HF : !strcmp(format, "gguf") ? DANU_FORMAT_GGUF : 0;
    if (!fmt) { cli_err("--format must be hf or gguf"); return EXIT_USAGE; }
    int32_t ty = -1;
    static const int32_t types[] = { DANU_TYPE_F32, DANU_TYPE_F16, DANU_TYPE_BF16, DANU_TYPE_Q8_0, DANU_TYPE_Q4_0,
                                     DANU_TYPE_Q4_1, DANU_TYPE_Q5_0, DANU_TYPE_Q5_1, DANU_TYPE_Q4_K, DANU_TYPE_Q5_K,
                                     DANU_TYPE_Q6_K };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcasecmp(type, danu_type_name(types[i]))) ty = types[i];
    if (ty < 0) { cli_err("unknown --type %s", type); return EXIT_USAGE; }
    unsigned char *spm = (unsigned char *)danu_cli_tokenizer_model;
    size_t spm_len = danu_cli_tokenizer_model_len;
    if (tok) {
        FILE *f = dn_fopen(tok, "rb");
        if (!f) { cli_err("cannot open %s", tok); return EXIT_FAIL; }
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        spm = malloc((size_t)n);
        if (!spm || fread(spm, 1, (size_t)n, f) != (size_t)n) { fclose(f); cli_err("cannot read %s", tok); return EXIT_FAIL; }
        fclose(f);
        spm_len = (size_t)n;
    }
    danu_options *o = cli_options(1);
    if (!o) { if (tok) free(spm); return EXIT_FAIL; }
    double t0 = cli_now();
    danu_status s = danu_synth_write(config, seed, fmt, ty, spm, spm_len, out, o);
    danu_options_free(o);
    if (tok) free(spm);
    if (s != DANU_OK) return cli_fail("synth", s);
    cli_err("wrote %s (%s, seed %llu, %s, %s) in %.1f s, peak RSS %.0f MB", out, config, seed,
            format, type, cli_now() - t0, cli_peak_rss() / 1e6);
    return 0;
}
