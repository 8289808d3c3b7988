// test_danu.cpp - the C++ wrapper against the transformers golden of
// tiny-a.capital. Built twice by meson: with -fno-exceptions (error-code
// forms only) and with exceptions (throwing forms too).
//
// usage: test_danu TOKENIZER_MODEL GOLDEN_TXT
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
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


// ---- thread pools and work in slices (0.2) -------------------------------------------

// A host job system of the plainest kind: a set of std::thread workers that
// take the items of one batch at a time; the calling thread only waits, so
// every item runs on a worker. Counts what it ran.
class Workers {
public:
    explicit Workers(int n) {
        for (int i = 0; i < n; i++) threads_.emplace_back([this] { loop(); });
    }
    ~Workers() {
        {
            std::lock_guard<std::mutex> lk(m_);
            stop_ = true;
        }
        work_cv_.notify_all();
        for (std::thread &t : threads_) t.join();
    }
    // danu_parallel_for_fn: every item once, return when all are done. Several
    // contexts may call it at once: their batches take turns.
    void parallel_for(danu_job_fn job, void *data, int32_t n) {
        std::lock_guard<std::mutex> turn(batch_m_);
        calls++;
        items += n;
        max_items = std::max(max_items.load(), n);
        std::unique_lock<std::mutex> lk(m_);
        job_ = job;
        data_ = data;
        n_ = n;
        next_ = done_ = 0;
        gen_++;
        work_cv_.notify_all();
        done_cv_.wait(lk, [&] { return done_ == n_; });
        n_ = next_ = done_ = 0;
    }
    std::atomic<int64_t> calls{0}, items{0}, ran{0};
    std::atomic<int32_t> max_items{0};

private:
    void loop() {
        uint64_t seen = 0;
        for (;;) {
            std::unique_lock<std::mutex> lk(m_);
            work_cv_.wait(lk, [&] { return stop_ || gen_ != seen; });
            if (stop_) return;
            seen = gen_;
            while (next_ < n_) {
                int32_t i = next_++;
                danu_job_fn job = job_;
                void *data = data_;
                lk.unlock();
                job(data, i);
                ran++;
                lk.lock();
                if (++done_ == n_) done_cv_.notify_all();
            }
        }
    }
    std::vector<std::thread> threads_;
    std::mutex batch_m_, m_;
    std::condition_variable work_cv_, done_cv_;
    danu_job_fn job_ = nullptr;
    void *data_ = nullptr;
    int32_t n_ = 0, next_ = 0, done_ = 0;
    uint64_t gen_ = 0;
    bool stop_ = false;
};

static std::vector<float> logits_of(const danu::Context &c) {
    const float *p = c.logits();
    return p ? std::vector<float>(p, p + c.vocab_size()) : std::vector<float>();
}

static bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
    return !a.empty() && a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// work(budget) until finished: the calls that returned in progress, or -1 on an error.
static long drive(danu::Context &c, int64_t budget_us, danu_status *error = nullptr) {
    long slices = 0;
    size_t last = c.pending();
    for (;;) {
        auto r = c.work(budget_us);
        if (!r.ok()) {
            if (error) *error = r.code();
            return -1;
        }
        if (*r) break;
        slices++;
        CHECK(c.pending() <= last);
        last = c.pending();
        if (slices > 100000) return -1;
    }
    CHECK(c.pending() == 0);
    return slices;
}

static danu::Options greedy_opts(const danu::Pool *pool = nullptr) {
    auto o = danu::Options::create();
    if (!o.ok()) std::abort();
    CHECK(o->set("temperature", 0.0).ok());
    CHECK(o->set("n_ctx", 128).ok());
    CHECK(o->set_int(DANU_OPT_N_THREADS, 2).ok());
    if (pool) CHECK(o->set_pool(*pool).ok());
    return std::move(*o);
}

