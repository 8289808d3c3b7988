// DanuRuntime.cs - loads the model once for the whole game: put one on a
// bootstrap object of the first scene; it survives scene loads
// (DontDestroyOnLoad) and every DanuNpc borrows its model.
//
// The model file goes in Assets/StreamingAssets (copied as is into builds);
// the native library in Assets/Plugins (see README.md).
using System.IO;
using Danu;
using UnityEngine;

[DisallowMultipleComponent]
public sealed class DanuRuntime : MonoBehaviour
{
    [Tooltip("Model file or HF directory, relative to StreamingAssets (a .gguf is one file to ship)")]
    [SerializeField] string modelPath = "npc-model.gguf";

    [Tooltip("Threads each NPC's evaluation may use (0 = every core; leave some to the game)")]
    [Range(0, 16)]
    [SerializeField] int threads = 2;

    static DanuRuntime instance;
    DanuModel model;

    /// <summary>The shared runtime, or null before the first one woke up.</summary>
    public static DanuRuntime Instance { get { return instance; } }

    /// <summary>The shared model (loaded on first use).</summary>
    public DanuModel Model
    {
        get
        {
            if (model == null) Load();
            return model;
        }
    }

    public int Threads { get { return threads; } }

    void Awake()
    {
        if (instance != null && instance != this)
        {
            Destroy(gameObject);   // a second bootstrap object after a scene reload
            return;
        }
        instance = this;
        DontDestroyOnLoad(gameObject);
        Load();
    }

    void Load()
    {
        if (model != null) return;
        string path = Path.Combine(Application.streamingAssetsPath, modelPath);
        try
        {
            // mmap: the weights are paged in from the file, not copied
            using (DanuOptions o = new DanuOptions { UseMmap = true })
                model = new DanuModel(path, o);
            Debug.Log("libdanu " + DanuLibrary.Version + ": loaded " + path + " (" + model.VocabSize + " tokens)");
        }
        catch (DanuException e)
        {
            Debug.LogError("libdanu: cannot load " + path + ": " + e.Message);
        }
    }

    void OnDestroy()
    {
        if (instance != this) return;
        instance = null;
        // Contexts still alive keep the native model until they are disposed.
        if (model != null) model.Dispose();
        model = null;
    }
}
