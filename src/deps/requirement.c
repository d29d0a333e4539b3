/*
 * requirement.c — PEP 440, PEP 508 and PEP 503 (see requirement.h).
 *
 * Versions are parsed into their parts once and compared as PEP 440's
 * sort key (the one the `packaging` library uses): epoch, release without
 * trailing zeros, then pre, post and dev with the infinities that make
 * 1.0.dev0 < 1.0a1 < 1.0 < 1.0.post1, then the local label.
 */
#include "requirement.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RELEASE 16
#define MAX_DIGITS 18 /* fits a long long */
#define MAX_VERSION 128
#define MAX_DEPTH 32

/* The sandbox's marker environment: what the guest itself reports. */
static const char *const ENVIRONMENT[][2] = {
    {"python_version", "3.11"},       {"python_full_version", "3.11.2"},
    {"os_name", "posix"},             {"sys_platform", "wasi"},
    {"platform_system", "wasi"},      {"platform_machine", "wasm32"},
    {"platform_release", "0.0.0"},    {"platform_version", ""},
    {"implementation_name", "cpython"}, {"implementation_version", "3.11.2"},
    {"platform_python_implementation", "CPython"},
    {"python_implementation", "CPython"}, /* the pre-PEP 508 spelling */
};

static int say(char *error, size_t error_size, const char *format, ...) {
    if (error && error_size) {
        va_list args;
        va_start(args, format);
        vsnprintf(error, error_size, format, args);
        va_end(args);
    }
    return -1;
}

int deps_normalize_name(const char *name, char *out, size_t out_size) {
    size_t n = 0;
    int separator = 0;
    if (out_size) out[0] = '\0';
    if (!name[0] || !isalnum((unsigned char)name[0])) return -1;
    for (const char *p = name; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '-' || c == '_' || c == '.') {
            separator = 1;
            continue;
        }
        if (!isalnum(c)) goto bad;
        if (separator && n + 1 < out_size) out[n++] = '-';
        separator = 0;
        if (n + 1 >= out_size) goto bad;
        out[n++] = (char)tolower(c);
    }
    if (separator) goto bad; /* a name ends with a letter or digit */
    out[n] = '\0';
    return 0;
bad:
    if (out_size) out[0] = '\0';
    return -1;
}

/* --- PEP 440 versions ------------------------------------------------------------- */

typedef struct version {
    long long epoch;
    long long release[MAX_RELEASE];
    int release_count;
    int pre_kind; /* -1 none, 0 a, 1 b, 2 rc */
    long long pre;
    int has_post;
    long long post;
    int has_dev;
    long long dev;
    char local[MAX_VERSION]; /* lowercased, '.'-separated; "" for none */
} version;

static int number(const char **p, long long *out) {
    int digits = 0;
    long long value = 0;
    while (isdigit((unsigned char)**p)) {
        if (++digits > MAX_DIGITS) return -1;
        value = value * 10 + (**p - '0');
        (*p)++;
    }
    *out = value;
    return digits ? 0 : -1;
}

static int separator(char c) {
    return c == '.' || c == '-' || c == '_';
}

/* Matches one of `words` (case-insensitive) at *p; its index or -1. */
static int word(const char **p, const char *const *words, int count) {
    int best = -1;
    size_t best_length = 0;
    for (int i = 0; i < count; i++) {
        size_t n = strlen(words[i]);
        if (n > best_length && strncasecmp(*p, words[i], n) == 0) best = i, best_length = n;
    }
    if (best >= 0) *p += best_length;
    return best;
}

/* An optional separator and number after a pre/post/dev word (implicit 0). */
static int implicit_number(const char **p, long long *out) {
    const char *q = *p;
    if (separator(*q)) q++;
    if (isdigit((unsigned char)*q)) {
        *p = q;
        return number(p, out);
    }
    *out = 0;
    return 0;
}

