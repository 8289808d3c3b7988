#!/usr/bin/env python3
"""hdrcheck.py - read danu.h and turn the baseline's promises into C checks.

  hdrcheck.py gen BASELINE_H CURRENT_H
                                 C source (compiled after #include "danu.h" of
                                 the CURRENT header) whose _Static_asserts fail
                                 when a baseline function, typedef, struct
                                 member or enumerator changed or disappeared.
  hdrcheck.py funcs HEADER       the DANU_API function names, one a line.
  hdrcheck.py doc HEADER ABI.md  fails unless ABI.md's function list names
                                 exactly the header's DANU_API functions.
  hdrcheck.py docs HEADER        fails unless every DANU_API function has its
                                 own doc block right before it with all parts
                                 (see check_docs); prints per-part counts.

The parser understands the subset of C that danu.h is allowed to use
(docs/style: no unions, bitfields, varargs or nested structs) and stops with
an error on anything else, so a new construct forces an update here instead
of being skipped silently.
"""
import re
import sys

IDENT = re.compile(r"[A-Za-z_]\w*")


class HeaderError(Exception):
    pass


def strip_comments(text):
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise HeaderError("unterminated comment")
            out.append(" " + "\n" * text.count("\n", i, j))
            i = j + 2
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text[i] == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def preprocess(text):
    """Drop preprocessor lines and the C++-only blocks; collect #defines."""
    lines, macros, skip = [], {}, 0
    for raw in strip_comments(text).replace("\\\n", " ").split("\n"):
        line = raw.strip()
        if line.startswith("#"):
            d = line[1:].strip()
            if skip:
                if d.startswith("if"):
                    skip += 1
                elif d.startswith("endif"):
                    skip -= 1
                continue
            if re.match(r"ifdef\s+__cplusplus\b", d):
                skip = 1
                continue
            m = re.match(r"define\s+(DANU_\w+)\s+(.+)$", d)
            if m and "(" not in m.group(1):
                macros[m.group(1)] = m.group(2).strip()
            continue
        if not skip:
            lines.append(raw)
    return " ".join(lines), macros


