// DanuNpc.cs - one character: its own context on the shared model, a reply
// generated a slice per frame within a time budget, so the frame rate holds.
//
//   npc.Say("Where is the blacksmith?");   // from dialogue code
//   npc.ReplyChanged += text => ...;        // or let it fill a UI Text
//
// Per frame (Update) it does one bounded piece of work: a slice of the
// prompt's evaluation (danu_context_work) or a slice of the next token
// (danu_context_step_sliced), each about budgetMs. No callback crosses into
// native code, so it runs the same under Mono and IL2CPP.
using System;
using Danu;
using UnityEngine;
using UnityEngine.UI;

public sealed class DanuNpc : MonoBehaviour
{
    [Header("Character")]
    [TextArea(2, 6)]
    [SerializeField] string systemPrompt = "You are Brom, the gruff blacksmith of Eastwatch. Answer in one or two sentences.";

    [Header("Generation")]
    [Tooltip("Milliseconds of the frame this NPC may spend per Update")]
    [Range(0.5f, 16f)]
    [SerializeField] float budgetMs = 4f;
    [SerializeField] int maxTokens = 96;
    [Range(0f, 2f)]
    [SerializeField] float temperature = 0.7f;
    [SerializeField] int contextTokens = 2048;

    [Header("Output")]
    [Tooltip("Optional: shows the reply as it grows; else it is logged when done")]
    [SerializeField] Text uiText;

    enum Phase { Idle, Prompt, Reply }

    DanuContext ctx;
    Phase phase = Phase.Idle;
    bool started;           // the system prompt is in the cache
    int produced;
    string reply = "";

    /// <summary>The reply so far, whenever it grows.</summary>
    public event Action<string> ReplyChanged;
    /// <summary>The whole reply, once it is finished.</summary>
    public event Action<string> ReplyFinished;

    public bool Busy { get { return phase != Phase.Idle; } }

    void Start()
    {
        DanuRuntime rt = DanuRuntime.Instance;
        if (rt == null || rt.Model == null)
        {
            Debug.LogError(name + ": no DanuRuntime with a model in the scene");
            enabled = false;
            return;
        }
        int nCtx = Math.Min(contextTokens, rt.Model.ContextLength);   // small test models have short ones
        using (DanuOptions o = new DanuOptions { NCtx = nCtx, Temperature = temperature, NThreads = rt.Threads })
        {
            o.Seed = GetInstanceID();   // each NPC samples differently
            ctx = rt.Model.CreateContext(o);
        }
        ctx.AddStopString("<|prompt|>");   // never speak for the player
    }

    /// <summary>The player says something: queue it; the reply streams in over the next frames.</summary>
    public void Say(string playerLine)
    {
        if (ctx == null) return;
        Cancel();
        DanuChatMessage[] msgs = started
            ? new[] { DanuChatMessage.User(playerLine) }
            : new[] { DanuChatMessage.System(systemPrompt), DanuChatMessage.User(playerLine) };
        try
        {
            ctx.ChatAppendBegin(msgs, true);   // encodes now, evaluates in Update's slices
        }
        catch (DanuException e) when (e.Status == DanuStatus.ContextFull)
        {
            ctx.Clear();                       // a long conversation: start over with the system prompt
            started = false;
            ctx.ChatAppendBegin(new[] { DanuChatMessage.System(systemPrompt), DanuChatMessage.User(playerLine) }, true);
        }
        started = true;
        phase = Phase.Prompt;
        produced = 0;
        Show("");
    }

    void Update()
    {
        if (ctx == null || phase == Phase.Idle) return;
        long budgetUs = (long)(budgetMs * 1000f);
        try
        {
            if (phase == Phase.Prompt)
            {
                if (ctx.Work(budgetUs)) phase = Phase.Reply;   // prompt evaluated: reply from the next frame
                return;
            }
            DanuStep step = ctx.StepSliced(budgetUs);
            if (step.InProgress) return;                    // the token needs more frames
            produced++;
            if (step.Text.Length > 0) Show(reply + step.Text);
            if (step.Done || produced >= maxTokens)
            {
                if (!step.Done) Show(reply + ctx.FinishSteps());   // our own token limit: take what is held back
                Finish();
            }
        }
        catch (DanuException e)
        {
            Debug.LogWarning(name + ": " + e.Message);
            phase = Phase.Idle;
        }
    }

    void Show(string text)
    {
        reply = text;
        if (uiText != null) uiText.text = text;
        Action<string> h = ReplyChanged;
        if (h != null) h(text);
    }

    void Finish()
    {
        phase = Phase.Idle;
        if (uiText == null) Debug.Log(name + ": " + reply);
        Action<string> h = ReplyFinished;
        if (h != null) h(reply);
    }

    /// <summary>Stop a reply in progress (pending work is dropped; the context stays usable).</summary>
    public void Cancel()
    {
        if (ctx == null || phase == Phase.Idle) return;
        ctx.Abort();
        try
        {
            // a zero-budget call takes the abort: it drops queued prompt work (Work throws
            // Aborted) or stops the step in flight (Reason Aborted)
            if (phase == Phase.Prompt) ctx.Work(0);
            else for (int i = 0; i < 64 && ctx.StepSliced(0).InProgress; i++) { }
        }
        catch (DanuException) { }
        try { ctx.FinishSteps(); } catch (DanuException) { }
        phase = Phase.Idle;
    }

    // Scene change, object disabled or destroyed: stop at once, free the context.
    void OnDisable() { Cancel(); }

    void OnDestroy()
    {
        if (ctx == null) return;
        ctx.Abort();
        ctx.Dispose();
        ctx = null;
    }
}