static int parse_version(const char *text, version *v) {
    memset(v, 0, sizeof *v);
    v->pre_kind = -1;
    const char *p = text;
    while (isspace((unsigned char)*p)) p++;
    if (*p == 'v' || *p == 'V') p++;
    long long first;
    if (number(&p, &first) != 0) return -1;
    if (*p == '!') {
        v->epoch = first;
        p++;
        if (number(&p, &first) != 0) return -1;
    }
    v->release[v->release_count++] = first;
    while (*p == '.' && isdigit((unsigned char)p[1])) {
        p++;
        if (v->release_count == MAX_RELEASE || number(&p, &v->release[v->release_count++]) != 0)
            return -1;
    }
    static const char *const pre_words[] = {"a", "b", "c", "rc", "alpha", "beta", "pre", "preview"};
    static const int pre_kinds[] = {0, 1, 2, 2, 0, 1, 2, 2};
    const char *q = p;
    if (separator(*q)) q++;
    int kind = word(&q, pre_words, 8);
    if (kind >= 0) {
        p = q;
        v->pre_kind = pre_kinds[kind];
        if (implicit_number(&p, &v->pre) != 0) return -1;
    }
    static const char *const post_words[] = {"post", "rev", "r"};
    q = p;
    if (*q == '-' && isdigit((unsigned char)q[1])) {
        p = q + 1;
        v->has_post = 1;
        if (number(&p, &v->post) != 0) return -1;
    } else {
        if (separator(*q)) q++;
        if (word(&q, post_words, 3) >= 0) {
            p = q;
            v->has_post = 1;
            if (implicit_number(&p, &v->post) != 0) return -1;
        }
    }
    static const char *const dev_words[] = {"dev"};
    q = p;
    if (separator(*q)) q++;
    if (word(&q, dev_words, 1) >= 0) {
        p = q;
        v->has_dev = 1;
        if (implicit_number(&p, &v->dev) != 0) return -1;
    }
    if (*p == '+') {
        p++;
        size_t n = 0;
        int segment = 0;
        while (isalnum((unsigned char)*p) || separator(*p)) {
            if (separator(*p)) {
                if (!segment) return -1;
                segment = 0;
                if (n + 1 >= sizeof v->local) return -1;
                v->local[n++] = '.';
            } else {
                if (n + 1 >= sizeof v->local) return -1;
                v->local[n++] = (char)tolower((unsigned char)*p);
                segment = 1;
            }
            p++;
        }
        if (!segment) return -1;
        v->local[n] = '\0';
    }
    while (isspace((unsigned char)*p)) p++;
    return *p ? -1 : 0;
}

static int compare_numbers(long long a, long long b) {
    return a < b ? -1 : a > b;
}

static int compare_local(const char *a, const char *b) {
    if (!*a || !*b) return *a ? 1 : *b ? -1 : 0; /* no label sorts first */
    while (*a && *b) {
        size_t na = strcspn(a, "."), nb = strcspn(b, ".");
        int numeric_a = strspn(a, "0123456789") == na, numeric_b = strspn(b, "0123456789") == nb;
        int order;
        if (numeric_a && numeric_b) {
            /* Compare digit strings without converting: skip leading zeros. */
            while (na > 1 && *a == '0') a++, na--;
            while (nb > 1 && *b == '0') b++, nb--;
            order = na != nb ? (na < nb ? -1 : 1) : strncmp(a, b, na);
        } else if (numeric_a != numeric_b) {
            order = numeric_a ? 1 : -1; /* numbers sort after letters */
        } else {
            order = strncmp(a, b, na < nb ? na : nb);
            if (!order) order = na < nb ? -1 : na > nb;
        }
        if (order) return order < 0 ? -1 : 1;
        a += na + (a[na] == '.');
        b += nb + (b[nb] == '.');
    }
    return *a ? 1 : *b ? -1 : 0;
}

static int compare_versions(const version *a, const version *b, int with_local) {
    int order = compare_numbers(a->epoch, b->epoch);
    if (order) return order;
    int n = a->release_count > b->release_count ? a->release_count : b->release_count;
    for (int i = 0; i < n; i++) {
        order = compare_numbers(i < a->release_count ? a->release[i] : 0,
                                i < b->release_count ? b->release[i] : 0);
        if (order) return order;
    }
    /* pre: a dev release of a final sorts before its pre-releases; no pre
     * sorts after every pre. */
    int rank_a = a->pre_kind >= 0 ? a->pre_kind : (!a->has_post && a->has_dev) ? -1 : 3;
    int rank_b = b->pre_kind >= 0 ? b->pre_kind : (!b->has_post && b->has_dev) ? -1 : 3;
    if ((order = compare_numbers(rank_a, rank_b))) return order;
    if (a->pre_kind >= 0 && (order = compare_numbers(a->pre, b->pre))) return order;
    if ((order = compare_numbers(a->has_post, b->has_post))) return order;
    if (a->has_post && (order = compare_numbers(a->post, b->post))) return order;
    if ((order = compare_numbers(!a->has_dev, !b->has_dev))) return order;
    if (a->has_dev && (order = compare_numbers(a->dev, b->dev))) return order;
    return with_local ? compare_local(a->local, b->local) : 0;
}

