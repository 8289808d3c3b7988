/* hfdir.c - a Hugging Face checkpoint directory: config.json, optional
 * tokenizer/generation configs, tokenizer.model, and the weights in
 * model.safetensors or in shards listed by model.safetensors.index.json. */
#include <stdlib.h>
#include <string.h>
#include "format/safetensors.h"
#include "common/error.h"
#include "common/os.h"

#define CONFIG_MAX_BYTES ((size_t)16 << 20)

/* Read and parse dir/name. A missing optional file leaves *out NULL. */
static danu_status load_json(const dn_alloc *a, const char *dir, const char *name, int required, dn_json **out)
{
    *out = NULL;
    char *path = dn_path_join(a, dir, name);
    if (!path) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", dir);
    danu_status st = DANU_OK;
    if (!dn_file_exists(path)) {
        if (required) st = dn_seterr(DANU_ERR_FORMAT, "%s: missing (not a Hugging Face model directory?)", path);
        dn_free(a, path);
        return st;
    }
    char *text;
    size_t len;
    st = dn_read_file(path, a, CONFIG_MAX_BYTES, &text, &len);
    if (st == DANU_OK) {
        st = dn_json_parse(a, text, len, path, out);
        dn_free(a, text);
    }
    if (st == DANU_OK && (*out)->type != DN_JSON_OBJECT) {
        st = dn_seterr(DANU_ERR_FORMAT, "%s: top level is not a JSON object", path);
        dn_json_free(a, *out);
        *out = NULL;
    }
    dn_free(a, path);
    return st;
}

/* A shard must be a plain file name inside the directory. */
static int plain_file_name(const dn_json *v)
{
    if (v->type != DN_JSON_STRING || v->str_len == 0 || strlen(v->str) != v->str_len) return 0;
    return !strchr(v->str, '/') && !strchr(v->str, '\\') && !strstr(v->str, "..") && strcmp(v->str, ".") != 0;
}

static int str_ptr_cmp(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static int64_t find_shard(const dn_hfdir *h, const char *name)
{
    size_t lo = 0, hi = (size_t)h->n_shards; /* shard_names is sorted */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(h->shard_names[mid], name);
        if (c == 0) return (int64_t)mid;
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return -1;
}

/* Shard names from the index's weight_map: validated, sorted, distinct. */
static danu_status shards_from_index(const dn_alloc *a, const dn_json *index, const char *what, dn_hfdir *h)
{
    const dn_json *wm = dn_json_get(index, "weight_map");
    if (!wm || wm->type != DN_JSON_OBJECT)
        return dn_seterr(DANU_ERR_FORMAT, "%s: missing object \"weight_map\"", what);
    if (wm->n == 0) return dn_seterr(DANU_ERR_FORMAT, "%s: \"weight_map\" is empty", what);
    for (size_t i = 0; i < wm->n; i++)
        if (!plain_file_name(&wm->items[i]))
            return dn_seterr(DANU_ERR_FORMAT, "%s: weight_map entry for '%s' is not a plain file name in the directory",
                             what, wm->keys[i]);
    const char **names = dn_malloc(a, wm->n * sizeof *names);
    if (!names) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < wm->n; i++) names[i] = wm->items[i].str;
    qsort(names, wm->n, sizeof *names, str_ptr_cmp);
    size_t n = 0;
    for (size_t i = 0; i < wm->n; i++)
        if (n == 0 || strcmp(names[n - 1], names[i]) != 0) names[n++] = names[i];
    if (n > INT32_MAX) { dn_free(a, names); return dn_seterr(DANU_ERR_FORMAT, "%s: too many shards", what); }
    danu_status st = DANU_OK;
    h->shard_names = dn_calloc(a, n, sizeof *h->shard_names);
    if (!h->shard_names) st = dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < n && st == DANU_OK; i++) {
        h->shard_names[i] = dn_strdup(a, names[i]);
        h->n_shards = (int32_t)(i + 1);
        if (!h->shard_names[i]) st = dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", what);
    }
    dn_free(a, names);
    return st;
}

static int desc_ptr_cmp(const void *x, const void *y)
{
    const dn_tensor_desc *a = *(const dn_tensor_desc *const *)x, *b = *(const dn_tensor_desc *const *)y;
    return strcmp(a->name, b->name);
}

