/* fuzz_json.c - dn_json_parse on arbitrary bytes (not NUL-terminated: the
 * input is copied to an exact-size block so ASan sees any over-read), then
 * a walk of the whole tree with the typed getters on every object key. */
#include "fuzz_common.h"
#include "common/json.h"
#include "common/error.h"

static void walk(const dn_json *j, int depth)
{
    FZ_ASSERT(depth <= 70);
    switch (j->type) {
    case DN_JSON_STRING:
        FZ_ASSERT(j->str && strlen(j->str) <= j->str_len);
        fz_touch(j->str, j->str_len + 1);
        break;
    case DN_JSON_OBJECT:
        for (size_t i = 0; i < j->n; i++) {
            const char *k = j->keys[i];
            fz_touch(k, strlen(k) + 1);
            int64_t iv; double d; int b;
            (void)dn_json_get_int(j, k, &iv);
            (void)dn_json_get_num(j, k, &d);
            (void)dn_json_get_bool(j, k, &b);
            (void)dn_json_get_str(j, k);
            FZ_ASSERT(dn_json_get(j, k) != NULL);
        }
        /* fall through */
    case DN_JSON_ARRAY:
        for (size_t i = 0; i < j->n; i++) walk(&j->items[i], depth + 1);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    memcpy(text, data, size);
    dn_json *root = NULL;
    danu_status s = dn_json_parse(dn_alloc_libc(), text, size, "fuzz.json", &root);
    if (s == DANU_OK) {
        FZ_ASSERT(root);
        walk(root, 0);
        dn_json_free(dn_alloc_libc(), root);
    } else {
        FZ_ASSERT(root == NULL && dn_lasterr()[0]);
    }
    free(text);
    return 0;
}