static int is_prerelease(const version *v) {
    return v->pre_kind >= 0 || v->has_dev;
}

int deps_version_compare(const char *a, const char *b, int *order, char *error,
                         size_t error_size) {
    version x, y;
    if (parse_version(a, &x) != 0) return say(error, error_size, "invalid version '%.100s'", a);
    if (parse_version(b, &y) != 0) return say(error, error_size, "invalid version '%.100s'", b);
    *order = compare_versions(&x, &y, 1);
    return 0;
}

int deps_version_is_prerelease(const char *text) {
    version v;
    return parse_version(text, &v) != 0 ? -1 : is_prerelease(&v);
}

/* --- specifiers ------------------------------------------------------------------------ */

typedef enum { OP_ARBITRARY, OP_COMPATIBLE, OP_EQUAL, OP_NOT_EQUAL, OP_LESS_EQUAL,
               OP_GREATER_EQUAL, OP_LESS, OP_GREATER } operator_kind;

typedef struct clause {
    operator_kind op;
    int wildcard;
    char text[MAX_VERSION]; /* the version as written (for ===) */
    version v;
} clause;

static int parse_clause(const char *start, size_t length, clause *c, char *error,
                        size_t error_size) {
    static const char *const operators[] = {"===", "~=", "==", "!=", "<=", ">=", "<", ">"};
    while (length && isspace((unsigned char)*start)) start++, length--;
    while (length && isspace((unsigned char)start[length - 1])) length--;
    int op = -1;
    for (int i = 0; i < 8 && op < 0; i++) {
        size_t n = strlen(operators[i]);
        if (length >= n && strncmp(start, operators[i], n) == 0) {
            op = i;
            start += n;
            length -= n;
        }
    }
    while (length && isspace((unsigned char)*start)) start++, length--;
    if (op < 0 || length == 0 || length >= sizeof c->text)
        return say(error, error_size, "invalid specifier '%.*s'", (int)(length < 100 ? length : 100),
                   start);
    c->op = (operator_kind)op;
    memcpy(c->text, start, length);
    c->text[length] = '\0';
    if (c->op == OP_ARBITRARY) return 0;
    c->wildcard = length > 2 && strcmp(c->text + length - 2, ".*") == 0;
    char text[MAX_VERSION];
    snprintf(text, sizeof text, "%s", c->text);
    if (c->wildcard) text[length - 2] = '\0';
    if ((c->wildcard && c->op != OP_EQUAL && c->op != OP_NOT_EQUAL) ||
        parse_version(text, &c->v) != 0 ||
        (c->wildcard && (c->v.pre_kind >= 0 || c->v.has_post || c->v.has_dev || c->v.local[0])) ||
        (c->op == OP_COMPATIBLE && c->v.release_count < 2) ||
        (c->v.local[0] && c->op != OP_EQUAL && c->op != OP_NOT_EQUAL))
        return say(error, error_size, "invalid specifier '%.100s'", c->text);
    return 0;
}

/* ==V.*: the epoch and the first releases of the candidate (padded with
 * zeros) equal V's. */
static int prefix_matches(const version *candidate, const version *prefix, int length) {
    if (candidate->epoch != prefix->epoch) return 0;
    for (int i = 0; i < length; i++)
        if ((i < candidate->release_count ? candidate->release[i] : 0) != prefix->release[i])
            return 0;
    return 1;
}

static int same_release(const version *a, const version *b) {
    version x = *a, y = *b;
    x.pre_kind = y.pre_kind = -1;
    x.has_post = y.has_post = x.has_dev = y.has_dev = 0;
    x.local[0] = y.local[0] = '\0';
    return compare_versions(&x, &y, 0) == 0;
}

