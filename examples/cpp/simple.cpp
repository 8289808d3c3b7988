// simple.cpp - examples/simple.c with the C++ wrapper (bindings/cpp/danu.hpp):
// load a model, generate from a prompt, stream the text to stdout.
//
//   simple_cpp MODEL [PROMPT] [N_TOKENS] [TEMPERATURE]
//
// Written with error codes so it builds with -fno-exceptions too.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "danu.hpp"

static int fail(const char *what, const danu::Status &s) {
    std::fprintf(stderr, "simple_cpp: %s: %s\n", what, s.message().c_str());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: simple_cpp MODEL [PROMPT] [N_TOKENS] [TEMPERATURE]\n");
        return 2;
    }
    std::string prompt = argc > 2 ? argv[2] : "The capital of France is";
    int n_tokens = argc > 3 ? std::atoi(argv[3]) : 64;
    double temperature = argc > 4 ? std::atof(argv[4]) : 0.8;

    auto opts = danu::Options::create();
    if (!opts) return fail("options", opts.status());
    opts->set("temperature", temperature);

    auto model = danu::Model::load(argv[1], &*opts);
    if (!model) return fail("load", model.status());
    int64_t train_ctx = model->info(DANU_INFO_CONTEXT_LENGTH).value_or(2048);
    opts->set("n_ctx", train_ctx < 2048 ? train_ctx : 2048);
    auto ctx = danu::Context::create(*model, &*opts);
    if (!ctx) return fail("context", ctx.status());

    auto ids = model->tokenizer().encode(prompt);
    if (!ids) return fail("encode", ids.status());
    if (auto s = ctx->eval(*ids); !s) return fail("eval", s);

    std::printf("%s", prompt.c_str());
    auto reason = ctx->generate(n_tokens, [](danu_token, std::string_view piece) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
    });
    std::printf("\n");
    if (!reason) return fail("generate", reason.status());
    std::fprintf(stderr, "[%zu tokens in the context, stopped by %s]\n", ctx->n_tokens(),
                 *reason == DANU_STOP_EOS ? "end of text" : "length");
    return 0;
}