static int test_pools_and_slices(const std::string &model_path, const std::vector<danu_token> &prompt,
                                 const std::vector<danu_token> &greedy) {
    auto model = danu::Model::load(model_path);
    REQUIRE(model.ok());
    const int64_t layers = model->info(DANU_INFO_LAYERS).value_or(0);
    REQUIRE(layers > 0);
    std::vector<danu_token> all = prompt;   // 30 tokens: several slices even with large budgets
    all.insert(all.end(), greedy.begin(), greedy.end());
    danu::Options opts = greedy_opts();

    // the reference: blocking calls on the model's own pool
    auto ref = danu::Context::create(*model, &opts);
    REQUIRE(ref.ok());
    REQUIRE(ref->eval(all).ok());
    const std::vector<float> want = logits_of(*ref);
    const std::vector<danu_token> want_tokens = ref->tokens();

    // eval_begin + work: bit-identical to eval, with budgets of 500 us and of one unit
    for (int64_t budget : {int64_t(500), int64_t(0)}) {
        auto c = danu::Context::create(*model, &opts);
        REQUIRE(c.ok());
        CHECK(c->eval_begin(all).ok());
        CHECK(c->pending() == all.size());
        CHECK(c->logits() == nullptr);     // queued, not run
        long slices = drive(*c, budget);
        CHECK(slices >= 0);
        if (budget == 0) CHECK(slices >= layers);
        CHECK(c->tokens() == want_tokens);
        CHECK(same_bits(logits_of(*c), want));
    }
    std::printf("slices: eval_begin + work equals eval bit for bit\n");

    // prompt_begin: the same prefix kept, the same logits as prompt
    {
        std::vector<danu_token> second(prompt);
        second.insert(second.end(), greedy.begin(), greedy.begin() + 10);
        auto r = danu::Context::create(*model, &opts), c = danu::Context::create(*model, &opts);
        REQUIRE(r.ok() && c.ok());
        CHECK(r->prompt(all).ok());
        auto want_reused = r->prompt(second);
        CHECK(want_reused.ok());
        auto reused = c->prompt_begin(all);
        CHECK(reused.ok() && *reused == 0);
        CHECK(drive(*c, 0) >= 0);
        reused = c->prompt_begin(second);
        CHECK(reused.ok() && want_reused.ok() && *reused == *want_reused);
        CHECK(drive(*c, 500) >= 0);
        CHECK(c->tokens() == r->tokens());
        CHECK(same_bits(logits_of(*c), logits_of(*r)));
    }

    // chat_append_begin == chat_append
    {
        const std::vector<danu::Message> msgs = {{"system", "Be brief."}, {"user", "Why is the sky blue?"}};
        auto r = danu::Context::create(*model, &opts), c = danu::Context::create(*model, &opts);
        REQUIRE(r.ok() && c.ok());
        CHECK(r->chat_append(msgs).ok());
        CHECK(c->chat_append_begin(msgs).ok());
        CHECK(c->pending() > 0);
        CHECK(drive(*c, 500) >= 0);
        CHECK(c->tokens() == r->tokens());
        CHECK(same_bits(logits_of(*c), logits_of(*r)));
        CHECK(c->chat_append_begin({{"wizard", "hi"}}).code() == DANU_ERR_INVALID_ARG);   // nothing queued
        CHECK(c->pending() == 0);
    }

    // step_sliced: the tokens, texts and reasons of step, at temperature 0
    {
        CHECK(ref->clear().ok());
        CHECK(ref->eval(prompt).ok());
        std::vector<danu::Step> want_steps;
        for (size_t i = 0; i < greedy.size(); i++) {
            auto st = ref->step();
            CHECK(st.ok());
            if (st.ok()) want_steps.push_back(*st);
        }
        auto want_tail = ref->step_finish();
        CHECK(want_tail.ok());
        for (int64_t budget : {int64_t(0), int64_t(500)}) {
            auto c = danu::Context::create(*model, &opts);
            REQUIRE(c.ok());
            CHECK(c->eval(prompt).ok());
            size_t in_progress = 0, done = 0;
            bool same = true;
            while (done < want_steps.size()) {
                auto st = c->step_sliced(budget);
                REQUIRE(st.ok());
                if (!st->has_value()) {
                    in_progress++;
                    continue;
                }
                const danu::Step &got = **st, &w = want_steps[done++];
                same = same && got.token == w.token && got.text == w.text && got.reason == w.reason;
            }
            CHECK(same);
            auto tail = c->step_finish();
            CHECK(tail.ok() && want_tail.ok() && *tail == *want_tail);
            CHECK(c->tokens() == ref->tokens());
            CHECK(same_bits(logits_of(*c), logits_of(*ref)));
            if (budget == 0) CHECK(in_progress >= want_steps.size());
        }
        // the Step& form reports in progress as false
        auto c = danu::Context::create(*model, &opts);
        REQUIRE(c.ok());
        CHECK(c->eval(prompt).ok());
        danu::Step st;
        auto r = c->step_sliced(0, st);
        CHECK(r.ok() && !*r && st.reason == -1 && st.text.empty());
        while (r.ok() && !*r) r = c->step_sliced(0, st);
        CHECK(r.ok() && st.token == want_steps[0].token && st.text == want_steps[0].text && !st.done());
    }
    std::printf("slices: step_sliced equals step\n");

    // work with nothing pending finishes at once; a negative budget is refused
    {
        auto c = danu::Context::create(*model, &opts);
        REQUIRE(c.ok());
        auto r = c->work(500);
        CHECK(r.ok() && *r);
        r = c->work(0);
        CHECK(r.ok() && *r);
        CHECK(c->eval_begin(nullptr, 0).ok() && c->pending() == 0);
        CHECK(c->work(-1).code() == DANU_ERR_INVALID_ARG);
        CHECK(c->logits() == nullptr);
    }

    // while work is pending the calls that evaluate or change the cache are refused
    {
        auto c = danu::Context::create(*model, &opts);
        REQUIRE(c.ok());
        CHECK(c->eval_begin(all).ok());
        auto r = c->work(0);
        CHECK(r.ok() && !*r);
        const size_t pending = c->pending();
        const std::vector<danu_token> one = {5};
        CHECK(c->eval(one).code() == DANU_ERR_STATE);
        CHECK(c->prompt(one).code() == DANU_ERR_STATE);
        CHECK(c->eval_begin(one).code() == DANU_ERR_STATE);
        CHECK(c->prompt_begin(one).code() == DANU_ERR_STATE);
        CHECK(c->chat_append({{"user", "x"}}).code() == DANU_ERR_STATE);
        CHECK(c->chat_append_begin({{"user", "x"}}).code() == DANU_ERR_STATE);
        CHECK(c->step().code() == DANU_ERR_STATE);
        CHECK(c->rewind(0).code() == DANU_ERR_STATE);
        CHECK(c->save_state().code() == DANU_ERR_STATE);
        CHECK(c->pending() == pending);
        CHECK(drive(*c, 500) >= 0);
        CHECK(c->tokens() == want_tokens);
        CHECK(same_bits(logits_of(*c), want));
        CHECK(c->eval(one).ok());
    }

    // an abort between slices: work fails with ABORTED, nothing stays pending,
    // the finished batches stay cached, and the context works on
    {
        auto c = danu::Context::create(*model, &opts);
        REQUIRE(c.ok());
        CHECK(c->eval_begin(all).ok());
        auto r = c->work(0);
        CHECK(r.ok() && !*r);
        c->abort();
        danu_status err = DANU_OK;
        CHECK(drive(*c, 500, &err) == -1);
        CHECK(err == DANU_ERR_ABORTED);
        CHECK(c->pending() == 0);
        const std::vector<danu_token> kept = c->tokens();
        CHECK(kept.size() <= all.size() && std::equal(kept.begin(), kept.end(), all.begin()));
        r = c->work(0);
        CHECK(r.ok() && *r);
        CHECK(c->clear().ok());
        CHECK(c->eval_begin(all).ok());
        CHECK(drive(*c, 500) >= 0);
        CHECK(same_bits(logits_of(*c), want));
        // clear() drops pending work
        CHECK(c->clear().ok());
        CHECK(c->eval_begin(all).ok());
        r = c->work(0);
        CHECK(r.ok() && !*r);
        CHECK(c->clear().ok());
        CHECK(c->pending() == 0 && c->n_tokens() == 0);
        CHECK(c->eval(all).ok());
        CHECK(same_bits(logits_of(*c), want));
    }
    std::printf("slices: refused calls, abort and clear behave\n");

    // a shared pool: two models and their contexts on it, which keep it
    // running after the Pool object is gone
    {
        std::optional<danu::Model> m;
        std::optional<danu::Context> c1, c2;
        {
            auto pool = danu::Pool::create(2);
            REQUIRE(pool.ok());
            CHECK(pool->size() == 2);
            auto mp = danu::Model::load(model_path, *pool);
            REQUIRE(mp.ok());
            m.emplace(std::move(*mp));
            danu::Options po = greedy_opts(&*pool);
            auto a = danu::Context::create(*m, &opts);      // the model's pool: the shared one
            auto b = danu::Context::create(*model, &po);    // another model's context on it
            REQUIRE(a.ok() && b.ok());
            c1.emplace(std::move(*a));
            c2.emplace(std::move(*b));
        }
        for (danu::Context *c : {&*c1, &*c2}) {
            CHECK(c->eval_begin(all).ok());
            CHECK(drive(*c, 500) >= 0);
            CHECK(c->tokens() == want_tokens);
            CHECK(same_bits(logits_of(*c), want));
        }
        CHECK(danu::Pool::host(nullptr).code() == DANU_ERR_INVALID_ARG);
    }
    std::printf("pools: a shared pool gives the same logits\n");

    // a host pool on std::thread workers: the same logits, every item on a worker
    {
        Workers workers(2);
        std::optional<danu::Model> m;
        {
            auto pool = danu::Pool::host(
                [&workers](danu_job_fn job, void *data, int32_t n) { workers.parallel_for(job, data, n); }, 2);
            REQUIRE(pool.ok());
            CHECK(pool->size() == 2);
            auto mp = danu::Model::load(model_path, *pool);   // repacks on the host pool
            REQUIRE(mp.ok());
            m.emplace(std::move(*mp));
        }   // the Pool object goes; the model keeps the std::function alive
        {
            auto c = danu::Context::create(*m, &opts);
            REQUIRE(c.ok());
            const int64_t calls0 = workers.calls;
            CHECK(c->eval(all).ok());
            CHECK(workers.calls > calls0);        // the evaluation ran on the host pool
            CHECK(c->tokens() == want_tokens);
            CHECK(same_bits(logits_of(*c), want));
            CHECK(c->clear().ok());
            CHECK(c->eval_begin(all).ok());       // sliced work on it too
            CHECK(drive(*c, 0) >= 0);
            CHECK(same_bits(logits_of(*c), want));
            // two contexts evaluating at once on two threads enter the callback concurrently
            auto d = danu::Context::create(*m, &opts);
            REQUIRE(d.ok());
            CHECK(c->clear().ok());
            std::vector<float> got_c, got_d;
            std::thread tc([&] { if (c->eval(all).ok()) got_c = logits_of(*c); });
            std::thread td([&] { if (d->eval(all).ok()) got_d = logits_of(*d); });
            tc.join();
            td.join();
            CHECK(same_bits(got_c, want));
            CHECK(same_bits(got_d, want));
        }   // the contexts go, then the model, and with it the last reference to the pool
        m.reset();
        CHECK(workers.items == workers.ran);  // each item ran, once, on a worker
        CHECK(workers.max_items >= 1 && workers.max_items <= 2);
        std::printf("pools: a host pool on std::thread workers gives the same logits (%lld calls)\n",
                    static_cast<long long>(workers.calls.load()));
    }
    return 0;
}