static int clause_contains(const clause *c, const version *v, const char *text) {
    int order = compare_versions(v, &c->v, c->v.local[0] != 0);
    switch (c->op) {
    case OP_ARBITRARY: {
        const char *start = text;
        while (isspace((unsigned char)*start)) start++;
        size_t n = strlen(start);
        while (n && isspace((unsigned char)start[n - 1])) n--;
        return strlen(c->text) == n && strncasecmp(start, c->text, n) == 0;
    }
    case OP_COMPATIBLE:
        return compare_versions(v, &c->v, 0) >= 0 &&
               prefix_matches(v, &c->v, c->v.release_count - 1);
    case OP_EQUAL:
        return c->wildcard ? prefix_matches(v, &c->v, c->v.release_count) : order == 0;
    case OP_NOT_EQUAL:
        return c->wildcard ? !prefix_matches(v, &c->v, c->v.release_count) : order != 0;
    case OP_LESS_EQUAL:
        return compare_versions(v, &c->v, 0) <= 0;
    case OP_GREATER_EQUAL:
        return compare_versions(v, &c->v, 0) >= 0;
    case OP_LESS:
        /* <V excludes V's own pre-releases unless V is one. */
        return compare_versions(v, &c->v, 0) < 0 &&
               !(!is_prerelease(&c->v) && is_prerelease(v) && same_release(v, &c->v));
    case OP_GREATER:
        /* >V excludes V's post-releases unless V is one (and V+local). */
        return compare_versions(v, &c->v, 0) > 0 &&
               !(!c->v.has_post && v->has_post && same_release(v, &c->v));
    }
    return 0;
}

int deps_specifier_contains(const char *specifier, const char *version_text, int allow_prereleases,
                            int *contains, char *error, size_t error_size) {
    version v;
    if (parse_version(version_text, &v) != 0)
        return say(error, error_size, "invalid version '%.100s'", version_text);
    int inside = 1, names_prerelease = 0;
    for (const char *start = specifier;;) {
        const char *comma = strchr(start, ',');
        size_t length = comma ? (size_t)(comma - start) : strlen(start);
        int blank = 1;
        for (size_t i = 0; i < length; i++) blank &= isspace((unsigned char)start[i]) != 0;
        if (blank && (comma || start != specifier))
            return say(error, error_size, "invalid specifier '%.100s'", specifier);
        if (!blank) {
            clause c;
            if (parse_clause(start, length, &c, error, error_size) != 0) return -1;
            if (c.op != OP_ARBITRARY && is_prerelease(&c.v)) names_prerelease = 1;
            if (!clause_contains(&c, &v, version_text)) inside = 0;
        }
        if (!comma) break;
        start = comma + 1;
    }
    if (is_prerelease(&v) && !allow_prereleases && !names_prerelease) inside = 0;
    *contains = inside;
    return 0;
}

/* --- PEP 508 markers ------------------------------------------------------------------ */

typedef struct marker_parser {
    const char *p;
    const char *extra; /* normalised, "" for none */
    char *error;
    size_t error_size;
    int depth;
    int evaluate; /* 0: only check the syntax */
} marker_parser;

static void skip_space(marker_parser *m) {
    while (isspace((unsigned char)*m->p)) m->p++;
}

static int keyword(marker_parser *m, const char *word) {
    size_t n = strlen(word);
    if (strncmp(m->p, word, n) != 0 || isalnum((unsigned char)m->p[n]) || m->p[n] == '_')
        return 0;
    m->p += n;
    skip_space(m);
    return 1;
}

/* A value: a quoted string or an environment variable.  *is_extra when
 * it is the `extra` variable. */
static int marker_value(marker_parser *m, char *out, size_t out_size, int *is_extra) {
    *is_extra = 0;
    if (*m->p == '"' || *m->p == '\'') {
        char quote = *m->p++;
        const char *end = strchr(m->p, quote);
        if (!end || (size_t)(end - m->p) >= out_size)
            return say(m->error, m->error_size, "unterminated or long string in marker");
        memcpy(out, m->p, (size_t)(end - m->p));
        out[end - m->p] = '\0';
        m->p = end + 1;
        skip_space(m);
        return 0;
    }
    const char *start = m->p;
    while (isalnum((unsigned char)*m->p) || *m->p == '_' || *m->p == '.') m->p++;
    size_t n = (size_t)(m->p - start);
    if (n == 5 && strncmp(start, "extra", 5) == 0) {
        *is_extra = 1;
        snprintf(out, out_size, "%s", m->extra);
        skip_space(m);
        return 0;
    }
    for (size_t i = 0; i < sizeof ENVIRONMENT / sizeof *ENVIRONMENT; i++)
        if (strlen(ENVIRONMENT[i][0]) == n && strncmp(start, ENVIRONMENT[i][0], n) == 0) {
            snprintf(out, out_size, "%s", ENVIRONMENT[i][1]);
            skip_space(m);
            return 0;
        }
    return say(m->error, m->error_size, n ? "unsupported marker variable '%.*s'"
                                          : "marker: a value expected at '%.20s'",
               (int)(n < 60 ? n : 60), n ? start : m->p);
}