def statements(text):
    """Top-level declarations, split at ';' outside braces, whitespace folded."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == ";" and depth == 0:
            s = " ".join("".join(cur).split())
            if s:
                out.append(s)
            cur = []
        else:
            cur.append(ch)
    if " ".join("".join(cur).split()):
        raise HeaderError("text after the last ';': " + "".join(cur).strip()[:60])
    return out


def member_name(decl):
    m = re.search(r"\(\s*\*\s*(\w+)\s*\)", decl)
    if m:
        return m.group(1)
    decl = re.sub(r"\[[^\]]*\]", "", decl)
    names = IDENT.findall(decl)
    if not names:
        raise HeaderError("no member name in: " + decl)
    return names[-1]


def parse(text):
    body, macros = preprocess(text)
    h = {"functions": [], "structs": [], "opaque": [], "typedefs": [], "enums": [], "macros": macros}
    for st in statements(body):
        if st.startswith("DANU_API "):
            decl = st[len("DANU_API "):]
            m = re.search(r"(\w+)\s*\(", decl)
            if not m or not m.group(1).startswith("danu_"):
                raise HeaderError("cannot read prototype: " + st)
            h["functions"].append((m.group(1), decl, m.start(1)))
        elif st.startswith("typedef struct") and "{" in st:
            m = re.match(r"typedef struct (\w+) \{(.*)\} (\w+)$", st)
            if not m or m.group(1) != m.group(3):
                raise HeaderError("unsupported struct typedef: " + st[:80])
            inner = [s.strip() for s in m.group(2).split(";") if s.strip()]
            for s in inner:
                if "{" in s or ":" in s or "union" in s:
                    raise HeaderError("nested aggregate or bitfield in " + m.group(1))
            h["structs"].append((m.group(1), inner))
        elif st.startswith("typedef struct"):
            m = re.match(r"typedef struct (\w+) (\w+)$", st)
            if not m or m.group(1) != m.group(2):
                raise HeaderError("unsupported typedef: " + st)
            h["opaque"].append(m.group(1))
        elif st.startswith("typedef "):
            if "{" in st or "enum" in st or "union" in st:
                raise HeaderError("unsupported typedef: " + st[:80])
            h["typedefs"].append((member_name(st[len("typedef "):]), st))
        elif st.startswith("enum"):
            m = re.match(r"enum (\w+ )?\{(.*)\}$", st)
            if not m:
                raise HeaderError("unsupported enum: " + st[:80])
            items = []
            for item in m.group(2).split(","):
                item = item.strip()
                if not item:
                    continue
                name, _, expr = item.partition("=")
                items.append((name.strip(), expr.strip() or None))
            h["enums"].append(((m.group(1) or "").strip() or None, items))
        else:
            raise HeaderError("unsupported declaration: " + st[:80])
    return h


def gen(base, cur):
    """C checks of the current header against the baseline (both parsed).
    Most promises are left to the compiler; only the order of struct
    members needs the current header's text: a member inserted into padding
    keeps every old offset and size, yet old callers leave it uninitialised
    and struct_size cannot tell, so new members must come after the old ones
    and past the old sizeof."""
    cur_structs = dict(cur["structs"])
    o = ["/* generated by tests/abi/hdrcheck.py from the baseline danu.h */",
         "#include <stddef.h>",
         "#define DN_ABI_SAME(a, T) _Generic((a), T: 1, default: 0)"]
    major = base["macros"].get("DANU_VERSION_MAJOR")
    if major is not None:
        o.append('_Static_assert(DANU_VERSION_MAJOR == %s, "DANU_VERSION_MAJOR changed: a new major '
                 'version needs a new baseline");' % major)
        o.append('_Static_assert(DANU_VERSION_NUMBER >= %s * 10000 + %s * 100 + %s, "version went backwards");'
                 % (major, base["macros"].get("DANU_VERSION_MINOR", "0"), base["macros"].get("DANU_VERSION_PATCH", "0")))
    for name in base["opaque"]:
        o.append('_Static_assert(DN_ABI_SAME((%s *)0, struct %s *), "opaque type %s changed");' % (name, name, name))
    for name, st in base["typedefs"]:
        alias = "dn_abi_base_" + name
        decl = re.sub(r"\b%s\b" % name, alias, st, count=1)
        o.append(decl + ";")
        o.append('_Static_assert(DN_ABI_SAME((%s)0, %s), "typedef %s changed");' % (name, alias, name))
    for name, members in base["structs"]:
        base_tag = "dn_abi_base_" + name
        o.append("struct %s { %s; };" % (base_tag, "; ".join(members)))
        o.append('_Static_assert(sizeof(%s) >= sizeof(struct %s), "struct %s shrank");' % (name, base_tag, name))
        old = [member_name(m) for m in members]
        new = [member_name(m) for m in cur_structs.get(name, [])]
        if name in cur_structs and new[:len(old)] != old:
            o.append('#error "struct %s: baseline members %s must stay first and in order (now %s)"'
                     % (name, " ".join(old), " ".join(new)))
        for m in new[len(old):]:
            o.append('_Static_assert(offsetof(%s, %s) >= sizeof(struct %s), "%s.%s must start past the '
                     'baseline sizeof");' % (name, m, base_tag, name, m))
        for mem in members:
            m = member_name(mem)
            o.append('_Static_assert(offsetof(%s, %s) == offsetof(struct %s, %s), '
                     '"%s.%s moved (members may only be appended)");' % (name, m, base_tag, m, name, m))
            o.append('_Static_assert(sizeof(((%s *)0)->%s) == sizeof(((struct %s *)0)->%s), '
                     '"%s.%s changed size");' % (name, m, base_tag, m, name, m))
            o.append('_Static_assert(DN_ABI_SAME(((%s *)0)->%s, __typeof__(((struct %s *)0)->%s)), '
                     '"%s.%s changed type");' % (name, m, base_tag, m, name, m))
    all_enum = {n for _, items in base["enums"] for n, _ in items}
    for i, (tag, items) in enumerate(base["enums"]):
        parts = []
        for n, expr in items:
            if expr is not None:
                expr = IDENT.sub(lambda x: "dn_abi_base_" + x.group(0) if x.group(0) in all_enum else x.group(0), expr)
            parts.append("dn_abi_base_" + n + (" = " + expr if expr is not None else ""))
        o.append("enum { %s };" % ", ".join(parts))
        for n, _ in items:
            o.append('_Static_assert((long long)%s == (long long)dn_abi_base_%s, "value of %s changed");' % (n, n, n))
    for name, decl, pos in base["functions"]:
        alias = "dn_abi_fn_" + name
        o.append("typedef " + decl[:pos] + "(*" + alias + ")" + decl[pos + len(name):] + ";")
        o.append('_Static_assert(DN_ABI_SAME(&%s, %s), "signature of %s changed");' % (name, alias, name))
    o.append("int main(void) { return 0; }")
    o.append("/* checked: %d functions, %d typedefs, %d opaque types, %d structs, %d enumerators */"
             % (len(base["functions"]), len(base["typedefs"]), len(base["opaque"]), len(base["structs"]),
                len(all_enum)))
    return "\n".join(o) + "\n"


def doc_check(header, md_text):
    funcs = {n for n, _, _ in header["functions"]}
    m = re.search(r"<!-- abi-functions -->(.*?)<!-- /abi-functions -->", md_text, re.S)
    if not m:
        return ["ABI.md has no <!-- abi-functions --> ... <!-- /abi-functions --> list"]
    listed = set(re.findall(r"^\s*[-|*]\s*`(danu_\w+)", m.group(1), re.M))
    errs = ["ABI.md does not list %s" % n for n in sorted(funcs - listed)]
    errs += ["ABI.md lists %s, which danu.h does not declare" % n for n in sorted(listed - funcs)]
    return errs


DOC_TAGS = ("CONSTRUCTOR", "DESTRUCTOR", "METHOD", "FUNCTION")
DOC_PARTS = ("block", "summary", "params", "return", "errors", "thread", "since")


def split_params(decl):
    """Parameter names of a prototype (no names for `(void)`)."""
    inner = decl[decl.index("(") + 1:decl.rindex(")")].strip()
    if inner in ("", "void"):
        return []
    return [member_name(p.strip()) for p in inner.split(",")]


def doc_blocks(text):
    """(name, return type, parameter names, doc text or None) for each DANU_API
    prototype, in header order. The doc is the /** ... */ block that ends
    right before the prototype (only whitespace between), its leading '*'s
    removed; a block shared by two prototypes belongs to the first only."""
    out = []
    for m in re.finditer(r"^DANU_API\s+([^;]*);", text, re.M):
        decl = " ".join(m.group(1).split())
        nm = re.search(r"(danu_\w+)\s*\(", decl)
        if not nm:
            raise HeaderError("cannot read prototype: " + decl[:80])
        before = text[:m.start()].rstrip()
        doc = None
        if before.endswith("*/"):
            start = before.rfind("/*")
            if before.startswith("/**", start):
                body = before[start + 3:-2]
                doc = "\n".join(re.sub(r"^\s*\*?", "", line).strip() for line in body.split("\n")).strip()
        out.append((nm.group(1), decl[:nm.start(1)].strip(), split_params(decl[nm.start(1):]), doc))
    return out


def check_docs(text):
    """Errors (list of str) and per-part counts of the function docs. A block
    must have: a summary ("TAG. text", TAG one of DOC_TAGS); "@param NAME" for
    each parameter and none for a name the prototype lacks; "@return" unless
    the function returns void (then none: clang -Wdocumentation); an
    "Errors:" list when the function returns a danu_status; "Thread:"; and
    "@since MAJOR.MINOR" not newer than the header's version."""
    _, macros = preprocess(text)
    try:
        version = (int(macros["DANU_VERSION_MAJOR"]), int(macros["DANU_VERSION_MINOR"]))
    except (KeyError, ValueError):
        raise HeaderError("no DANU_VERSION_MAJOR / DANU_VERSION_MINOR")
    errs, counts, blocks = [], dict.fromkeys(DOC_PARTS, 0), doc_blocks(text)
    for name, ret, params, doc in blocks:
        if doc is None:
            errs.append("%s: no /** ... */ block right before its prototype" % name)
            continue
        counts["block"] += 1
        missing = []
        if re.match(r"(%s)\.\s+\S.{8,}" % "|".join(DOC_TAGS), doc):
            counts["summary"] += 1
        else:
            missing.append("a summary line 'TAG. text' (TAG: %s)" % ", ".join(DOC_TAGS))
        documented = re.findall(r"@param\s+(\w+)", doc)
        lacking = [p for p in params if p not in documented]
        extra = [p for p in documented if p not in params]
        if lacking:
            missing.append("@param " + ", @param ".join(lacking))
        if extra:
            errs.append("%s: @param %s is not a parameter" % (name, ", ".join(extra)))
        if not lacking and not extra:
            counts["params"] += 1
        has_return = re.search(r"@return\b", doc) is not None
        if ret == "void" and has_return:   # clang -Wdocumentation refuses it
            errs.append("%s: @return on a function returning void" % name)
        elif ret == "void" or has_return:
            counts["return"] += 1
        else:
            missing.append("@return")
        if ret != "danu_status" or re.search(r"\bErrors:", doc):
            counts["errors"] += 1
        else:
            missing.append("an 'Errors:' list (it returns a danu_status)")
        if re.search(r"\bThread:\s*\S", doc):
            counts["thread"] += 1
        else:
            missing.append("a 'Thread:' rule")
        since = re.search(r"@since\s+(\d+)\.(\d+)\b", doc)
        if not since:
            missing.append("@since MAJOR.MINOR")
        elif (int(since.group(1)), int(since.group(2))) > version:
            errs.append("%s: @since %s.%s is newer than the header's version %d.%d"
                        % (name, since.group(1), since.group(2), version[0], version[1]))
        else:
            counts["since"] += 1
        if missing:
            errs.append("%s: doc lacks %s" % (name, "; ".join(missing)))
    return errs, counts, len(blocks)


