"""schema_outputs.py - random generations under JSON Schemas, each output
checked by Python's json module and a schema validator written here (not
libdanu's grammar): about a thousand seeded generations with tiny-a, whose
random weights pick odd tokens (byte pieces, split UTF-8, spaces), at a high
temperature with no top-k. Every finished output (stop reason "grammar" or
"eos") must parse and validate; an output cut by max_tokens must be a
prefix (counted; the Check suite test_grammar checks prefixes exactly).
Seed N of each schema is greedy.

Run by meson (suite "bindings") with DANU_LIBRARY set, or by hand:
    DANU_LIBRARY=build/lib/libdanu.so python3 tests/constraints/schema_outputs.py [N]
"""
import json
import os
import sys
import tempfile
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("DANU_SOURCE_ROOT") or os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
import danu  # noqa: E402

CHARACTER = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 24},
        "class": {"enum": ["warrior", "mage", "rogue", "cleric", "ranger", "bard"]},
        "level": {"type": "integer", "minimum": 1, "maximum": 60},
        "stats": {
            "type": "object",
            "properties": {k: {"type": "integer", "minimum": 0, "maximum": 20} for k in ("str", "dex", "int", "wis")},
            "required": ["str", "dex", "int", "wis"],
            "additionalProperties": False,
        },
        "inventory": {
            "type": "array", "maxItems": 5,
            "items": {"type": "object", "properties": {"item": {"type": "string", "maxLength": 16},
                                                       "qty": {"type": "integer", "minimum": 1, "maximum": 99}},
                      "required": ["item", "qty"]},
        },
        "mood": {"enum": ["calm", "angry", "afraid"]},
        "alive": {"type": "boolean"},
    },
    "required": ["name", "class", "level", "stats"],
}

SCHEMAS = [
    ("character", CHARACTER),
    ("numbers", {"type": "object",
                 "properties": {"a": {"type": "integer", "minimum": -123, "maximum": 4567},
                                "b": {"type": "integer", "exclusiveMinimum": 7},
                                "c": {"type": "integer", "maximum": -12},
                                "x": {"type": "number"}},
                 "required": ["a", "b", "c"]}),
    ("strings", {"type": "array", "minItems": 1, "maxItems": 4,
                 "items": {"type": "string", "minLength": 2, "maxLength": 6}}),
    ("union", {"anyOf": [{"type": "null"}, {"type": "boolean"}, {"type": "integer", "minimum": 0, "maximum": 9},
                         {"const": {"k": [1, "\u00e9\"\\"]}}, {"enum": ["a\nb", "\u6f22\u5b57"]}]}),
    ("tree", {"$defs": {"node": {"type": "object",
                                 "properties": {"v": {"type": "integer"},
                                                "kids": {"type": "array", "maxItems": 2,
                                                         "items": {"$ref": "#/$defs/node"}}},
                                 "required": ["v"], "additionalProperties": False}},
              "$ref": "#/$defs/node"}),
    ("map", {"type": "object", "additionalProperties": {"type": ["string", "null"], "maxLength": 3}}),
    ("any", {}),
]


class Invalid(Exception):
    pass


def resolve(root, ref):
    if ref == "#":
        return root
    parts = ref[2:].split("/")
    node = root
    for p in parts:
        node = node[p.replace("~1", "/").replace("~0", "~")]
    return node