static const dn_tensor_desc *find_sorted(const dn_tensor_desc *const *s, int64_t n, const char *name)
{
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s[mid]->name, name);
        if (c == 0) return s[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

/* No name twice across shards; with an index, every weight_map entry is in
 * the shard it names. */
static danu_status check_tensors(const dn_alloc *a, const dn_hfdir *h, const dn_json *index, const char *index_path)
{
    if (h->n_tensors == 0 && !index) return DANU_OK;
    const dn_tensor_desc **s = dn_malloc(a, (size_t)h->n_tensors * sizeof *s);
    if (!s) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", h->dir);
    for (int64_t i = 0; i < h->n_tensors; i++) s[i] = &h->tensors[i];
    qsort(s, (size_t)h->n_tensors, sizeof *s, desc_ptr_cmp);
    danu_status st = DANU_OK;
    for (int64_t i = 1; i < h->n_tensors && st == DANU_OK; i++)
        if (strcmp(s[i - 1]->name, s[i]->name) == 0)
            st = dn_seterr(DANU_ERR_FORMAT, "%s: tensor '%s' appears twice (in %s and %s)", h->dir, s[i]->name,
                           h->shard_names[s[i - 1]->file_index], h->shard_names[s[i]->file_index]);
    const dn_json *wm = index ? dn_json_get(index, "weight_map") : NULL;
    for (size_t i = 0; wm && i < wm->n && st == DANU_OK; i++) {
        const dn_tensor_desc *t = find_sorted(s, h->n_tensors, wm->keys[i]);
        int64_t want = find_shard(h, wm->items[i].str);
        if (!t)
            st = dn_seterr(DANU_ERR_FORMAT, "%s: tensor '%s' is listed in weight_map but not found in %s",
                           index_path, wm->keys[i], wm->items[i].str);
        else if (t->file_index != want)
            st = dn_seterr(DANU_ERR_FORMAT, "%s: tensor '%s' is listed in %s but found in %s", index_path,
                           wm->keys[i], wm->items[i].str, h->shard_names[t->file_index]);
    }
    dn_free(a, s);
    return st;
}

static danu_status open_weights(const dn_alloc *a, dn_hfdir *h, int use_mmap, const dn_logger *lg,
                                danu_progress_fn progress, void *progress_user)
{
    dn_json *index = NULL;
    char *index_path = NULL, *path = NULL;
    danu_status st = DANU_OK;
    char *single = dn_path_join(a, h->dir, "model.safetensors");
    if (!single) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", h->dir);
    int have_single = dn_file_exists(single);
    dn_free(a, single);
    if (have_single) {
        h->shard_names = dn_calloc(a, 1, sizeof *h->shard_names);
        if (!h->shard_names) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", h->dir);
        h->n_shards = 1;
        h->shard_names[0] = dn_strdup(a, "model.safetensors");
        if (!h->shard_names[0]) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", h->dir);
    } else {
        index_path = dn_path_join(a, h->dir, "model.safetensors.index.json");
        if (!index_path) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", h->dir);
        if (!dn_file_exists(index_path)) {
            st = dn_seterr(DANU_ERR_FORMAT, "%s: no weights: neither model.safetensors nor model.safetensors.index.json",
                           h->dir);
            goto done;
        }
        st = load_json(a, h->dir, "model.safetensors.index.json", 1, &index);
        if (st == DANU_OK) st = shards_from_index(a, index, index_path, h);
        if (st != DANU_OK) goto done;
    }

    h->shards = dn_calloc(a, (size_t)h->n_shards, sizeof *h->shards);
    if (!h->shards) { st = dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", h->dir); goto done; }
    /* sizes first, so that progress can report a fraction of all bytes */
    uint64_t total = 0, loaded = 0;
    for (int32_t i = 0; i < h->n_shards; i++) {
        uint64_t fsize = 0;
        path = dn_path_join(a, h->dir, h->shard_names[i]);
        if (!path) { st = dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", h->dir); goto done; }
        if (dn_file_size(path, &fsize) != 0) {
            st = dn_seterr(DANU_ERR_FORMAT, "%s: shard %s is missing%s%s", h->dir, h->shard_names[i],
                           index ? ", listed in " : "", index ? index_path : "");
            goto done;
        }
        total += fsize;
        dn_free(a, path);
        path = NULL;
    }
    int64_t cap = 0;
    for (int32_t i = 0; i < h->n_shards; i++) {
        path = dn_path_join(a, h->dir, h->shard_names[i]);
        if (!path) { st = dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", h->dir); goto done; }
        st = dn_map_file(path, use_mmap, a, &h->shards[i]);
        if (st == DANU_OK)
            st = dn_safetensors_parse(a, h->shards[i].data, h->shards[i].size, path, i, &h->tensors, &h->n_tensors, &cap);
        dn_free(a, path);
        path = NULL;
        if (st != DANU_OK) goto done;
        loaded += h->shards[i].size;
        if (progress) {
            double f = i == h->n_shards - 1 || total == 0 ? 1.0 : (double)loaded / (double)total;
            if (progress(progress_user, (float)(f > 1.0 ? 1.0 : f)) != 0) {
                st = dn_seterr(DANU_ERR_CANCELLED, "%s: loading cancelled by the progress callback after shard %d of %d",
                               h->dir, i + 1, h->n_shards);
                goto done;
            }
        }
    }
    st = check_tensors(a, h, index, index_path);
    if (st == DANU_OK)
        dn_log(lg, DANU_LOG_INFO, "%s: %d safetensors shard%s, %lld tensors, %llu bytes", h->dir, h->n_shards,
               h->n_shards == 1 ? "" : "s", (long long)h->n_tensors, (unsigned long long)total);
done:
    dn_free(a, path);
    dn_free(a, index_path);
    dn_json_free(a, index);
    return st;
}

danu_status dn_hfdir_open(const dn_alloc *a, const char *dir, int use_mmap, const dn_logger *lg,
                          danu_progress_fn progress, void *progress_user, dn_hfdir *out)
{
    if (!out) return dn_seterr(DANU_ERR_INVALID_ARG, "dn_hfdir_open: out is NULL");
    memset(out, 0, sizeof *out);
    if (!a || !dir) return dn_seterr(DANU_ERR_INVALID_ARG, "dn_hfdir_open: NULL allocator or directory");
    if (!dn_is_dir(dir)) return dn_seterr(DANU_ERR_IO, "%s: not a directory", dir);
    danu_status st = DANU_OK;
    out->dir = dn_strdup(a, dir);
    if (!out->dir) st = dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", dir);
    if (st == DANU_OK) st = load_json(a, dir, "config.json", 1, &out->config);
    if (st == DANU_OK) st = load_json(a, dir, "tokenizer_config.json", 0, &out->tokenizer_config);
    if (st == DANU_OK) st = load_json(a, dir, "generation_config.json", 0, &out->generation_config);
    if (st == DANU_OK) {
        out->tokenizer_model_path = dn_path_join(a, dir, "tokenizer.model");
        if (!out->tokenizer_model_path) st = dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", dir);
        else if (!dn_file_exists(out->tokenizer_model_path)) {
            dn_free(a, out->tokenizer_model_path);
            out->tokenizer_model_path = NULL;
        }
    }
    if (st == DANU_OK) st = open_weights(a, out, use_mmap, lg, progress, progress_user);
    if (st != DANU_OK) dn_hfdir_close(a, out);
    return st;
}

void dn_hfdir_close(const dn_alloc *a, dn_hfdir *h)
{
    if (!h) return;
    for (int32_t i = 0; i < h->n_shards; i++) {
        if (h->shards) dn_unmap_file(a, &h->shards[i]);
        if (h->shard_names) dn_free(a, h->shard_names[i]);
    }
    dn_free(a, h->shards);
    dn_free(a, h->shard_names);
    dn_tensor_descs_free(a, h->tensors, h->n_tensors);
    dn_json_free(a, h->config);
    dn_json_free(a, h->tokenizer_config);
    dn_json_free(a, h->generation_config);
    dn_free(a, h->tokenizer_model_path);
    dn_free(a, h->dir);
    memset(h, 0, sizeof *h);
}

const dn_tensor_desc *dn_hfdir_find(const dn_hfdir *h, const char *name)
{
    if (!h || !name) return NULL;
    for (int64_t i = 0; i < h->n_tensors; i++)
        if (strcmp(h->tensors[i].name, name) == 0) return &h->tensors[i];
    return NULL;
}
