// TestDanu.cs - the C# binding against a built libdanu (Mono: mcs + mono).
//   mono TestDanu.exe SOURCE_ROOT
// Prints one line per check, ends with "N passed, M failed"; exit 1 on failure.
// bindings/csharp/run_tests.sh builds and runs it (meson test 'csharp').
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using Danu;

static class TestDanu
{
    static int passed, failed;
    static string root, tmp, modelPath;
    static int[] gPrompt, gGreedy;

    static void Check(bool ok, string what)
    {
        if (ok) { passed++; Console.WriteLine("ok   " + what); }
        else { failed++; Console.WriteLine("FAIL " + what); }
    }

    static void Eq<T>(T expected, T actual, string what)
    {
        bool ok = EqualityComparer<T>.Default.Equals(expected, actual);
        Check(ok, ok ? what : what + ": expected <" + expected + ">, got <" + actual + ">");
    }

    static void SeqEq<T>(IEnumerable<T> expected, IEnumerable<T> actual, string what)
    {
        bool ok = expected.SequenceEqual(actual);
        Check(ok, ok ? what : what + ": expected [" + string.Join(" ", expected) + "], got [" + string.Join(" ", actual) + "]");
    }

    static DanuException Throws(Action a)
    {
        try { a(); }
        catch (DanuException e) { return e; }
        return null;
    }

    static void Section(string name, Action body)
    {
        Console.WriteLine("# " + name);
        try { body(); }
        catch (Exception e) { failed++; Console.WriteLine("FAIL " + name + ": unexpected " + e); }
    }

    static DanuContext Ctx(DanuModel m, int nCtx = 256)
    {
        using (DanuOptions o = new DanuOptions { Temperature = 0, NCtx = nCtx, NThreads = 2 })
            return m.CreateContext(o);
    }