// ---- many contexts at once (0.2) ------------------------------------------------------

static danu::Options sampling_opts(double temperature, int64_t seed) {
    danu::Options o = greedy_opts();
    CHECK(o.set("temperature", temperature).ok());
    CHECK(o.set("seed", seed).ok());
    return o;
}

// Every result is checked against the same context stepped or generating alone.
static int test_batch(const std::string &model_path, const std::vector<danu_token> &prompt,
                      const std::vector<danu_token> &greedy) {
    auto model = danu::Model::load(model_path);
    REQUIRE(model.ok());
    std::vector<danu_token> all = prompt;   // 30 tokens: several passes when queued with n_batch 8
    all.insert(all.end(), greedy.begin(), greedy.end());
    const size_t N = 10;
    // context k: its options, its prompt, and whether the prompt is queued (eval_begin)
    std::vector<danu::Options> opts;
    opts.push_back(greedy_opts());
    opts.push_back(sampling_opts(0.9, 5));
    opts.push_back(sampling_opts(0.9, 6));
    const std::vector<danu_token> *prompts[3] = {&prompt, &all, &prompt};
    const bool queued[3] = {false, true, false};
    auto make = [&](size_t k, bool blocking) -> danu::Context {
        auto c = danu::Context::create(*model, &opts[k]);
        if (!c.ok()) std::abort();
        if (blocking || !queued[k]) CHECK(c->eval(*prompts[k]).ok());
        else CHECK(c->eval_begin(*prompts[k]).ok());
        return std::move(*c);
    };
    // alone: N steps each
    std::vector<std::vector<danu::Step>> want(3);
    std::vector<std::vector<danu_token>> want_tokens(3);
    std::vector<std::vector<float>> want_logits(3);
    for (size_t k = 0; k < 3; k++) {
        danu::Context c = make(k, true);
        for (size_t i = 0; i < N; i++) {
            auto st = c.step();
            CHECK(st.ok());
            if (st.ok()) want[k].push_back(*st);
        }
        want_tokens[k] = c.tokens();
        want_logits[k] = logits_of(c);
    }
    bool differ = false;   // the seeded contexts really sample: their tokens differ
    for (size_t i = 0; i < N; i++) differ = differ || want[1][i].token != want[2][i].token;
    CHECK(differ);

    auto bo = danu::Options::create();
    REQUIRE(bo.ok());
    CHECK(bo->set_int(DANU_OPT_N_BATCH, 8).ok());
    CHECK(bo->set_int(DANU_OPT_N_THREADS, 2).ok());
    auto batch = danu::Batch::create(*model, 3, &*bo);
    REQUIRE(batch.ok());
    CHECK(batch->max_contexts() == 3);
    CHECK(batch->memory_size() > 0);

    // step: the same tokens, texts and reasons as alone; a queued prompt is in progress first
    {
        std::vector<danu::Context> ctxs;
        for (size_t k = 0; k < 3; k++) ctxs.push_back(make(k, false));
        std::vector<danu::Context *> ptrs = {&ctxs[0], &ctxs[1], &ctxs[2]};
        std::vector<std::vector<danu::Step>> got(3);
        size_t in_progress[3] = {0, 0, 0};
        for (int pass = 0; pass < 100 && (got[0].size() < N || got[1].size() < N || got[2].size() < N); pass++) {
            std::vector<danu::Context *> live;
            std::vector<size_t> which;
            for (size_t k = 0; k < 3; k++)
                if (got[k].size() < N) { live.push_back(ptrs[k]); which.push_back(k); }
            auto res = batch->step(live);
            REQUIRE(res.ok() && res->size() == live.size());
            for (size_t j = 0; j < live.size(); j++) {
                const danu::BatchStep &r = (*res)[j];
                if (r.in_progress()) { in_progress[which[j]]++; continue; }
                CHECK(r.ok());
                got[which[j]].push_back(r);
            }
        }
        for (size_t k = 0; k < 3; k++) {
            bool same = got[k].size() == N;
            for (size_t i = 0; same && i < N; i++)
                same = got[k][i].token == want[k][i].token && got[k][i].text == want[k][i].text &&
                       got[k][i].reason == want[k][i].reason;
            CHECK(same);
            CHECK(ctxs[k].tokens() == want_tokens[k]);
            CHECK(same_bits(logits_of(ctxs[k]), want_logits[k]));
            CHECK((in_progress[k] > 1) == queued[k]);
        }
    }
    std::printf("batch: step gives each context's tokens alone\n");

    // generate: the text and reasons of each context alone; a bool callback stops one
    {
        std::vector<std::string> want_text(3);
        std::vector<int32_t> want_reason(3);
        for (size_t k = 0; k < 3; k++) {
            danu::Context c = make(k, true);
            auto r = c.generate(12, [&](danu_token, std::string_view piece) { want_text[k] += piece; });
            CHECK(r.ok());
            want_reason[k] = r.value_or(-1);
        }
        std::vector<danu::Context> ctxs;
        for (size_t k = 0; k < 3; k++) ctxs.push_back(make(k, false));
        std::vector<std::string> text(3);
        auto reasons = batch->generate({&ctxs[0], &ctxs[1], &ctxs[2]}, 12,
                                       [&](size_t i, danu_token, std::string_view piece) -> bool {
                                           text.at(i) += piece;
                                           return false;
                                       });
        CHECK(reasons.ok() && *reasons == want_reason);
        CHECK(text == want_text);
        // context 1 stops itself after its second piece; the others run on
        std::vector<danu::Context> again;
        for (size_t k = 0; k < 3; k++) again.push_back(make(k, false));
        std::vector<int> pieces(3);
        auto r2 = batch->generate({&again[0], &again[1], &again[2]}, 12,
                                  [&](size_t i, danu_token, std::string_view) { return ++pieces.at(i) == 2 && i == 1; });
        CHECK(r2.ok() && (*r2)[0] == want_reason[0] && (*r2)[1] == DANU_STOP_CALLBACK && (*r2)[2] == want_reason[2]);
        CHECK(again[0].tokens() == ctxs[0].tokens());
        CHECK(again[2].tokens() == ctxs[2].tokens());
    }
    std::printf("batch: generate gives each context's text alone\n");

    // fork and copy_from: the same logits and the same continuation
    {
        danu::Context c = make(1, true);
        CHECK(c.step().ok());
        auto f = c.fork();
        REQUIRE(f.ok());
        danu::Context d = make(0, true);
        CHECK(d.copy_from(c).ok());
        CHECK(f->tokens() == c.tokens() && d.tokens() == c.tokens());
        CHECK(same_bits(logits_of(*f), logits_of(c)) && same_bits(logits_of(d), logits_of(c)));
        std::string tc, tf, td;
        CHECK(c.generate(8, [&](danu_token, std::string_view p) { tc += p; }).ok());
        CHECK(f->generate(8, [&](danu_token, std::string_view p) { tf += p; }).ok());
        CHECK(d.generate(8, [&](danu_token, std::string_view p) { td += p; }).ok());
        CHECK(tf == tc && td == tc && !tc.empty());
        CHECK(f->tokens() == c.tokens() && d.tokens() == c.tokens());
    }
    std::printf("batch: fork and copy_from continue as the original\n");

    // bad input: refused as a whole (contexts unchanged), or one context's own error
    {
        danu::Context a = make(0, true), b = make(1, false);
        const std::vector<danu_token> ta = a.tokens();
        const std::vector<float> la = logits_of(a);
        const size_t pb = b.pending();
        std::vector<danu::BatchStep> out;
        CHECK(batch->step({&a, &b, &a}, out).code() == DANU_ERR_INVALID_ARG && out.empty());
        CHECK(batch->step({&a, nullptr}, out).code() == DANU_ERR_INVALID_ARG);
        CHECK(batch->step(std::vector<danu::Context *>{}, out).code() == DANU_ERR_INVALID_ARG);
        danu::Context x = make(2, true), y = make(2, true);
        CHECK(batch->step({&a, &b, &x, &y}, out).code() == DANU_ERR_INVALID_ARG);   // above max_contexts
        CHECK(batch->generate({&b, &b}, 4).code() == DANU_ERR_INVALID_ARG);
        CHECK(batch->generate({&a}, -1).code() == DANU_ERR_INVALID_ARG);
        CHECK(a.tokens() == ta && b.pending() == pb && same_bits(logits_of(a), la));
        auto other = danu::Model::load(model_path);
        REQUIRE(other.ok());
        auto o = danu::Context::create(*other, &opts[0]);
        REQUIRE(o.ok());
        CHECK(o->eval(prompt).ok());
        CHECK(batch->step({&a, &*o}, out).code() == DANU_ERR_INVALID_ARG);
        CHECK(a.copy_from(*o).code() == DANU_ERR_INVALID_ARG);   // another model
        CHECK(a.copy_from(a).code() == DANU_ERR_INVALID_ARG);    // itself
        CHECK(a.copy_from(b).code() == DANU_ERR_STATE);          // work pending on src
        CHECK(b.fork().code() == DANU_ERR_STATE);
        CHECK(a.tokens() == ta && same_bits(logits_of(a), la));
        auto empty = danu::Context::create(*model, &opts[0]);
        REQUIRE(empty.ok());
        CHECK(batch->generate({&a, &*empty}, 4).code() == DANU_ERR_STATE);   // no logits: nothing generated
        CHECK(a.tokens() == ta);
        // a context without logits fails alone; the pass goes on for the others
        CHECK(batch->step({&a, &*empty}, out).ok() && out.size() == 2);
        CHECK(out.size() == 2 && out[0].ok() && out[0].token == want[0][0].token && out[0].text == want[0][0].text);
        CHECK(out.size() == 2 && out[1].status == DANU_ERR_STATE);
        // an abort is that context's stop reason (an ok status, as Context::step); the others go on
        const std::vector<danu_token> before = a.tokens();
        a.abort();
        CHECK(batch->step({&a, &x}, out).ok() && out.size() == 2);
        CHECK(out.size() == 2 && out[0].ok() && out[0].reason == DANU_STOP_ABORTED && a.tokens() == before);
        CHECK(out.size() == 2 && out[1].ok() && !out[1].done() && out[1].token == x.tokens().back());
        CHECK(danu::Batch::create(*model, 0).code() == DANU_ERR_INVALID_ARG);
    }
    std::printf("batch: bad input refused\n");

#if DANU_HPP_EXCEPTIONS
    {
        std::vector<danu::Context> ctxs;
        for (size_t k = 0; k < 3; k++) ctxs.push_back(make(k, true));
        bool thrown = false;
        try {
            batch->generate({&ctxs[0], &ctxs[1], &ctxs[2]}, 12,
                            [](size_t, danu_token, std::string_view) -> bool { throw std::runtime_error("from batch"); });
        } catch (const std::runtime_error &e) {
            thrown = std::string(e.what()) == "from batch";
        }
        CHECK(thrown);
        for (danu::Context &c : ctxs) CHECK(c.step().ok());    // still usable
    }
#endif
    return 0;
}

