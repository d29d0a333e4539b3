/*
 * requirement.c — PEP 440, PEP 508 and PEP 503 (see requirement.h).
 *
 * Versions are parsed into their parts once and compared as PEP 440's
 * sort key (the one the `packaging` library uses): epoch, release without
 * trailing zeros, then pre, post and dev with the infinities that make
 * 1.0.dev0 < 1.0a1 < 1.0 < 1.0.post1, then the local label.
 *
 * Character classes are ASCII by hand rather than <ctype.h>, so that a
 * locale set elsewhere in the program cannot let other bytes into a name.
 */
#include "requirement.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MAX_RELEASE 16
#define MAX_DIGITS 18 /* significant digits that always fit a long long */
#define MAX_VERSION 128
#define MAX_DEPTH 32

/* The sandbox's marker environment, as measured in the guest. */
static const char *const ENVIRONMENT[][2] = {
    {"python_version", "3.11"},         {"python_full_version", "3.11.2"},
    {"os_name", "posix"},               {"sys_platform", "wasi"},
    {"platform_system", "wasi"},        {"platform_machine", "wasm32"},
    {"platform_release", "0.0.0"},      {"platform_version", "0.0.0"},
    {"implementation_name", "cpython"}, {"implementation_version", "3.11.2"},
    {"platform_python_implementation", "CPython"},
    {"python_implementation", "CPython"}, /* the pre-PEP 508 spelling */
};

static int is_digit(char c) {
    return c >= '0' && c <= '9';
}