static int marker_or(marker_parser *m, int *result);

static int marker_comparison(marker_parser *m, int *result) {
    static const char *const operators[] = {"===", "==", "!=", "<=", ">=", "~=", "<", ">"};
    char left[DEPS_MARKER_MAX], right[DEPS_MARKER_MAX], op[8] = "";
    int left_extra, right_extra;
    if (marker_value(m, left, sizeof left, &left_extra) != 0) return -1;
    for (int i = 0; i < 8 && !op[0]; i++)
        if (strncmp(m->p, operators[i], strlen(operators[i])) == 0) {
            memcpy(op, operators[i], strlen(operators[i]) + 1);
            m->p += strlen(operators[i]);
            skip_space(m);
        }
    if (!op[0]) {
        if (keyword(m, "in")) snprintf(op, sizeof op, "in");
        else if (keyword(m, "not") && keyword(m, "in")) snprintf(op, sizeof op, "not in");
        else return say(m->error, m->error_size, "marker: an operator expected at '%.20s'", m->p);
    }
    if (marker_value(m, right, sizeof right, &right_extra) != 0) return -1;
    if (!m->evaluate) return 0;
    if (left_extra || right_extra) {
        /* Extras compare as normalised names. */
        char a[DEPS_NAME_MAX] = "", b[DEPS_NAME_MAX] = "";
        deps_normalize_name(left, a, sizeof a);
        deps_normalize_name(right, b, sizeof b);
        if (!strcmp(op, "==")) *result = a[0] && !strcmp(a, b);
        else if (!strcmp(op, "!=")) *result = !(a[0] && !strcmp(a, b));
        else return say(m->error, m->error_size, "marker: extra compared with '%s'", op);
        return 0;
    }
    if (!strcmp(op, "in") || !strcmp(op, "not in")) {
        *result = (strstr(right, left) != NULL) == !strcmp(op, "in");
        return 0;
    }
    /* Versions when both sides are; strings otherwise (as `packaging`). */
    char specifier[DEPS_MARKER_MAX + 8];
    int contains;
    snprintf(specifier, sizeof specifier, "%s%s", op, right);
    if (deps_specifier_contains(specifier, left, 1, &contains, NULL, 0) == 0) {
        *result = contains;
        return 0;
    }
    int order = strcmp(left, right);
    if (!strcmp(op, "==") || !strcmp(op, "===")) *result = order == 0;
    else if (!strcmp(op, "!=")) *result = order != 0;
    else return say(m->error, m->error_size, "marker: '%s' needs versions", op);
    return 0;
}

static int marker_atom(marker_parser *m, int *result) {
    if (*m->p == '(') {
        if (++m->depth > MAX_DEPTH) return say(m->error, m->error_size, "marker nested too deeply");
        m->p++;
        skip_space(m);
        if (marker_or(m, result) != 0) return -1;
        if (*m->p != ')') return say(m->error, m->error_size, "marker: ')' expected");
        m->p++;
        m->depth--;
        skip_space(m);
        return 0;
    }
    return marker_comparison(m, result);
}

static int marker_and(marker_parser *m, int *result) {
    if (marker_atom(m, result) != 0) return -1;
    while (keyword(m, "and")) {
        int right = 0;
        if (marker_atom(m, &right) != 0) return -1;
        *result = *result && right;
    }
    return 0;
}

static int marker_or(marker_parser *m, int *result) {
    if (marker_and(m, result) != 0) return -1;
    while (keyword(m, "or")) {
        int right = 0;
        if (marker_and(m, &right) != 0) return -1;
        *result = *result || right;
    }
    return 0;
}