// Constrained output (0.2): a generation with choices ends inside the
// language, with DANU_STOP_GRAMMAR (or EOS); a constraint destroyed right
// after attaching still applies; bad input comes back as codes with detail.
static int test_constraints(const std::string &model_path, const std::vector<danu_token> &prompt) {
    auto model = danu::Model::load(model_path);
    REQUIRE(model.ok());
    auto opts = danu::Options::create();
    REQUIRE(opts.ok());
    CHECK(opts->set("temperature", 0.9).ok());
    CHECK(opts->set("seed", 3).ok());
    CHECK(opts->set("n_ctx", 128).ok());
    auto ctx = danu::Context::create(*model, &*opts);
    REQUIRE(ctx.ok());
    REQUIRE(ctx->eval(prompt).ok());
    const std::vector<std::string> choices = {"Paris", "Lyon", "the city of Marseille"};
    CHECK(ctx->constraint_state() == DANU_CONSTRAINT_NONE);
    {
        auto c = danu::Constraint::choices(*model, choices);
        REQUIRE(c.ok());
        CHECK(ctx->set_constraint(*c).ok());
        danu::Constraint moved = std::move(*c);   // move-only; the context holds its own reference
        (void)moved;
    }
    CHECK(ctx->constraint_state() == DANU_CONSTRAINT_OPEN);
    std::string text;
    auto reason = ctx->generate(32, [&](danu_token, std::string_view piece) { text += piece; });
    CHECK(reason.ok() && (*reason == DANU_STOP_GRAMMAR || *reason == DANU_STOP_EOS));
    CHECK(std::find(choices.begin(), choices.end(), text) != choices.end());
    CHECK(ctx->constraint_state() == DANU_CONSTRAINT_FINISHED || ctx->constraint_state() == DANU_CONSTRAINT_COMPLETE);
    std::printf("constraint: choices gave \"%s\" (reason %d)\n", text.c_str(), reason.ok() ? *reason : -1);
    CHECK(ctx->clear_constraint().ok());
    CHECK(ctx->constraint_state() == DANU_CONSTRAINT_NONE);

    auto bad = danu::Constraint::grammar(*model, "root ::= \"yes\" |\n  \"no\n");
    CHECK(!bad.ok() && bad.code() == DANU_ERR_INVALID_ARG);
    CHECK(bad.status().detail().find('2') != std::string::npos);   // the line
    std::printf("constraint error: %s\n", bad.message().c_str());
    CHECK(danu::Constraint::choices(*model, {}).code() == DANU_ERR_INVALID_ARG);
    auto unsupported = danu::Constraint::json_schema(*model, R"({"type": "string", "pattern": "^a+$"})");
    CHECK(unsupported.code() == DANU_ERR_UNSUPPORTED);
    CHECK(unsupported.status().detail().find("pattern") != std::string::npos);
    auto g = danu::json_schema_to_grammar(R"({"type": "object", "properties": {"a": {"type": "integer"}},
                                              "required": ["a"]})");
    CHECK(g.ok() && g->find("root") != std::string::npos);
    if (g.ok()) CHECK(danu::Constraint::grammar(model->tokenizer(), *g).ok());
    auto k = danu::Constraint::json_schema(*model, R"({"type": "object", "properties": {"a": {"type": "integer",
                                                      "minimum": 0, "maximum": 9}}, "required": ["a"]})");
    REQUIRE(k.ok());
    CHECK(ctx->set_constraint(*k).ok());
    text.clear();
    reason = ctx->generate(32, [&](danu_token, std::string_view piece) { text += piece; });
    CHECK(reason.ok() && text.size() == 7 && text.rfind("{\"a\":", 0) == 0 && text[6] == '}');
    return 0;
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

    if (test_pools_and_slices(model_path, prompt, greedy) != 0) failures++;
    if (test_batch(model_path, prompt, greedy) != 0) failures++;
    if (test_constraints(model_path, prompt) != 0) failures++;

    std::remove(model_path.c_str());
    std::remove(state_path.c_str());
    rmdir(dir);
    std::printf("%s\n", failures ? "FAILED" : "all checks passed");
    return failures ? 1 : 0;
}