static int is_alnum(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static char lower(char c) {
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static int separator(char c) {
    return c == '.' || c == '-' || c == '_';
}

static const char *skip_spaces(const char *p) {
    while (is_space(*p)) p++;
    return p;
}

/* Messages quote untrusted text: control characters would break the
 * one-line promise (and could spoof a terminal), so they become '?'. */
static int say(char *error, size_t error_size, const char *format, ...) {
    if (error && error_size) {
        va_list args;
        va_start(args, format);
        vsnprintf(error, error_size, format, args);
        va_end(args);
        for (char *p = error; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f) *p = '?';
    }
    return -1;
}

int deps_normalize_name(const char *name, char *out, size_t out_size) {
    size_t n = 0;
    int pending_separator = 0;
    if (!out || !out_size) return -1;
    out[0] = '\0';
    if (!name || !is_alnum(name[0])) return -1;
    for (const char *p = name; *p; p++) {
        if (separator(*p)) {
            pending_separator = 1;
            continue;
        }
        if (!is_alnum(*p)) goto bad;
        /* Room for the separator, the character and the terminator. */
        if (n + (size_t)pending_separator + 1 >= out_size) goto bad;
        if (pending_separator) out[n++] = '-';
        pending_separator = 0;
        out[n++] = lower(*p);
    }
    if (pending_separator) goto bad; /* a name ends with a letter or digit */
    out[n] = '\0';
    return 0;
bad:
    out[0] = '\0';
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

/* Leading zeros are not counted, so "0000000000000000001" is 1, while
 * more than MAX_DIGITS significant digits is an error, not an overflow. */
static int number(const char **p, long long *out) {
    const char *q = *p;
    if (!is_digit(*q)) return -1;
    while (*q == '0') q++;
    long long value = 0;
    for (int digits = 0; is_digit(*q); q++) {
        if (++digits > MAX_DIGITS) return -1;
        value = value * 10 + (*q - '0');
    }
    *p = q;
    *out = value;
    return 0;
}

static int starts_with_word(const char *p, const char *word) {
    for (; *word; p++, word++)
        if (lower(*p) != *word) return 0;
    return 1;
}

/* Matches the longest of `words` (case-insensitive) at *p; its index or -1. */
static int word(const char **p, const char *const *words, int count) {
    int best = -1;
    size_t best_length = 0;
    for (int i = 0; i < count; i++) {
        size_t n = strlen(words[i]);
        if (n > best_length && starts_with_word(*p, words[i])) best = i, best_length = n;
    }
    if (best >= 0) *p += best_length;
    return best;
}

/* After a pre, post or dev word: packaging's pattern allows a separator
 * and an optional number, 0 when absent ("1.0a" is "1.0a0"). */
static int implicit_number(const char **p, long long *out) {
    if (separator(**p)) (*p)++;
    if (is_digit(**p)) return number(p, out);
    *out = 0;
    return 0;
}

static int parse_version(const char *text, version *v) {
    memset(v, 0, sizeof *v);
    v->pre_kind = -1;
    if (!text) return -1;
    const char *p = skip_spaces(text);
    if (*p == 'v' || *p == 'V') p++;
    long long first;
    if (number(&p, &first) != 0) return -1;
    if (*p == '!') {
        v->epoch = first;
        p++;
        if (number(&p, &first) != 0) return -1;
    }
    v->release[v->release_count++] = first;
    while (*p == '.' && is_digit(p[1])) {
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
    if (*q == '-' && is_digit(q[1])) { /* "1.0-1" is the post-release 1.0.post1 */
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
        int in_segment = 0;
        for (; is_alnum(*p) || separator(*p); p++) {
            if (separator(*p) && !in_segment) return -1; /* empty segment */
            if (n + 1 >= sizeof v->local) return -1;
            in_segment = !separator(*p);
            v->local[n++] = in_segment ? lower(*p) : '.';
        }
        if (!in_segment) return -1;
        v->local[n] = '\0';
    }
    return *skip_spaces(p) ? -1 : 0;
}

static int compare_numbers(long long a, long long b) {
    return a < b ? -1 : a > b;
}

/* Segment by segment: numbers numerically and after words, words as
 * strings; a label that is a prefix of another sorts first. */
static int compare_local(const char *a, const char *b) {
    if (!*a || !*b) return *a ? 1 : *b ? -1 : 0; /* no label sorts first */
    while (*a && *b) {
        size_t na = strcspn(a, "."), nb = strcspn(b, ".");
        int numeric_a = strspn(a, "0123456789") == na, numeric_b = strspn(b, "0123456789") == nb;
        int order;
        if (numeric_a && numeric_b) {
            /* Digit strings compared without converting, so no overflow. */
            while (na > 1 && *a == '0') a++, na--;
            while (nb > 1 && *b == '0') b++, nb--;
            order = na != nb ? (na < nb ? -1 : 1) : strncmp(a, b, na);
        } else if (numeric_a != numeric_b) {
            order = numeric_a ? 1 : -1;
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
    /* A dev release of a final sorts before its pre-releases; no pre sorts
     * after every pre. */
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
    if (parse_version(a, &x) != 0)
        return say(error, error_size, "invalid version '%.100s'", a ? a : "(null)");
    if (parse_version(b, &y) != 0)
        return say(error, error_size, "invalid version '%.100s'", b ? b : "(null)");
    if (!order) return say(error, error_size, "no place for the result");
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
    int parsed;             /* v holds the version (=== may name a non-version) */
    char text[MAX_VERSION]; /* the version as written, trimmed */
    version v;
} clause;

/* One clause, start[0..length), e.g. " >= 1.0 ". */
static int parse_clause(const char *start, size_t length, clause *c, char *error,
                        size_t error_size) {
    /* Longest first: "===" before "==", "<=" before "<". */
    static const char *const operators[] = {"===", "~=", "==", "!=", "<=", ">=", "<", ">"};
    memset(c, 0, sizeof *c);
    while (length && is_space(*start)) start++, length--;
    while (length && is_space(start[length - 1])) length--;
    const char *whole = start;
    size_t whole_length = length;
    int op = -1;
    for (int i = 0; i < 8 && op < 0; i++) {
        size_t n = strlen(operators[i]);
        if (length >= n && strncmp(start, operators[i], n) == 0) {
            op = i;
            start += n;
            length -= n;
        }
    }
    while (length && is_space(*start)) start++, length--;
    if (op < 0 || length == 0 || length >= sizeof c->text) goto bad;
    for (size_t i = 0; i < length; i++)
        if (is_space(start[i])) goto bad; /* "==1.0 .*" is not "==1.0.*" */
    c->op = (operator_kind)op;
    memcpy(c->text, start, length);
    c->text[length] = '\0';
    if (c->op == OP_ARBITRARY) {
        c->parsed = parse_version(c->text, &c->v) == 0;
        return 0;
    }
    c->wildcard = length > 2 && strcmp(c->text + length - 2, ".*") == 0;
    char text[MAX_VERSION];
    memcpy(text, c->text, length + 1);
    if (c->wildcard) text[length - 2] = '\0';
    if ((c->wildcard && c->op != OP_EQUAL && c->op != OP_NOT_EQUAL) ||
        parse_version(text, &c->v) != 0 ||
        (c->wildcard && (c->v.pre_kind >= 0 || c->v.has_post || c->v.has_dev || c->v.local[0])) ||
        (c->op == OP_COMPATIBLE && c->v.release_count < 2) ||
        (c->v.local[0] && c->op != OP_EQUAL && c->op != OP_NOT_EQUAL))
        goto bad;
    c->parsed = 1;
    return 0;
bad:
    return say(error, error_size, "invalid specifier '%.*s'",
               (int)(whole_length < 100 ? whole_length : 100), whole);
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

/* PEP 440's base version: epoch and release only. */
static int same_release(const version *a, const version *b) {
    version x = *a, y = *b;
    x.pre_kind = y.pre_kind = -1;
    x.has_post = y.has_post = x.has_dev = y.has_dev = 0;
    return compare_versions(&x, &y, 0) == 0;
}

static int clause_contains(const clause *c, const version *v, const char *text) {
    if (c->op == OP_ARBITRARY) {
        const char *start = skip_spaces(text);
        size_t n = strlen(start);
        while (n && is_space(start[n - 1])) n--;
        if (strlen(c->text) != n) return 0;
        for (size_t i = 0; i < n; i++)
            if (lower(start[i]) != lower(c->text[i])) return 0;
        return 1;
    }
    /* A specifier without a local label ignores the candidate's. */
    int order = compare_versions(v, &c->v, c->v.local[0] != 0);
    switch (c->op) {
    case OP_ARBITRARY:
        break;
    case OP_COMPATIBLE:
        return order >= 0 && prefix_matches(v, &c->v, c->v.release_count - 1);
    case OP_EQUAL:
        return c->wildcard ? prefix_matches(v, &c->v, c->v.release_count) : order == 0;
    case OP_NOT_EQUAL:
        return c->wildcard ? !prefix_matches(v, &c->v, c->v.release_count) : order != 0;
    case OP_LESS_EQUAL:
        return order <= 0;
    case OP_GREATER_EQUAL:
        return order >= 0;
    case OP_LESS:
        /* <V excludes V's own pre-releases unless V is one. */
        return order < 0 && !(!is_prerelease(&c->v) && is_prerelease(v) && same_release(v, &c->v));
    case OP_GREATER:
        /* >V excludes the post-releases of V's release unless V is one, and
         * its local versions; "of V's release" as `packaging` reads it, so
         * pip and we agree that >1.0a1 does not match 1.0+local. */
        return order > 0 && !(!c->v.has_post && v->has_post && same_release(v, &c->v)) &&
               !(v->local[0] && same_release(v, &c->v));
    }
    return 0;
}

/* Which clauses let pre-releases in (as `packaging`): != names a version
 * to keep out, not one to let in. */
static int names_prerelease(const clause *c) {
    return c->parsed && c->op != OP_NOT_EQUAL && is_prerelease(&c->v);
}

/* Checks each clause of text[0..length) and, when candidate is not NULL,
 * whether the candidate satisfies them all (before the pre-release rule). */
static int specifier_run(const char *text, size_t length, const version *candidate,
                         const char *candidate_text, int *inside, int *prerelease_named,
                         char *error, size_t error_size) {
    const char *end = text + length;
    *inside = 1;
    *prerelease_named = 0;
    int blank_set = 1;
    for (const char *p = text; p < end; p++) blank_set &= is_space(*p);
    if (blank_set) return 0;
    for (const char *start = text;;) {
        const char *comma = memchr(start, ',', (size_t)(end - start));
        const char *stop = comma ? comma : end;
        clause c;
        if (parse_clause(start, (size_t)(stop - start), &c, error, error_size) != 0) return -1;
        if (names_prerelease(&c)) *prerelease_named = 1;
        if (candidate && !clause_contains(&c, candidate, candidate_text)) *inside = 0;
        if (!comma) return 0;
        start = comma + 1;
    }
}

int deps_specifier_contains(const char *specifier, const char *version_text, int allow_prereleases,
                            int *contains, char *error, size_t error_size) {
    version v;
    if (!specifier) return say(error, error_size, "no specifier");
    if (parse_version(version_text, &v) != 0)
        return say(error, error_size, "invalid version '%.100s'",
                   version_text ? version_text : "(null)");
    if (!contains) return say(error, error_size, "no place for the result");
    int inside, prerelease_named;
    if (specifier_run(specifier, strlen(specifier), &v, version_text, &inside, &prerelease_named,
                      error, error_size) != 0)
        return -1;
    if (is_prerelease(&v) && !allow_prereleases && !prerelease_named) inside = 0;
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

static int keyword(marker_parser *m, const char *word) {
    size_t n = strlen(word);
    if (strncmp(m->p, word, n) != 0 || is_alnum(m->p[n]) || m->p[n] == '_') return 0;
    m->p = skip_spaces(m->p + n);
    return 1;
}

/* A value: a quoted string or an environment variable.  *is_extra when
 * it is the `extra` variable. */
static int marker_value(marker_parser *m, char *out, size_t out_size, int *is_extra) {
    *is_extra = 0;
    if (*m->p == '"' || *m->p == '\'') {
        char quote = *m->p++;
        const char *end = strchr(m->p, quote);
        if (!end) return say(m->error, m->error_size, "unterminated string in marker");
        if ((size_t)(end - m->p) >= out_size)
            return say(m->error, m->error_size, "string too long in marker");
        memcpy(out, m->p, (size_t)(end - m->p));
        out[end - m->p] = '\0';
        m->p = skip_spaces(end + 1);
        return 0;
    }
    const char *start = m->p;
    while (is_alnum(*m->p) || *m->p == '_' || *m->p == '.') m->p++;
    size_t n = (size_t)(m->p - start);
    if (n == 0) return say(m->error, m->error_size, "marker: a value expected at '%.20s'", m->p);
    const char *value = NULL;
    if (n == 5 && strncmp(start, "extra", 5) == 0) {
        *is_extra = 1;
        value = m->extra;
    }
    for (size_t i = 0; !value && i < sizeof ENVIRONMENT / sizeof *ENVIRONMENT; i++)
        if (strlen(ENVIRONMENT[i][0]) == n && strncmp(start, ENVIRONMENT[i][0], n) == 0)
            value = ENVIRONMENT[i][1];
    if (!value)
        return say(m->error, m->error_size, "unsupported marker variable '%.*s'",
                   (int)(n < 60 ? n : 60), start);
    snprintf(out, out_size, "%s", value);
    m->p = skip_spaces(m->p);
    return 0;
}

/* 0 and *result when both sides are versions under `op` (as `packaging`,
 * the clause "op right" is asked about "left"); -1 when they are not. */
static int compare_as_versions(const char *op, const char *left, const char *right, int *result) {
    char text[MAX_VERSION + 4];
    size_t op_length = strlen(op), right_length = strlen(right);
    if (op_length + right_length >= sizeof text) return -1;
    memcpy(text, op, op_length);
    memcpy(text + op_length, right, right_length + 1);
    clause c;
    version v;
    if (parse_clause(text, op_length + right_length, &c, NULL, 0) != 0 || !c.parsed ||
        parse_version(left, &v) != 0)
        return -1;
    *result = clause_contains(&c, &v, left);
    return 0;
}

static int marker_or(marker_parser *m, int *result);

static int marker_comparison(marker_parser *m, int *result) {
    static const char *const operators[] = {"===", "==", "!=", "<=", ">=", "~=", "<", ">"};
    char left[DEPS_MARKER_MAX], right[DEPS_MARKER_MAX];
    const char *op = NULL;
    int left_extra, right_extra;
    if (marker_value(m, left, sizeof left, &left_extra) != 0) return -1;
    for (int i = 0; i < 8 && !op; i++)
        if (strncmp(m->p, operators[i], strlen(operators[i])) == 0) {
            op = operators[i];
            m->p = skip_spaces(m->p + strlen(op));
        }
    if (!op) {
        if (keyword(m, "in")) op = "in";
        else if (keyword(m, "not") && keyword(m, "in")) op = "not in";
        else return say(m->error, m->error_size, "marker: an operator expected at '%.20s'", m->p);
    }
    if (marker_value(m, right, sizeof right, &right_extra) != 0) return -1;
    if (!m->evaluate) return 0;
    if (left_extra || right_extra) {
        /* Extras compare as normalised names; text that is not a name
         * stays as written, so it cannot equal the empty "no extra". */
        char name[DEPS_NAME_MAX];
        if (deps_normalize_name(left, name, sizeof name) == 0) memcpy(left, name, sizeof name);
        if (deps_normalize_name(right, name, sizeof name) == 0) memcpy(right, name, sizeof name);
    }
    if (!strcmp(op, "in") || !strcmp(op, "not in")) {
        *result = (strstr(right, left) != NULL) == !strcmp(op, "in");
        return 0;
    }
    if (!left_extra && !right_extra && compare_as_versions(op, left, right, result) == 0) return 0;
    int equal = strcmp(left, right) == 0;
    if (!strcmp(op, "==") || !strcmp(op, "===")) *result = equal;
    else if (!strcmp(op, "!=")) *result = !equal;
    else return say(m->error, m->error_size, "marker: '%s' needs versions", op);
    return 0;
}

static int marker_atom(marker_parser *m, int *result) {
    if (*m->p != '(') return marker_comparison(m, result);
    if (++m->depth > MAX_DEPTH) return say(m->error, m->error_size, "marker nested too deeply");
    m->p = skip_spaces(m->p + 1);
    if (marker_or(m, result) != 0) return -1;
    if (*m->p != ')') return say(m->error, m->error_size, "marker: ')' expected");
    m->p = skip_spaces(m->p + 1);
    m->depth--;
    return 0;
}

/* `and` binds tighter than `or`; both sides are always parsed, so a
 * syntax error is found whatever the values. */
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
    if (!marker) return say(error, error_size, "no marker");
    if (extra_name && *extra_name && deps_normalize_name(extra_name, extra, sizeof extra) != 0)
        return say(error, error_size, "invalid extra name '%.100s'", extra_name);
    marker_parser m = {skip_spaces(marker), extra, error, error_size, 0, evaluate};
    int value = 0;
    if (marker_or(&m, &value) != 0) return -1;
    if (*m.p) return say(error, error_size, "marker: unexpected '%.20s'", m.p);
    if (result) *result = value;
    return 0;
}

int deps_marker_evaluate(const char *marker, const char *extra_name, int *result, char *error,
                         size_t error_size) {
    if (!result) return say(error, error_size, "no place for the result");
    return marker_run(marker, extra_name, 1, result, error, error_size);
}

/* --- PEP 508 requirements ------------------------------------------------------------ */

static int name_character(char c) {
    return is_alnum(c) || separator(c);
}

static int requirement_parse(const char *text, deps_requirement *out, char *error,
                             size_t error_size) {
    const char *p = skip_spaces(text);
    const char *start = p;
    while (name_character(*p)) p++;
    size_t n = (size_t)(p - start);
    if (n == 0) return say(error, error_size, "invalid requirement '%.100s'", text);
    if (n >= sizeof out->name) return say(error, error_size, "project name too long");
    memcpy(out->name, start, n);
    if (deps_normalize_name(out->name, out->normalized, sizeof out->normalized) != 0)
        return say(error, error_size, "invalid project name '%.100s'", out->name);
    p = skip_spaces(p);
    if (*p == '[') {
        p = skip_spaces(p + 1);
        /* "name[]" names no extras; a comma must be followed by one. */
        for (int first = 1; !(first && *p == ']'); first = 0) {
            start = p;
            while (name_character(*p)) p++;
            n = (size_t)(p - start);
            char extra[DEPS_NAME_MAX];
            if (out->extra_count == DEPS_EXTRAS_MAX)
                return say(error, error_size, "more than %d extras", DEPS_EXTRAS_MAX);
            if (n == 0 || n >= sizeof extra)
                return say(error, error_size, "invalid extras in '%.100s'", text);
            memcpy(extra, start, n);
            extra[n] = '\0';
            if (deps_normalize_name(extra, out->extras[out->extra_count++], DEPS_NAME_MAX) != 0)
                return say(error, error_size, "invalid extra '%.100s'", extra);
            p = skip_spaces(p);
            if (*p == ']') break;
            if (*p != ',') return say(error, error_size, "invalid extras in '%.100s'", text);
            p = skip_spaces(p + 1);
        }
        p = skip_spaces(p + 1);
    }
    if (*p == '@')
        return say(error, error_size, "direct references (name @ url) are not supported");
    int parenthesised = *p == '(';
    if (parenthesised) p++;
    start = p;
    while (*p && *p != ';' && !(parenthesised && *p == ')')) p++;
    /* Checked as written, so "> =1" is refused rather than becoming ">=1". */
    int unused, unused_named;
    if (specifier_run(start, (size_t)(p - start), NULL, NULL, &unused, &unused_named, error,
                      error_size) != 0)
        return -1;
    size_t length = 0;
    for (const char *q = start; q < p; q++) {
        if (is_space(*q)) continue;
        if (length + 1 >= sizeof out->specifier)
            return say(error, error_size, "specifier too long in '%.100s'", text);
        out->specifier[length++] = *q;
    }
    if (parenthesised) {
        if (*p != ')') return say(error, error_size, "missing ')' in '%.100s'", text);
        p = skip_spaces(p + 1);
    }
    if (*p == ';') {
        p = skip_spaces(p + 1);
        size_t marker_length = strlen(p);
        while (marker_length && is_space(p[marker_length - 1])) marker_length--;
        if (marker_length == 0) return say(error, error_size, "empty marker in '%.100s'", text);
        if (marker_length >= sizeof out->marker) return say(error, error_size, "marker too long");
        memcpy(out->marker, p, marker_length);
        return marker_run(out->marker, NULL, 0, NULL, error, error_size);
    }
    if (*p) return say(error, error_size, "invalid requirement '%.100s'", text);
    return 0;
}

int deps_requirement_parse(const char *text, deps_requirement *out, char *error,
                           size_t error_size) {
    if (!out) return say(error, error_size, "no place for the requirement");
    memset(out, 0, sizeof *out);
    if (!text) return say(error, error_size, "no requirement");
    if (requirement_parse(text, out, error, error_size) == 0) return 0;
    memset(out, 0, sizeof *out);
    return -1;
}

int deps_requirement_applies(const deps_requirement *requirement, const char *extra_name,
                             int *applies, char *error, size_t error_size) {
    if (!requirement || !applies) return say(error, error_size, "no requirement");
    /* The struct may come from anywhere: an unterminated marker is refused
     * rather than read past. */
    if (!memchr(requirement->marker, '\0', sizeof requirement->marker))
        return say(error, error_size, "marker too long");
    if (!requirement->marker[0]) {
        *applies = 1;
        return 0;
    }
    return deps_marker_evaluate(requirement->marker, extra_name, applies, error, error_size);
}