    static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "--probe")
        {
            // run_tests.sh: which library "danu" resolves to under a given environment
            try
            {
                Console.WriteLine("ok   probe: libdanu " + DanuLibrary.Version + " loaded" +
                                  (DanuLibrary.PreloadedPath != null ? " from DANU_LIBRARY=" + DanuLibrary.PreloadedPath : " by name"));
                return 0;
            }
            catch (Exception e)
            {
                Console.WriteLine("probe: " + e);
                return 2;
            }
        }
        root = args.Length > 0 ? args[0] : Path.Combine("..", "..", "..");
        tmp = Path.Combine(Path.GetTempPath(), "danu-cs-" + Guid.NewGuid().ToString("N").Substring(0, 8));
        Directory.CreateDirectory(tmp);
        DateTime t0 = DateTime.UtcNow;
        try
        {
            LoadGolden();
            Section("declarations", TestDeclarations);
            Section("version", TestVersion);
            Section("options", TestOptions);
            Section("synth", TestSynth);
            if (modelPath == null) { failed++; Console.WriteLine("FAIL no model: the rest is skipped"); }
            else
            {
                using (DanuModel m = new DanuModel(modelPath))
                {
                    Section("model", () => TestModel(m));
                    Section("tokenizer", () => TestTokenizer(m));
                    Section("greedy", () => TestGreedy(m));
                    Section("streaming", () => TestStreaming(m));
                    Section("step", () => TestStep(m));
                    Section("step_sliced", () => TestStepSliced(m));
                    Section("abort", () => TestAbort(m));
                    Section("state", () => TestState(m));
                    Section("chat", () => TestChat(m));
                    Section("errors", () => TestErrors(m));
                    Section("constraint", () => TestConstraint(m));
                }
                Section("disposal", TestDisposal);
            }
        }
        finally
        {
            try { Directory.Delete(tmp, true); } catch (IOException) { }
        }
        Console.WriteLine("# {0:F1} s", (DateTime.UtcNow - t0).TotalSeconds);
        Console.WriteLine(passed + " passed, " + failed + " failed");
        return failed == 0 ? 0 : 1;
    }

    static int[] Ints(string line) { return line.Split(' ').Skip(1).Select(int.Parse).ToArray(); }

    static void LoadGolden()
    {
        foreach (string line in File.ReadAllLines(Path.Combine(root, "tests", "data", "golden", "tiny-a.capital.txt")))
        {
            if (line.StartsWith("prompt ")) gPrompt = Ints(line);
            if (line.StartsWith("greedy ")) gGreedy = Ints(line);
        }
    }

    // ---- every P/Invoke against include/danu.h: name, parameter count, types ----------------

    static readonly string[] Handles = { "danu_options", "danu_model", "danu_tokenizer", "danu_context", "danu_decoder", "danu_constraint" };

    // The C# types a C type may be marshaled as (ABI.md rule 5: fixed-width types only).
    static string[] Allowed(string c, bool ret)
    {
        c = System.Text.RegularExpressions.Regex.Replace(c.Replace("*", " * "), @"\s+", " ").Trim();
        switch (c)
        {
        case "void": return new[] { "Void" };
        case "int32_t": case "danu_status": case "danu_param": case "danu_token": case "danu_info": return new[] { "Int32" };
        case "uint32_t": return new[] { "UInt32" };
        case "int64_t": return new[] { "Int64" };
        case "uint64_t": return new[] { "UInt64" };
        case "size_t": return new[] { "UIntPtr" };
        case "float": return new[] { "Single" };
        case "double": return new[] { "Double" };
        case "size_t *": return new[] { "UIntPtr&" };
        case "int64_t *": return new[] { "Int64&", "Int64[]" };
        case "double *": return new[] { "Double&" };
        case "int32_t *": case "danu_token *": return new[] { "Int32&", "Int32[]" };
        case "const danu_token *": return ret ? new[] { "IntPtr" } : new[] { "Int32[]" };
        case "const char *": return ret ? new[] { "IntPtr" } : new[] { "Byte[]" };
        case "char *": return new[] { "Byte[]" };
        case "const char * *": case "int32_t * *": return new[] { "IntPtr&" };
        case "const char * const *": return new[] { "IntPtr[]" };
        case "const void *": case "void *": return new[] { "Byte[]", "IntPtr" };
        case "float *": case "const float *": case "const danu_allocator *": return new[] { "IntPtr" };
        case "danu_token_fn": return new[] { "NativeTokenFn" };
        case "danu_progress_fn": return new[] { "NativeProgressFn" };
        case "danu_log_fn": return new[] { "NativeLogFn" };
        }
        foreach (string h in Handles)
        {
            string cls = h.Substring(5, 1).ToUpper() + h.Substring(6) + "Handle";
            if (c == h + " *" || c == "const " + h + " *") return ret ? new[] { "IntPtr" } : new[] { cls, "IntPtr" };   // IntPtr: the *_free calls
            if (c == h + " * *") return new[] { "IntPtr&" };
        }
        return new[] { "? " + c };
    }

    static void TestDeclarations()
    {
        string h = File.ReadAllText(Path.Combine(root, "include", "danu.h"));
        h = System.Text.RegularExpressions.Regex.Replace(h, @"/\*.*?\*/", " ", System.Text.RegularExpressions.RegexOptions.Singleline);
        var protos = new Dictionary<string, Tuple<string, string[]>>();
        foreach (System.Text.RegularExpressions.Match m in System.Text.RegularExpressions.Regex.Matches(
                     h, @"DANU_API[ \t]+([^;()\n]*?)\s*\b(danu_\w+)\s*\(([^)]*)\)\s*;"))
        {
            string[] ps = m.Groups[3].Value.Trim() == "void" ? new string[0] : m.Groups[3].Value.Split(',');
            for (int i = 0; i < ps.Length; i++)   // drop the parameter name
                ps[i] = System.Text.RegularExpressions.Regex.Replace(ps[i].Trim(), @"\s*\b\w+$", "");
            protos[m.Groups[2].Value] = Tuple.Create(m.Groups[1].Value, ps);
        }
        Check(protos.Count > 80, "danu.h parsed (" + protos.Count + " functions)");
        Type native = typeof(DanuLibrary).Assembly.GetType("Danu.Native");
        int bound = 0;
        var bad = new List<string>();
        foreach (var mi in native.GetMethods(System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.NonPublic))
        {
            if ((mi.Attributes & System.Reflection.MethodAttributes.PinvokeImpl) == 0) continue;
            bound++;
            Tuple<string, string[]> p;
            if (!protos.TryGetValue(mi.Name, out p)) { bad.Add(mi.Name + ": not in danu.h"); continue; }
            var pars = mi.GetParameters();
            if (pars.Length != p.Item2.Length) { bad.Add(mi.Name + ": " + pars.Length + " parameters, danu.h has " + p.Item2.Length); continue; }
            if (!Allowed(p.Item1, true).Contains(mi.ReturnType.Name))
                bad.Add(mi.Name + ": returns " + mi.ReturnType.Name + " for " + p.Item1);
            for (int i = 0; i < pars.Length; i++)
                if (!Allowed(p.Item2[i], false).Contains(pars[i].ParameterType.Name))
                    bad.Add(mi.Name + " parameter " + i + ": " + pars[i].ParameterType.Name + " for " + p.Item2[i] +
                            " (allowed: " + string.Join(", ", Allowed(p.Item2[i], false)) + ")");
        }
        Check(bad.Count == 0, "the " + bound + " P/Invokes match danu.h's prototypes" + (bad.Count == 0 ? "" : ":\n  " + string.Join("\n  ", bad)));
        var unbound = protos.Keys.Where(k => native.GetMethod(k, System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.NonPublic) == null)
                                 .OrderBy(k => k).ToList();
        Console.WriteLine("note not bound (" + unbound.Count + "): " + string.Join(" ", unbound));
    }

    static void TestVersion()
    {
        Eq(DanuLibrary.BindingVersionNumber, DanuLibrary.VersionNumber, "danu_version_number is 0.2.0's");
        Eq("0.2.0", DanuLibrary.Version, "danu_version_string");
        Eq("invalid argument", DanuLibrary.StrError(DanuStatus.InvalidArg), "danu_strerror");
        Eq("bf16", DanuLibrary.TypeName(DanuType.BF16), "danu_type_name");
        string pre = Environment.GetEnvironmentVariable("DANU_LIBRARY");
        Eq(string.IsNullOrEmpty(pre) ? null : pre, DanuLibrary.PreloadedPath, "DANU_LIBRARY preloaded (when set)");
    }

    static void TestOptions()
    {
        using (DanuOptions o = new DanuOptions())
        {
            Eq(0.8, o.Temperature, "default temperature");
            o.Temperature = 0.25;
            o.TopK = 7;
            o.Seed = 42;
            o.IgnoreEos = true;
            o.NCtx = 64;
            Eq(0.25, o.Temperature, "Temperature property");
            Eq(7, o.TopK, "TopK property");
            Eq(42L, o.Seed, "Seed property");
            Check(o.IgnoreEos, "IgnoreEos property");
            DanuException e = Throws(() => o.Temperature = -1);
            Check(e != null && e.Status == DanuStatus.InvalidArg, "negative temperature: InvalidArg");
            Eq(0.25, o.Temperature, "a refused value leaves the option unchanged");
            e = Throws(() => o.Set(DanuOption.Temperature, 1L));
            Check(e != null && e.Status == DanuStatus.Unsupported && e.Detail.Length > 0,
                  "an int for a float key: Unsupported with a message (" + (e == null ? "" : e.Detail) + ")");
            e = Throws(() => o.Set((DanuOption)9999, 1L));
            Check(e != null && e.Status == DanuStatus.Unsupported, "unknown key: Unsupported");
        }
        double min, max;
        Check(DanuLibrary.ParamBounds(DanuOption.TopP, out min, out max) && min == 0 && max == 1, "danu_param_bounds(top_p)");
        Check(!DanuLibrary.ParamBounds((DanuOption)9999, out min, out max), "danu_param_bounds of an unknown key");
        Eq(DanuOption.Temperature, DanuLibrary.ParamFromName("temperature"), "danu_param_from_name");
        Eq((DanuOption)(-1), DanuLibrary.ParamFromName("no_such"), "danu_param_from_name unknown");
    }

    static void TestSynth()
    {
        byte[] spm = File.ReadAllBytes(Path.Combine(root, "tests", "data", "llama2-tokenizer", "tokenizer.model"));
        string p = Path.Combine(tmp, "tiny-a.gguf");
        float last = -1;
        int calls = 0;
        using (DanuOptions o = new DanuOptions())
        {
            o.Progress = f => { calls++; last = f; return true; };
            DanuLibrary.SynthWrite("tiny-a", 7, DanuFormat.Gguf, DanuType.BF16, spm, p, o);
        }
        Check(File.Exists(p), "danu_synth_write tiny-a seed 7 bf16 GGUF");
        Check(calls > 0 && last == 1.0f, "progress callback called, ends at 1 (" + calls + " calls)");
        modelPath = p;
        string p2 = Path.Combine(tmp, "cancelled.gguf");
        using (DanuOptions o = new DanuOptions())
        {
            o.Progress = f => false;
            DanuException e = Throws(() => DanuLibrary.SynthWrite("tiny-a", 7, DanuFormat.Gguf, DanuType.BF16, spm, p2, o));
            Check(e != null && e.Status == DanuStatus.Cancelled && !File.Exists(p2), "progress returning false cancels, nothing left");
        }
        DanuException e2 = Throws(() => DanuLibrary.SynthWrite("no-such-config", 7, DanuFormat.Gguf, DanuType.BF16, spm, p2));
        Check(e2 != null && e2.Status == DanuStatus.InvalidArg, "unknown synth config: InvalidArg");
    }

    static void TestModel(DanuModel m)
    {
        Eq(32000, m.VocabSize, "vocab size");
        Eq(1, m.Bos, "BOS");
        Eq(2, m.Eos, "EOS");
        Eq((long)DanuFormat.Gguf, m.GetInt(DanuInfo.Format), "format GGUF");
        Check(m.GetFloat(DanuInfo.RopeTheta) > 0, "rope theta (float fact)");
        DanuException e = Throws(() => m.GetInt(DanuInfo.RopeTheta));
        Check(e != null && e.Status == DanuStatus.Unsupported, "float fact as int: Unsupported");
        Check(Enumerable.Range(0, m.TensorCount).Select(i => m.Tensor(i)).Any(t => t.Name == "token_embd.weight" && t.Dims.Length == 2 && t.Dims[0] == 32000),
              "danu_model_tensor lists token_embd.weight [32000, hidden] (" + m.TensorCount + " tensors)");
        using (DanuOptions o = new DanuOptions { NCtx = 128 })
        using (DanuContext c = m.CreateContext(o))
            Eq(c.MemorySize, m.EstimateContextMemory(o), "danu_context_memory_estimate equals the context's memory size");
    }

    static void TestTokenizer(DanuModel m)
    {
        DanuTokenizer t = m.Tokenizer;
        Check(t != null && t.VocabSize == 32000, "model tokenizer");
        SeqEq(gPrompt, t.Tokenize("The capital of France is", addBos: true), "tokenize matches the golden prompt");
        foreach (string s in new[] { "Hello, world!", "Grüße aus Köln — naïve café, 日本語のテキスト, emoji 🙂🚀, Ελληνικά", "tabs\tand\nnewlines  " })
        {
            int[] ids = t.Tokenize(s);
            Eq(s, t.Detokenize(ids), "round trip: " + s.Replace("\n", "\\n").Replace("\t", "\\t"));
        }
        string big = string.Concat(Enumerable.Repeat("Zürich ☃ ", 400));
        Eq(big, t.Detokenize(t.Tokenize(big)), "round trip of a long text (buffers retried at the reported size)");
        Eq("\u2581capital", t.Piece(7483), "danu_tokenizer_piece");
        int[] withSpecial = t.Tokenize("<s>hi</s>", parseSpecial: true);
        Check(withSpecial[0] == 1 && withSpecial[withSpecial.Length - 1] == 2, "ParseSpecial turns <s>, </s> into ids");
        using (DanuTokenizer loaded = DanuTokenizer.Load(Path.Combine(root, "tests", "data", "llama2-tokenizer", "tokenizer.model")))
            SeqEq(gPrompt, loaded.Tokenize("The capital of France is", addBos: true), "DanuTokenizer.Load gives the same ids");
        string mixed = "a€😀b";
        int[] mids = t.Tokenize(mixed);
        using (DanuDecoder d = t.CreateDecoder())
        {
            StringBuilder sb = new StringBuilder();
            foreach (int id in mids) sb.Append(d.Push(id));
            sb.Append(d.Flush());
            Eq(mixed, sb.ToString().TrimStart(' '), "streaming decoder gives whole characters");
        }
    }

    static string GreedyText(DanuModel m)
    {
        return m.Tokenizer.Detokenize(gPrompt.Skip(gPrompt.Length - 1).Concat(gGreedy).ToArray())
            .Substring(m.Tokenizer.Detokenize(new[] { gPrompt[gPrompt.Length - 1] }).Length);
    }

    static void TestGreedy(DanuModel m)
    {
        string expect = GreedyText(m);
        string[] texts = new string[2];
        for (int run = 0; run < 2; run++)
            using (DanuContext c = Ctx(m))
            {
                c.Eval(gPrompt);
                List<int> ids = new List<int>();
                StringBuilder sb = new StringBuilder();
                DanuStopReason r = c.Generate(gGreedy.Length, (id, s) => { if (id >= 0) ids.Add(id); sb.Append(s); return false; });
                Eq(DanuStopReason.Length, r, "greedy run " + run + " stops by length");
                if (run == 0) SeqEq(gGreedy, ids, "greedy ids match transformers' golden");
                texts[run] = sb.ToString();
            }
        Eq(expect, texts[0], "greedy text is the golden ids' text");
        Eq(texts[0], texts[1], "greedy generation is deterministic");
        using (DanuContext c = Ctx(m))
        {
            Eq(0.0, c.Temperature, "context Temperature from its options");
            c.Temperature = 0.9;
            c.TopK = 5;
            c.Seed = 3;
            Eq(0.9, c.Temperature, "context Temperature property (danu_context_set_float)");
            Eq(5, c.TopK, "context TopK property (danu_context_set_int)");
            c.Eval(gPrompt);
            string a = c.GenerateText(12);
            c.Prompt(gPrompt);
            c.Seed = 3;
            string b = c.GenerateText(12);
            Eq(a, b, "sampling with the same seed repeats");
            DanuException e = Throws(() => c.Set(DanuOption.NCtx, 10L));
            Check(e != null && e.Status == DanuStatus.Unsupported, "a creation-only key on a live context: Unsupported");
        }
    }

    static void TestStreaming(DanuModel m)
    {
        string viaCallback, viaEnum;
        using (DanuContext c = Ctx(m))
        {
            c.Eval(gPrompt);
            StringBuilder sb = new StringBuilder();
            c.Generate(20, (id, s) => { sb.Append(s); return false; });
            viaCallback = sb.ToString();
        }
        List<string> pieces;
        using (DanuContext c = Ctx(m))
        {
            c.Eval(gPrompt);
            pieces = c.Stream(20).ToList();
            viaEnum = string.Concat(pieces);
            Eq(DanuStopReason.Length, c.LastStopReason, "IEnumerable stream ends by length");
            Eq(gPrompt.Length + 20, c.NTokens, "20 tokens appended");
        }
        Check(pieces.Count > 1, "streamed in pieces (" + pieces.Count + ")");
        Eq(viaCallback, viaEnum, "IEnumerable<string> and callback give the same text");
        using (DanuContext c = Ctx(m))
        {
            c.Eval(gPrompt);
            int n = 0;
            foreach (string s in c.Stream(100)) if (++n == 3) break;
            Eq(gPrompt.Length + 3, c.NTokens, "breaking out of the stream stops generation");
            c.Prompt(gPrompt);
            Eq(viaCallback, string.Concat(c.Stream(20)), "the context streams again after a break");
            int count = 0;
            DanuStopReason r = c.Generate(50, (id, s) => ++count == 4);
            Eq(DanuStopReason.Callback, r, "callback returning true stops (Callback)");
            bool threw = false;
            try { c.Generate(10, (id, s) => { throw new InvalidOperationException("boom"); }); }
            catch (InvalidOperationException ex) { threw = ex.Message == "boom"; }
            Check(threw, "an exception in the callback is rethrown by Generate");
            c.Generate(2, null);
            Check(true, "Generate without a callback");
        }
    }

    static void TestStep(DanuModel m)
    {
        using (DanuContext c = Ctx(m))
        {
            c.Eval(gPrompt);
            StringBuilder sb = new StringBuilder();
            List<int> ids = new List<int>();
            for (int i = 0; i < gGreedy.Length; i++)
            {
                DanuStep s = c.Step();
                ids.Add(s.Token);
                sb.Append(s.Text);
                if (s.Done) break;
            }
            sb.Append(c.FinishSteps());
            SeqEq(gGreedy, ids, "Step() ids are the greedy golden");
            Eq(GreedyText(m), sb.ToString(), "Step texts + FinishSteps = generated text");
        }
        using (DanuContext c = Ctx(m))
        {
            DanuException e = Throws(() => c.Step());
            Check(e != null && e.Status == DanuStatus.State, "step with no logits: DanuException State");
        }
    }

    static void TestStepSliced(DanuModel m)
    {
        using (DanuContext c = Ctx(m))
        {
            // the prompt too, in slices: chat_append_begin / prompt_begin + Work
            c.PromptBegin(gPrompt);
            Check(c.Pending > 0, "prompt queued (" + c.Pending + " tokens pending)");
            int works = 0;
            while (!c.Work(500)) works++;
            Eq(0, c.Pending, "Work() finished the prompt (" + (works + 1) + " slices)");
            StringBuilder sb = new StringBuilder();
            List<int> ids = new List<int>();
            int slices = 0, maxSlices = 0;
            for (int i = 0; i < gGreedy.Length; i++)
            {
                DanuStep s;
                int n = 0;
                do { s = c.StepSliced(TimeSpan.FromMilliseconds(0.1)); n++; } while (s.InProgress);
                slices += n;
                maxSlices = Math.Max(maxSlices, n);
                ids.Add(s.Token);
                sb.Append(s.Text);
                if (s.Done) break;
            }
            sb.Append(c.FinishSteps());
            SeqEq(gGreedy, ids, "StepSliced ids are the greedy golden");
            Eq(GreedyText(m), sb.ToString(), "StepSliced text = generated text");
            Check(maxSlices > 1, "a 100 us budget cuts a token into slices (" + slices + " slices for " + ids.Count + " tokens)");
            DanuStep one = c.StepSliced(1000000);
            Check(!one.InProgress && one.Token >= 0, "a generous budget finishes the step in one call");
            DanuException e = Throws(() => c.StepSliced(-1));
            Check(e != null && e.Status == DanuStatus.InvalidArg, "negative budget: InvalidArg");
        }
    }

    static void TestAbort(DanuModel m)
    {
        using (DanuOptions o = new DanuOptions { Temperature = 0, NCtx = 512, NThreads = 1, IgnoreEos = true })
        using (DanuContext c = m.CreateContext(o))
        {
            c.Eval(gPrompt);
            // the callback waits at token 3 until the other thread's Abort() returned, so the
            // abort lands while Generate runs, however the threads are scheduled
            ManualResetEvent started = new ManualResetEvent(false), aborted = new ManualResetEvent(false);
            Thread aborter = new Thread(() => { started.WaitOne(); c.Abort(); aborted.Set(); });
            aborter.Start();
            int tokens = 0;
            DanuStopReason r = c.Generate(400, (id, txt) =>
            {
                if (++tokens == 3) { started.Set(); aborted.WaitOne(); }
                return false;
            });
            aborter.Join();
            Eq(DanuStopReason.Aborted, r, "Abort() from another thread stops Generate");
            Check(tokens < 400, "stopped early (" + tokens + " tokens)");
            int n = c.NTokens;
            Eq(DanuStopReason.Length, c.Generate(1, null), "Generate goes on after the abort");
            Eq(n + 1, c.NTokens, "and appends its token");
            // libdanu 0.2.0: an abort that stopped danu_context_generate stays set for a
            // danu_context_step that follows at once (it returns ABORTED again), although
            // Generate above clears it. Reported; not the binding's to hide.
            c.Abort();
            DanuStep s = c.Step();
            Eq(DanuStopReason.Aborted, s.Reason, "an abort between two steps stops the next step");
            s = c.Step();
            Check(!s.Done && c.NTokens == n + 2, "and is used up by it (" + s.Reason + ")");
            c.FinishSteps();

            // abort while stepping in slices on a worker thread
            Exception err = null;
            DanuStopReason sr = DanuStopReason.None;
            ManualResetEvent stepping = new ManualResetEvent(false), abortDone = new ManualResetEvent(false);
            Thread worker = new Thread(() =>
            {
                try
                {
                    for (int i = 0; i < 400; i++)
                    {
                        DanuStep st;
                        do
                        {
                            st = c.StepSliced(50);
                            if (i == 0) { stepping.Set(); abortDone.WaitOne(); }
                        } while (st.InProgress);
                        if (st.Done) { sr = st.Reason; break; }
                    }
                }
                catch (Exception ex) { err = ex; }
            });
            worker.Start();
            stepping.WaitOne();
            c.Abort();
            abortDone.Set();
            worker.Join();
            Check(err == null && sr == DanuStopReason.Aborted, "Abort() stops StepSliced on another thread" + (err == null ? "" : ": " + err));
        }
    }

    static void TestState(DanuModel m)
    {
        using (DanuContext c = Ctx(m))
        {
            c.Eval(gPrompt);
            byte[] state = c.SaveState();
            Check(state.Length > 0, "state saved to bytes (" + state.Length + " bytes)");
            string a = c.GenerateText(10);
            string path = Path.Combine(tmp, "état-状態-🙂.danustate");
            c.Clear();
            c.LoadState(state);
            Eq(gPrompt.Length, c.NTokens, "state loaded from bytes");
            string b = c.GenerateText(10);
            Eq(a, b, "generation after loading the bytes repeats");
            c.LoadState(state);
            c.SaveState(path);
            Check(File.Exists(path), "state saved to a file with a non-ASCII path");
            using (DanuContext d = Ctx(m))
            {
                d.LoadState(path);
                SeqEq(gPrompt, d.Tokens, "state loaded from that file into another context");
                Eq(a, d.GenerateText(10), "and it generates the same");
            }
            DanuException e = Throws(() => c.LoadState(new byte[] { 1, 2, 3 }));
            Check(e != null && e.Status == DanuStatus.Format, "corrupt state: Format");
            e = Throws(() => c.LoadState(Path.Combine(tmp, "missing-état")));
            Check(e != null && e.Status == DanuStatus.IO, "missing state file: IO");
            using (DanuContext f = c.Fork())
            {
                SeqEq(c.Tokens, f.Tokens, "Fork copies the cache");
                Eq(c.Temperature, f.Temperature, "Fork keeps the settings");
            }
        }
    }

    static void TestChat(DanuModel m)
    {
        DanuChatMessage[] msgs = { DanuChatMessage.System("Tu es un PNJ aimable."), DanuChatMessage.User("Bonjour, ça va ? 🙂") };
        int[] expect = m.Tokenizer.ChatEncode(msgs, true);
        Check(expect.Length > 8 && expect[0] == 1, "danu_chat_encode");
        using (DanuContext c = Ctx(m))
        {
            c.ChatAppend(msgs, true);
            SeqEq(expect, c.Tokens, "ChatAppend caches the chat encoding");
            string reply = c.GenerateText(8);
            Check(reply != null, "a reply is generated after ChatAppend");
            c.ChatAppend(DanuChatMessage.User("Et ensuite ?"));
            Check(c.NTokens > expect.Length + 8, "a second ChatAppend closes the turn and appends");
        }
        using (DanuContext c = Ctx(m))
        {
            c.ChatAppendBegin(msgs, true);
            while (!c.Work(1000)) { }
            SeqEq(expect, c.Tokens, "ChatAppendBegin + Work caches the same");
        }
        using (DanuContext c = Ctx(m))
        {
            DanuException e = Throws(() => c.ChatAppend(new DanuChatMessage("narrator", "x")));
            Check(e != null && e.Status == DanuStatus.InvalidArg, "unknown role: InvalidArg");
        }
    }

    static void TestErrors(DanuModel m)
    {
        string bad = Path.Combine(tmp, "no-such-modèle.gguf");
        DanuException e = Throws(() => new DanuModel(bad));
        Check(e != null, "loading a missing file throws DanuException");
        if (e != null)
        {
            Eq(DanuStatus.IO, e.Status, "its status is IO");
            Eq("danu_model_load", e.Function, "it names the call");
            Check(e.Detail.Contains("no-such-modèle"), "danu_last_error names the (non-ASCII) path: " + e.Detail);
            Check(e.Message.Contains(DanuLibrary.StrError(DanuStatus.IO)), "the message has danu_strerror: " + e.Message);
        }
        e = Throws(() => m.Tokenizer.Detokenize(new[] { 1, 999999 }));
        Check(e != null && e.Status == DanuStatus.BadToken, "an id outside the vocabulary: BadToken");
        using (DanuContext c = Ctx(m, 16))
        {
            e = Throws(() => c.Eval(Enumerable.Repeat(100, 17).ToArray()));
            Check(e != null && e.Status == DanuStatus.ContextFull, "17 tokens into n_ctx 16: ContextFull");
            e = Throws(() => c.Rewind(5));
            Check(e != null && e.Status == DanuStatus.InvalidArg, "rewind past the end: InvalidArg");
        }
        using (DanuOptions o = new DanuOptions { NCtx = 1 << 20 })
        {
            e = Throws(() => m.CreateContext(o));
            Check(e != null && e.Status == DanuStatus.InvalidArg, "n_ctx above the model's: InvalidArg");
        }
    }

    static void TestConstraint(DanuModel m)
    {
        try
        {
            using (DanuContext c = Ctx(m))
            {
                string[] choices = { "oui", "non", "peut-être" };
                using (DanuConstraint k = DanuConstraint.FromChoices(m.Tokenizer, choices))
                    c.Constraint = k;   // the context keeps its own reference
                Eq(DanuConstraintState.Open, c.ConstraintState, "constraint attached (Open)");
                c.Eval(gPrompt);
                string s = c.GenerateText(20);
                Check(choices.Contains(s), "choices constraint: output is one of them (" + s + ")");
                Check(c.LastStopReason == DanuStopReason.Grammar || c.LastStopReason == DanuStopReason.Eos,
                      "ends by Grammar or Eos (" + c.LastStopReason + ")");
                c.Constraint = null;
                Eq(DanuConstraintState.None, c.ConstraintState, "constraint removed");
                using (DanuConstraint g = DanuConstraint.FromGrammar(m.Tokenizer, "root ::= \"é\" [0-9] [0-9]\n"))
                {
                    c.Constraint = g;
                    c.Prompt(gPrompt);
                    string t = c.GenerateText(20);
                    Check(t.Length == 3 && t[0] == 'é' && char.IsDigit(t[1]) && char.IsDigit(t[2]), "GBNF constraint: " + t);
                }
                DanuException e = Throws(() => DanuConstraint.FromGrammar(m.Tokenizer, "root ::= (\"a\""));
                Check(e != null && e.Status == DanuStatus.InvalidArg && e.Detail.Length > 0, "GBNF syntax error: InvalidArg, " +
                      (e == null ? "" : e.Detail));
            }
            try
            {
                string g = DanuConstraint.JsonSchemaToGrammar("{\"type\":\"integer\"}");
                Check(g.Contains("::="), "JSON Schema to GBNF");
            }
            catch (DanuException e)
            {
                Check(false, "JSON Schema to GBNF: " + e.Message);
            }
        }
        catch (EntryPointNotFoundException e)
        {
            Console.WriteLine("note constraint functions missing from this libdanu: " + e.Message);
        }
    }

    static void TestDisposal()
    {
        DanuModel m = new DanuModel(modelPath);
        DanuContext c = Ctx(m);
        DanuTokenizer t = m.Tokenizer;
        m.Dispose();
        c.Eval(gPrompt);
        Check(c.Step().Token == gGreedy[0], "a context outlives its disposed model (the handle keeps it)");
        bool ode = false;
        try { t.Tokenize("x"); } catch (ObjectDisposedException) { ode = true; }
        Check(ode, "the model's tokenizer goes with the model's Dispose (ObjectDisposedException)");
        Eq(32000, c.Logits.Length, "the context still reads its logits");
        m.Dispose();
        Check(true, "disposing a model twice is harmless");
        c.Dispose();
        c.Dispose();
        Check(true, "disposing a context twice is harmless");
        ode = false;
        try { c.Eval(gPrompt); } catch (ObjectDisposedException) { ode = true; }
        Check(ode, "a disposed context throws ObjectDisposedException");
        c.Abort();
        Check(true, "Abort on a disposed context is a no-op");
        t.Dispose();
        Check(true, "disposing a disposed tokenizer is harmless");
        DanuOptions o = new DanuOptions();
        o.Dispose();
        o.Dispose();
        Check(true, "disposing options twice is harmless");
        // finalizers: drop handles without Dispose and collect
        for (int i = 0; i < 3; i++) { DanuModel mm = new DanuModel(modelPath); mm.CreateContext(); }
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        Check(true, "undisposed models and contexts are finalized without a crash");
    }
}
