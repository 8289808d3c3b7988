// UnityEngine.cs - a stub of the few UnityEngine types examples/unity uses,
// so that bindings/csharp/run_tests.sh can compile the example with mcs
// (meson test 'csharp') and drive it frame by frame (SimulateFrames.cs).
// Signatures follow Unity's; Debug writes to the console and
// streamingAssetsPath comes from UNITY_STUB_STREAMING_ASSETS.
// Add a member here when the example starts using it.
using System;

namespace UnityEngine
{
    public class Object
    {
        public string name { get; set; }
        public int GetInstanceID() { return 0; }
        public static void Destroy(Object obj) { }
        public static void DontDestroyOnLoad(Object target) { }
    }

    public class GameObject : Object { }

    public class Component : Object
    {
        public GameObject gameObject { get { return null; } }
    }

    public class Behaviour : Component
    {
        bool on = true;
        public bool enabled { get { return on; } set { on = value; } }
    }

    public class MonoBehaviour : Behaviour { }

    public static class Debug
    {
        public static void Log(object message) { Console.WriteLine("[unity] " + message); }
        public static void LogWarning(object message) { Console.WriteLine("[unity warning] " + message); }
        public static void LogError(object message) { Console.WriteLine("[unity error] " + message); }
    }

    public static class Application
    {
        public static string streamingAssetsPath
        {
            get { return Environment.GetEnvironmentVariable("UNITY_STUB_STREAMING_ASSETS") ?? ""; }
        }
    }

    [AttributeUsage(AttributeTargets.Field)]
    public sealed class SerializeField : Attribute { }

    [AttributeUsage(AttributeTargets.Field)]
    public sealed class TooltipAttribute : Attribute { public TooltipAttribute(string tooltip) { } }

    [AttributeUsage(AttributeTargets.Field)]
    public sealed class HeaderAttribute : Attribute { public HeaderAttribute(string header) { } }

    [AttributeUsage(AttributeTargets.Field)]
    public sealed class RangeAttribute : Attribute { public RangeAttribute(float min, float max) { } }

    [AttributeUsage(AttributeTargets.Field)]
    public sealed class TextAreaAttribute : Attribute { public TextAreaAttribute(int minLines, int maxLines) { } }

    [AttributeUsage(AttributeTargets.Class)]
    public sealed class DisallowMultipleComponent : Attribute { }
}

namespace UnityEngine.UI
{
    public class Text : MonoBehaviour
    {
        public virtual string text { get; set; }
    }
}