def main(argv):
    if len(argv) < 3 or argv[1] not in ("gen", "funcs", "doc", "docs"):
        sys.stderr.write(__doc__)
        return 2
    try:
        with open(argv[2], encoding="utf-8") as f:
            text = f.read()
        h = parse(text)
        if argv[1] == "docs":
            errs, counts, n = check_docs(text)
    except (OSError, HeaderError) as e:
        sys.stderr.write("hdrcheck: %s: %s\n" % (argv[2], e))
        return 1
    if argv[1] == "docs":
        for e in errs:
            sys.stderr.write("hdrcheck: %s\n" % e)
        sys.stdout.write("%d functions; documented parts: %s\n"
                         % (n, ", ".join("%s %d" % (k, counts[k]) for k in DOC_PARTS)))
        return 1 if errs else 0
    if argv[1] == "gen":
        try:
            with open(argv[3], encoding="utf-8") as f:
                cur = parse(f.read())
        except (OSError, HeaderError, IndexError) as e:
            sys.stderr.write("hdrcheck: current header: %s\n" % e)
            return 1
        sys.stdout.write(gen(h, cur))
    elif argv[1] == "funcs":
        sys.stdout.write("".join(n + "\n" for n, _, _ in h["functions"]))
    else:
        try:
            with open(argv[3], encoding="utf-8") as f:
                errs = doc_check(h, f.read())
        except (OSError, IndexError) as e:
            errs = ["cannot read the document: %s" % e]
        for e in errs:
            sys.stderr.write("hdrcheck: %s\n" % e)
        return 1 if errs else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