def type_of(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def validate(v, s, root, path="$"):
    if s is True or s == {}:
        return
    if "$ref" in s:
        validate(v, resolve(root, s["$ref"]), root, path)
    if "anyOf" in s or "oneOf" in s:
        errs = []
        for sub in s.get("anyOf", s.get("oneOf")):
            try:
                validate(v, sub, root, path)
                break
            except Invalid as e:
                errs.append(str(e))
        else:
            raise Invalid("%s: no alternative matches (%s)" % (path, "; ".join(errs)))
    if "const" in s and v != s["const"]:
        raise Invalid("%s: %r is not the const %r" % (path, v, s["const"]))
    if "enum" in s and not any(v == e and type_of(v) == type_of(e) for e in s["enum"]):
        raise Invalid("%s: %r not in enum" % (path, v))
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        t = type_of(v)
        if not (t in types or (t == "integer" and "number" in types)):
            raise Invalid("%s: %r is %s, not %s" % (path, v, t, types))
    if isinstance(v, bool):
        return
    if isinstance(v, int):
        if "minimum" in s and v < s["minimum"]:
            raise Invalid("%s: %d < minimum" % (path, v))
        if "maximum" in s and v > s["maximum"]:
            raise Invalid("%s: %d > maximum" % (path, v))
        if "exclusiveMinimum" in s and v <= s["exclusiveMinimum"]:
            raise Invalid("%s: %d <= exclusiveMinimum" % (path, v))
        if "exclusiveMaximum" in s and v >= s["exclusiveMaximum"]:
            raise Invalid("%s: %d >= exclusiveMaximum" % (path, v))
    if isinstance(v, str):
        if len(v) < s.get("minLength", 0) or len(v) > s.get("maxLength", 1 << 30):
            raise Invalid("%s: length %d outside the bounds" % (path, len(v)))
    if isinstance(v, list):
        if len(v) < s.get("minItems", 0) or len(v) > s.get("maxItems", 1 << 30):
            raise Invalid("%s: %d items outside the bounds" % (path, len(v)))
        if "items" in s:
            for i, x in enumerate(v):
                validate(x, s["items"], root, "%s[%d]" % (path, i))
    if isinstance(v, dict):
        props = s.get("properties", {})
        for k in s.get("required", []):
            if k not in v:
                raise Invalid("%s: required %r missing" % (path, k))
        for k, x in v.items():
            if k in props:
                validate(x, props[k], root, "%s.%s" % (path, k))
            elif props or s.get("additionalProperties", True) is False:
                raise Invalid("%s: extra member %r" % (path, k))
            elif isinstance(s.get("additionalProperties"), dict):
                validate(x, s["additionalProperties"], root, "%s.%s" % (path, k))
        order = [k for k in props if k in v]
        if list(k for k in v if k in props) != order:
            raise Invalid("%s: members not in the schema's order" % path)


def main():
    # under sanitizers (tests/sanitize.sh preloads ASan for Python) a tenth of
    # the generations: the point there is memory safety, not coverage
    light = "asan" in os.environ.get("LD_PRELOAD", "")
    per_schema = int(sys.argv[1]) if len(sys.argv) > 1 else 15 if light else 150
    tmp = tempfile.mkdtemp(prefix="danu-schema-")
    try:
        path = os.path.join(tmp, "tiny-a.gguf")
        danu.synth_write(path, os.path.join(ROOT, "tests", "data", "llama2-tokenizer", "tokenizer.model"), "tiny-a",
                         7, "gguf", "bf16")
        model = danu.Model(path)
        tok = model.tokenizer
        total = finished = cut = 0
        for name, schema in SCHEMAS:
            c = danu.Constraint.json_schema(model, schema)
            for seed in range(per_schema + 1):
                greedy = seed == per_schema
                ctx = danu.Context(model, n_ctx=512, seed=seed, temperature=0.0 if greedy else 1.6, top_k=0,
                                   top_p=1.0, min_p=0.0)
                ctx.set_constraint(c)
                ctx.prompt(tok.encode(["Answer:", "JSON", "x", " {"][seed % 4], add_bos=True))
                text = "".join(ctx.generate(160))
                reason = ctx.stop_reason
                total += 1
                if reason in ("grammar", "eos"):
                    try:
                        v = json.loads(text)
                        validate(v, schema, schema)
                    except (ValueError, Invalid) as e:
                        raise SystemExit("schema %s seed %d: %r invalid: %s" % (name, seed, text, e))
                    finished += 1
                elif reason == "length":
                    cut += 1   # a string or number the random model kept growing: a prefix
                else:
                    raise SystemExit("schema %s seed %d: stop reason %s" % (name, seed, reason))
                ctx.close()
            c.close()
        if finished < total // 2:
            raise SystemExit("only %d of %d generations finished" % (finished, total))
        print("%d generations (%d finished and valid, %d cut at max_tokens)" % (total, finished, cut))
        print("%d passed, 0 failed" % total)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
