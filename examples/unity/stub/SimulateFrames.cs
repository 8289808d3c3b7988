// SimulateFrames.cs - drives examples/unity the way Unity would (Awake,
// Start, Update once per frame, OnDisable, OnDestroy) on the UnityEngine
// stub, against a synthetic model: run by bindings/csharp/run_tests.sh.
//   mono SimulateFrames.exe SOURCE_ROOT
using System;
using System.Diagnostics;
using System.IO;
using System.Reflection;
using Danu;

static class SimulateFrames
{
    static int failed;

    static void Check(bool ok, string what)
    {
        Console.WriteLine((ok ? "ok   " : "FAIL ") + what);
        if (!ok) failed++;
    }

    static void Call(object o, string method)
    {
        o.GetType().GetMethod(method, BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public).Invoke(o, null);
    }

    static void SetField(object o, string field, object value)
    {
        o.GetType().GetField(field, BindingFlags.Instance | BindingFlags.NonPublic).SetValue(o, value);
    }

    // Update until the reply is finished; returns frames, the slowest frame in ms
    static int RunFrames(DanuNpc npc, int limit, out double slowestMs)
    {
        slowestMs = 0;
        int frames = 0;
        Stopwatch sw = new Stopwatch();
        while (npc.Busy && frames < limit)
        {
            sw.Restart();
            Call(npc, "Update");
            slowestMs = Math.Max(slowestMs, sw.Elapsed.TotalMilliseconds);
            frames++;
        }
        return frames;
    }

    static int Main(string[] args)
    {
        string root = args[0];
        string assets = Path.Combine(Path.GetTempPath(), "danu-unity-" + Guid.NewGuid().ToString("N").Substring(0, 8));
        Directory.CreateDirectory(assets);
        try
        {
            byte[] spm = File.ReadAllBytes(Path.Combine(root, "tests", "data", "llama2-tokenizer", "tokenizer.model"));
            DanuLibrary.SynthWrite("tiny-a", 7, DanuFormat.Gguf, DanuType.BF16, spm, Path.Combine(assets, "npc-model.gguf"));
            Environment.SetEnvironmentVariable("UNITY_STUB_STREAMING_ASSETS", assets);

            DanuRuntime rt = new DanuRuntime();
            Call(rt, "Awake");
            Check(DanuRuntime.Instance == rt && rt.Model != null, "DanuRuntime.Awake loads the model once");
            DanuRuntime second = new DanuRuntime();
            Call(second, "Awake");
            Check(DanuRuntime.Instance == rt, "a second DanuRuntime leaves the first in charge");

            DanuNpc a = new DanuNpc { name = "Brom" }, b = new DanuNpc { name = "Ilse" };
            SetField(a, "budgetMs", 2f);
            SetField(b, "maxTokens", 8);
            Call(a, "Start");
            Call(b, "Start");
            string finished = null;
            a.ReplyFinished += t => finished = t;
            int grew = 0;
            a.ReplyChanged += t => grew++;

            a.Say("Where is the blacksmith?");
            b.Say("Hallo, wie geht's? 🙂");
            double slowA, slowB;
            int framesA = RunFrames(a, 10000, out slowA);
            int framesB = RunFrames(b, 10000, out slowB);
            Check(!a.Busy && finished != null, "a reply finished after " + framesA + " frames (slowest " + slowA.ToString("F1") +
                  " ms at a 2 ms budget): " + (finished ?? "").Replace("\n", "\\n"));
            Check(framesA > 1 && grew > 1, "it was produced over many frames (" + grew + " updates)");
            Check(!b.Busy && framesB > 1, "a second NPC on the same model replied (" + framesB + " frames, max 8 tokens)");

            a.Say("And the armourer?");
            for (int i = 0; i < 5; i++) Call(a, "Update");
            Check(a.Busy, "a second question is in progress");
            Call(a, "OnDisable");   // scene change
            Check(!a.Busy, "OnDisable cancels it");
            finished = null;
            a.Say("Still there?");
            RunFrames(a, 10000, out slowA);
            Check(finished != null, "the NPC replies again after the cancel");

            Call(a, "OnDestroy");
            Call(a, "OnDestroy");
            Call(b, "OnDestroy");
            Call(rt, "OnDestroy");
            Check(DanuRuntime.Instance == null, "OnDestroy frees the contexts and the model");
        }
        finally
        {
            try { Directory.Delete(assets, true); } catch (IOException) { }
        }
        Console.WriteLine(failed == 0 ? "unity example: all checks passed" : "unity example: " + failed + " failed");
        return failed == 0 ? 0 : 1;
    }
}
