// test_danu.cpp - the C++ wrapper against the transformers golden of
// tiny-a.capital. Built twice by meson: with -fno-exceptions (error-code
// forms only) and with exceptions (throwing forms too).
//
// usage: test_danu TOKENIZER_MODEL GOLDEN_TXT
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "danu.hpp"

static int failures;
#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                              \
        }                                                                            \
    } while (0)
#define REQUIRE(cond)                                                                \
    do {                                                                             \
        if (!(cond)) {                                                               \
            std::fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
            return 1;                                                                \
        }                                                                            \
    } while (0)

static std::vector<danu_token> golden_ids(const char *path, const char *key) {
    std::ifstream f(path);
    std::string line;
    std::vector<danu_token> ids;
    while (std::getline(f, line)) {
        std::istringstream in(line);
        std::string k;
        in >> k;
        if (k != key) continue;
        int v;
        while (in >> v) ids.push_back(v);
    }
    return ids;
}

static std::string read_file(const char *path) {
    std::ifstream f(path, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

// Runs fn in a child process (expected to die) and returns what it wrote to stderr.
template <class F>
static std::string stderr_of_child(F fn) {
    int fd[2];
    if (pipe(fd) != 0) return "";
    std::fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        dup2(fd[1], 2);
        close(fd[0]);
        fn();
        _exit(0);
    }
    close(fd[1]);
    std::string out;
    char buf[512];
    ssize_t n;
    while ((n = read(fd[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFSIGNALED(status)) out += "\n(child did not die by a signal)";
    return out;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: test_danu TOKENIZER_MODEL GOLDEN_TXT\n");
        return 2;
    }
    const std::vector<danu_token> prompt = golden_ids(argv[2], "prompt");
    const std::vector<danu_token> greedy = golden_ids(argv[2], "greedy");
    REQUIRE(prompt.size() == 6 && greedy.size() == 24);

    char dir[] = "/tmp/danu-cpp-XXXXXX";
    REQUIRE(mkdtemp(dir));
    const std::string model_path = std::string(dir) + "/tiny-a.gguf";
    const std::string state_path = std::string(dir) + "/state.bin";
    const std::string spm = read_file(argv[1]);
    REQUIRE(danu::synth_write("tiny-a", 7, DANU_FORMAT_GGUF, DANU_TYPE_BF16, spm.data(), spm.size(), model_path).ok());

    // options by name and key, with a lambda log callback
    auto opts = danu::Options::create();
    REQUIRE(opts.ok());
    int log_lines = 0;
    CHECK(opts->set_log([&](int32_t, std::string_view msg) { log_lines += !msg.empty(); }).ok());
    CHECK(opts->set("temperature", 0.0).ok());
    CHECK(opts->set("n_ctx", 64).ok());
    CHECK(opts->set_int(DANU_OPT_N_THREADS, 2).ok());
    CHECK(opts->set("no_such_option", 1).code() == DANU_ERR_UNSUPPORTED);
    CHECK(opts->set("temperature", -1.0).code() == DANU_ERR_INVALID_ARG);

    auto model = danu::Model::load(model_path, &*opts);
    REQUIRE(model.ok());
    CHECK(log_lines > 0);
    CHECK(model->vocab_size() == 32000);

    // tokenizer: the golden prompt is "<s>The capital of France is"
    danu::Tokenizer tok = model->tokenizer();
    auto text = tok.decode(prompt.data() + 1, prompt.size() - 1);
    REQUIRE(text.ok());
    CHECK(*text == "The capital of France is");
    auto ids = tok.encode(*text);
    CHECK(ids.ok() && *ids == prompt);
    CHECK(tok.piece(450).ok() && *tok.piece(450) == "\xe2\x96\x81The");
    CHECK(tok.decode({-5}).status().code() == DANU_ERR_BAD_TOKEN);

    // greedy generation step by step equals transformers
    auto ctx = danu::Context::create(*model, &*opts);
    REQUIRE(ctx.ok());
    REQUIRE(ctx->eval(prompt).ok());
    auto state = ctx->save_state();
    REQUIRE(state.ok());
    std::vector<danu_token> got;
    std::string streamed;
    for (size_t i = 0; i < greedy.size(); i++) {
        danu::Step st;
        CHECK(ctx->step(st).ok());
        CHECK(!st.done());
        got.push_back(st.token);
        streamed += st.text;
    }
    auto tail = ctx->step_finish();   // whatever the steps held back
    CHECK(tail.ok());
    if (tail.ok()) streamed += *tail;
    CHECK(got == greedy);
    std::printf("greedy via step: %s\n", got == greedy ? "matches the golden" : "DIFFERS");

    // the same through generate() with a lambda, from the restored state
    CHECK(ctx->load_state(*state).ok());
    CHECK(ctx->n_tokens() == prompt.size());
    std::string generated;
    auto reason = ctx->generate(24, [&](danu_token, std::string_view piece) { generated += piece; });
    CHECK(reason.ok() && *reason == DANU_STOP_LENGTH);
    CHECK(generated == streamed);
    std::vector<danu_token> hist = ctx->tokens();
    CHECK(std::vector<danu_token>(hist.begin() + 6, hist.end()) == greedy);

    // a callback that stops after three pieces
    CHECK(ctx->load_state(*state).ok());
    int pieces = 0;
    reason = ctx->generate(24, [&](danu_token, std::string_view) {
        return ++pieces == 3 ? danu::Flow::Stop : danu::Flow::Continue;
    });
    CHECK(reason.ok() && *reason == DANU_STOP_CALLBACK && pieces == 3);

    // an abort (here from the callback after 3 tokens) ends generation with
    // reason DANU_STOP_ABORTED and no error status, as in every binding; the
    // context is as before the aborted token, so generation resumes: greedy,
    // the same tokens and text as one uninterrupted run
    CHECK(ctx->load_state(*state).ok());
    int calls = 0;
    std::string resumed;
    reason = ctx->generate(24, [&](danu_token, std::string_view piece) {
        resumed += piece;
        if (++calls == 3) ctx->abort();
    });
    CHECK(reason.ok());
    CHECK(reason.ok() && *reason == DANU_STOP_ABORTED);
    CHECK(ctx->n_tokens() == prompt.size() + 3);
    CHECK(ctx->logits() != nullptr);
    reason = ctx->generate(21, [&](danu_token, std::string_view piece) { resumed += piece; });
    CHECK(reason.ok() && *reason == DANU_STOP_LENGTH);
    hist = ctx->tokens();
    CHECK(std::vector<danu_token>(hist.begin() + 6, hist.end()) == greedy);
    CHECK(resumed == generated);
    // the step form too: ok, with the reason
    ctx->abort();
    auto aborted_step = ctx->step();
    CHECK(aborted_step.ok() && aborted_step->reason == DANU_STOP_ABORTED);
    CHECK(ctx->n_tokens() == prompt.size() + greedy.size());
    std::printf("abort: reason aborted, resumed to the uninterrupted tokens\n");

    // a checkpoint to return to: by rewinding within the sliding window (32
    // for tiny-a), from the saved state past it
    CHECK(ctx->load_state(*state).ok());
    const std::vector<float> at_prompt(ctx->logits(), ctx->logits() + ctx->vocab_size());
    auto cp = ctx->checkpoint(false);
    REQUIRE(cp.ok());
    for (int round = 0; round < 2; round++) {
        auto r5 = ctx->generate(5, [](danu_token, std::string_view) {});
        CHECK(r5.ok() && *r5 == DANU_STOP_LENGTH);
        hist = ctx->tokens();
        CHECK(std::vector<danu_token>(hist.begin() + 6, hist.end()) ==
              std::vector<danu_token>(greedy.begin(), greedy.begin() + 5));
        CHECK(ctx->restore(*cp).ok());
        CHECK(ctx->tokens() == prompt);
        CHECK(ctx->logits() && std::equal(at_prompt.begin(), at_prompt.end(), ctx->logits()));
    }
    std::vector<danu_token> far;
    for (int i = 0; i < 40; i++) far.push_back(100 + i);
    auto cp_state = ctx->checkpoint();
    REQUIRE(cp_state.ok());
    CHECK(ctx->eval(far).ok());
    CHECK(ctx->restore(*cp).code() == DANU_ERR_STATE);   // past the window, no state kept
    CHECK(ctx->restore(*cp_state).ok());
    CHECK(ctx->tokens() == prompt);
    CHECK(ctx->logits() && std::equal(at_prompt.begin(), at_prompt.end(), ctx->logits()));

    // the streaming decoder agrees with decode
    auto dec = danu::Decoder::create(tok);
    REQUIRE(dec.ok());
    std::string via_decoder;
    for (danu_token t : greedy) via_decoder += *dec->push(t);
    via_decoder += *dec->flush();
    CHECK(via_decoder == *tok.decode(greedy));

    // state file round trip into a second context
    CHECK(ctx->load_state(*state).ok());
    CHECK(ctx->save_state_file(state_path).ok());
    auto ctx2 = danu::Context::create(*model, &*opts);
    REQUIRE(ctx2.ok());
    CHECK(ctx2->load_state_file(state_path).ok());
    auto first = ctx2->sample();
    CHECK(first.ok() && *first == greedy[0]);

    // errors come back as codes with the library's detail
    auto missing = danu::Model::load(std::string(dir) + "/missing.gguf");
    CHECK(!missing.ok());
    CHECK(missing.status().code() == DANU_ERR_IO);
    CHECK(missing.status().detail().find("missing.gguf") != std::string::npos);
    CHECK(missing.code() == DANU_ERR_IO);
    CHECK(missing.message().find("missing.gguf") != std::string::npos);
    CHECK(missing.message().find(danu_strerror(DANU_ERR_IO)) != std::string::npos);
    std::printf("error form: %s\n", missing.message().c_str());
    // dereferencing a failed Result ends the program with the message on stderr,
    // in both builds (without exceptions it used to abort silently)
    std::string died = stderr_of_child([&] { danu::Model m = *danu::Model::load(std::string(dir) + "/missing.gguf"); });
    CHECK(died.find("missing.gguf") != std::string::npos);
    CHECK(died.find(danu_strerror(DANU_ERR_IO)) != std::string::npos);
    danu_token bad[] = {1, 40000};
    danu::Status s = ctx->eval(bad, 2);
    CHECK(s.code() == DANU_ERR_BAD_TOKEN && !s.detail().empty());
    CHECK(ctx->load_state("garbage", 7).code() == DANU_ERR_FORMAT);

#if DANU_HPP_EXCEPTIONS
    // throwing forms
    bool thrown = false;
    try {
        danu::Model m = danu::Model::load(std::string(dir) + "/missing.gguf").value();
    } catch (const danu::Error &e) {
        thrown = e.code() == DANU_ERR_IO && std::strstr(e.what(), "missing.gguf");
    }
    CHECK(thrown);
    thrown = false;
    try {
        ctx->eval(bad, 2).check();
    } catch (const danu::Error &e) {
        thrown = e.code() == DANU_ERR_BAD_TOKEN;
    }
    CHECK(thrown);
    // an exception in a callback stops generation and reaches the caller
    CHECK(ctx->load_state(*state).ok());
    thrown = false;
    try {
        ctx->generate(24, [](danu_token, std::string_view) -> danu::Flow { throw std::runtime_error("from callback"); });
    } catch (const std::runtime_error &e) {
        thrown = std::string(e.what()) == "from callback";
    }
    CHECK(thrown);
    CHECK(ctx->step().ok());      // still usable
    std::printf("exceptions: enabled and tested\n");
#else
    std::printf("exceptions: disabled (error codes only)\n");
#endif

    std::remove(model_path.c_str());
    std::remove(state_path.c_str());
    rmdir(dir);
    std::printf("%s\n", failures ? "FAILED" : "all checks passed");
    return failures ? 1 : 0;
}