static int marker_run(const char *marker, const char *extra_name, int evaluate, int *result,
                      char *error, size_t error_size) {
    char extra[DEPS_NAME_MAX] = "";
    if (extra_name && *extra_name && deps_normalize_name(extra_name, extra, sizeof extra) != 0)
        return say(error, error_size, "invalid extra name '%.100s'", extra_name);
    marker_parser m = {marker, extra, error, error_size, 0, evaluate};
    int value = 0;
    skip_space(&m);
    if (marker_or(&m, &value) != 0) return -1;
    if (*m.p) return say(error, error_size, "marker: unexpected '%.20s'", m.p);
    *result = value;
    return 0;
}

int deps_marker_evaluate(const char *marker, const char *extra_name, int *result, char *error,
                         size_t error_size) {
    return marker_run(marker, extra_name, 1, result, error, error_size);
}

/* --- PEP 508 requirements ------------------------------------------------------------ */

static int name_character(char c) {
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.';
}

int deps_requirement_parse(const char *text, deps_requirement *out, char *error,
                           size_t error_size) {
    memset(out, 0, sizeof *out);
    const char *p = text;
    while (isspace((unsigned char)*p)) p++;
    const char *start = p;
    while (name_character(*p)) p++;
    size_t n = (size_t)(p - start);
    if (n == 0 || n >= sizeof out->name)
        return say(error, error_size, "invalid requirement '%.100s'", text);
    memcpy(out->name, start, n);
    if (deps_normalize_name(out->name, out->normalized, sizeof out->normalized) != 0)
        return say(error, error_size, "invalid project name '%.100s'", out->name);
    while (isspace((unsigned char)*p)) p++;
    if (*p == '[') {
        p++;
        for (;;) {
            while (isspace((unsigned char)*p)) p++;
            if (*p == ']' && out->extra_count == 0) break;
            start = p;
            while (name_character(*p)) p++;
            n = (size_t)(p - start);
            char extra[DEPS_NAME_MAX];
            if (n == 0 || n >= sizeof extra || out->extra_count == DEPS_EXTRAS_MAX)
                return say(error, error_size, "invalid extras in '%.100s'", text);
            memcpy(extra, start, n);
            extra[n] = '\0';
            if (deps_normalize_name(extra, out->extras[out->extra_count++], DEPS_NAME_MAX) != 0)
                return say(error, error_size, "invalid extra '%.100s'", extra);
            while (isspace((unsigned char)*p)) p++;
            if (*p == ',') {
                p++;
                continue;
            }
            if (*p == ']') break;
            return say(error, error_size, "invalid extras in '%.100s'", text);
        }
        p++;
        while (isspace((unsigned char)*p)) p++;
    }
    if (*p == '@')
        return say(error, error_size, "direct references (name @ url) are not supported");
    int parenthesised = *p == '(';
    if (parenthesised) p++;
    size_t length = 0;
    while (*p && *p != ';' && !(parenthesised && *p == ')')) {
        if (!isspace((unsigned char)*p)) {
            if (length + 1 >= sizeof out->specifier)
                return say(error, error_size, "specifier too long in '%.100s'", text);
            out->specifier[length++] = *p;
        }
        p++;
    }
    if (parenthesised) {
        if (*p != ')') return say(error, error_size, "missing ')' in '%.100s'", text);
        p++;
        while (isspace((unsigned char)*p)) p++;
    }
    if (out->specifier[0]) {
        int unused;
        if (deps_specifier_contains(out->specifier, "0", 1, &unused, error, error_size) != 0)
            return -1;
    }
    if (*p == ';') {
        p++;
        while (isspace((unsigned char)*p)) p++;
        size_t marker_length = strlen(p);
        while (marker_length && isspace((unsigned char)p[marker_length - 1])) marker_length--;
        if (marker_length == 0 || marker_length >= sizeof out->marker)
            return say(error, error_size, "invalid marker in '%.100s'", text);
        memcpy(out->marker, p, marker_length);
        int unused;
        if (marker_run(out->marker, NULL, 0, &unused, error, error_size) != 0) return -1;
    } else if (*p) {
        return say(error, error_size, "invalid requirement '%.100s'", text);
    }
    return 0;
}

int deps_requirement_applies(const deps_requirement *requirement, const char *extra_name,
                             int *applies, char *error, size_t error_size) {
    if (!requirement->marker[0]) {
        *applies = 1;
        return 0;
    }
    return deps_marker_evaluate(requirement->marker, extra_name, applies, error, error_size);
}
