/*
 * test_requirement.c — PEP 440 versions and specifiers, PEP 508 markers and
 * requirements, PEP 503 names (src/deps/requirement.c), on their own:
 *
 *   gcc -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror \
 *       -fsanitize=address,undefined -o test_requirement \
 *       tests/unit/test_requirement.c src/deps/requirement.c -lcmocka
 *
 * Expected answers are those of the `packaging` library (what pip uses)
 * except where a comment says otherwise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../src/deps/requirement.h"

#define COUNT(array) (sizeof(array) / sizeof *(array))

/* --- versions --------------------------------------------------------------------- */

static int order_of(const char *a, const char *b) {
    int order = 99;
    char error[128] = "";
    if (deps_version_compare(a, b, &order, error, sizeof error) != 0)
        fail_msg("'%s' <=> '%s': %s", a, b, error);
    return order < 0 ? -1 : order > 0;
}

/* Each strictly before the next, and so before every later one. */
static void assert_ascending(const char *const *chain, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (order_of(chain[i], chain[i]) != 0) fail_msg("%s != itself", chain[i]);
        for (size_t j = i + 1; j < n; j++) {
            if (order_of(chain[i], chain[j]) != -1) fail_msg("%s < %s", chain[i], chain[j]);
            if (order_of(chain[j], chain[i]) != 1) fail_msg("%s > %s", chain[j], chain[i]);
        }
    }
}

static void test_versions_follow_pep440_examples(void **state) {
    (void)state;
    /* PEP 440, "Summary of permitted suffixes and relative ordering". */
    static const char *const pep440[] = {
        "1.dev0",       "1.0.dev456",           "1.0a1",         "1.0a2.dev456",
        "1.0a12.dev456", "1.0a12",              "1.0b1.dev456",  "1.0b2",
        "1.0b2.post345.dev456", "1.0b2.post345", "1.0rc1.dev456", "1.0rc1",
        "1.0",          "1.0+abc.5",            "1.0+abc.7",     "1.0+5",
        "1.0.post456.dev34", "1.0.post456",     "1.0.15",        "1.1.dev1",
    };
    assert_ascending(pep440, COUNT(pep440));
    /* PEP 440's release-only example. */
    static const char *const releases[] = {"0.1", "0.2", "0.3", "1.0", "1.1", "1.1.1", "1.2",
                                           "1.10", "2.0", "10.0"};
    assert_ascending(releases, COUNT(releases));
    /* Epochs outrank everything; the PEP's date-based to semantic example. */
    static const char *const epochs[] = {"2013.10", "2014.04", "1!1.0", "1!1.1", "1!2.0",
                                         "2!0.1"};
    assert_ascending(epochs, COUNT(epochs));
    /* Dev releases of pre-releases, post-releases, and post-releases of
     * pre-releases. */
    static const char *const mixed[] = {
        "1.0.dev1", "1.0a1.dev1", "1.0a1", "1.0a1.post1.dev1", "1.0a1.post1", "1.0b1.dev1",
        "1.0b1", "1.0rc1", "1.0", "1.0.post1.dev1", "1.0.post1", "1.0.post2", "1.0.1.dev0",
        "1.0.1",
    };
    assert_ascending(mixed, COUNT(mixed));
    /* Numbers compare numerically, not as text. */
    assert_int_equal(order_of("1.9", "1.10"), -1);
    assert_int_equal(order_of("1.0a9", "1.0a10"), -1);
    assert_int_equal(order_of("1.0.post9", "1.0.post10"), -1);
    assert_int_equal(order_of("1.0.dev9", "1.0.dev10"), -1);
    assert_int_equal(order_of("0!1.0", "1.0"), 0);
}

static void test_version_spellings_normalise(void **state) {
    (void)state;
    static const char *const same[][2] = {
        {"1.0", "1.0.0"},          {"1.0", "1.0.0.0.0"},        {"1.0-ALPHA.1", "1.0a1"},
        {"1.0alpha1", "1.0a1"},    {"1.0.a.1", "1.0a1"},        {"1.0_a_1", "1.0a1"},
        {"1.0-beta2", "1.0b2"},    {"1.0c1", "1.0rc1"},         {"1.0pre1", "1.0rc1"},
        {"1.0preview1", "1.0rc1"}, {"1.0-RC-1", "1.0rc1"},      {"1.0a", "1.0a0"},
        {"1.0-1", "1.0.post1"},    {"1.0post1", "1.0.post1"},   {"1.0-post-1", "1.0.post1"},
        {"1.0.rev1", "1.0.post1"}, {"1.0r1", "1.0.post1"},      {"1.0.post", "1.0.post0"},
        {"1.0-dev1", "1.0.dev1"},  {"1.0dev", "1.0.dev0"},      {"1.0.DEV.2", "1.0.dev2"},
        {"v1.0", "1.0"},           {"V1.0", "1.0"},             {" 1.0\n", "1.0"},
        {"01.002", "1.2"},         {"1.0+Ubuntu-1", "1.0+ubuntu.1"}, {"1.0+local_7", "1.0+local.7"},
        {"1.0+01", "1.0+1"},       {"0000000000000000000001", "1"}, /* leading zeros are not digits */
        {"1.0a.", "1.0a0"},        /* packaging's pattern: a separator after the letter */
    };
    for (size_t i = 0; i < COUNT(same); i++)
        if (order_of(same[i][0], same[i][1]) != 0) fail_msg("%s == %s", same[i][0], same[i][1]);
}

static void test_invalid_versions_are_errors(void **state) {
    (void)state;
    static const char *const invalid[] = {
        "",          " ",          "1..0",          "abc",         "1.0+",        "1.0+a..b",
        "1.0+.a",    "1.0+a.",     "1.0 x",         "1.0-",        "=1.0",        "1.0.",
        ".1",        "v",          "1!",            "!1",          "1!2!3",       "1.0a1b1",
        "1.0.post1.post2", "1.0.dev1.dev2", "1.0.dev1a1", "1 .0",   "1.0++a",      "1.0+a b",
        "1.*",       "-1.0",       "1.0\x01",       "1.0+\xc3\xa9", "\xef\xbc\x91.0", "1,0",
        "1234567890123456789",          /* 19 significant digits: an error, not an overflow */
        "1.99999999999999999999999999", "1!999999999999999999999.0", "1.0a99999999999999999999",
        "1.0.post99999999999999999999", "1.0.dev99999999999999999999",
        "1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17", /* more release parts than are kept */
    };
    int order = 7;
    char error[128];
    for (size_t i = 0; i < COUNT(invalid); i++) {
        error[0] = '\0';
        if (deps_version_compare(invalid[i], "1.0", &order, error, sizeof error) != -1)
            fail_msg("'%s' accepted as a version", invalid[i]);
        if (strstr(error, "invalid version '") != error) fail_msg("message '%s'", error);
        if (deps_version_compare("1.0", invalid[i], &order, NULL, 0) != -1)
            fail_msg("'%s' accepted as the second version", invalid[i]);
        if (deps_version_is_prerelease(invalid[i]) != -1) fail_msg("'%s' prerelease?", invalid[i]);
    }
    assert_int_equal(order, 7); /* untouched on error */
    /* The largest numbers that are kept compare exactly. */
    assert_int_equal(order_of("999999999999999999", "999999999999999998"), 1);
    assert_int_equal(order_of("1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16", "1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.17"), -1);
    /* Local labels are compared as digit strings: no overflow either. */
    assert_int_equal(order_of("1.0+99999999999999999999999999", "1.0+99999999999999999999999998"), 1);
}

static void test_local_versions_sort_as_pep440_says(void **state) {
    (void)state;
    /* No label first; letters before numbers; numbers numerically; a prefix
     * before a longer label. */
    static const char *const chain[] = {"1.0", "1.0+a", "1.0+abc", "1.0+abc.1", "1.0+abc.2",
                                        "1.0+abc.10", "1.0+abd", "1.0+1", "1.0+1.a", "1.0+1.1",
                                        "1.0+2", "1.0+10"};
    assert_ascending(chain, COUNT(chain));
}

static void test_prereleases_are_recognised(void **state) {
    (void)state;
    static const struct { const char *version; int prerelease; } cases[] = {
        {"1.0", 0},      {"1.0a1", 1},      {"1.0b2", 1},       {"1.0rc1", 1},    {"1.0c1", 1},
        {"1.0.dev0", 1}, {"1.0.post1", 0},  {"1.0.post1.dev1", 1}, {"1.0a1.post1", 1},
        {"1.0+dev", 0},  {"1!2.0pre", 1},   {"2.0preview", 1},
    };
    for (size_t i = 0; i < COUNT(cases); i++)
        if (deps_version_is_prerelease(cases[i].version) != cases[i].prerelease)
            fail_msg("'%s' prerelease should be %d", cases[i].version, cases[i].prerelease);
}

/* --- specifiers ------------------------------------------------------------------- */

static int in_set(const char *specifier, const char *version, int allow_prereleases) {
    int contains = -1;
    char error[160] = "";
    if (deps_specifier_contains(specifier, version, allow_prereleases, &contains, error,
                                sizeof error) != 0)
        fail_msg("'%s' against '%s': %s", version, specifier, error);
    assert_true(contains == 0 || contains == 1);
    return contains;
}

typedef struct { const char *specifier, *version; int contains; } specifier_case;

static void check_cases(const specifier_case *cases, size_t n, int allow_prereleases) {
    for (size_t i = 0; i < n; i++)
        if (in_set(cases[i].specifier, cases[i].version, allow_prereleases) != cases[i].contains)
            fail_msg("'%s' in '%s' should be %d", cases[i].version, cases[i].specifier,
                     cases[i].contains);
}

static void test_every_operator(void **state) {
    (void)state;
    static const specifier_case cases[] = {
        {"", "1.0", 1},              {"  ", "0", 1},              {"==1.0", "1.0", 1},
        {"==1.0", "1.0.0", 1},       {"==1.0", "1.0.1", 0},       {"==1.0", "1.0.post1", 0},
        {"== 1.0", "1.0", 1},        {" ==1.0 ", "1.0", 1},       {"==v1.0", "1.0", 1},
        {"!=1.0", "1.0.0", 0},       {"!=1.0", "1.1", 1},         {"!=1.0", "1.0.post1", 1},
        {"<2", "1.9.9", 1},          {"<2", "2.0", 0},            {"<2", "2.0.post1", 0},
        {"<2", "3", 0},              {"<=2", "2.0", 1},           {"<=2", "2.0.post1", 0},
        {"<=2", "1", 1},             {"<=2", "2.0.1", 0},         {">2", "2.0.1", 1},
        {">2", "2", 0},              {">2", "1.9", 0},            {">=2", "2.0", 1},
        {">=2", "2.0.post1", 1},     {">=2", "1.99", 0},          {"~=2.2", "2.2", 1},
        {"~=2.2", "2.9", 1},         {"~=2.2", "3.0", 0},         {"~=2.2", "2.1", 0},
        {"===1.0", "1.0", 1},        {"===1.0", "1.0.0", 0},      {"===1.0", "v1.0", 0},
        {"===1.0+AbC", "1.0+abc", 1}, {">=1.0,<2", "1.5", 1},     {">=1.0, <2", "2.0", 0},
        {">=1.0 , <2 , !=1.5", "1.5", 0}, {">=1.0,<2,!=1.5.*", "1.5.3", 0},
        {">=1.0,<2,!=1.5.*", "1.6", 1},
    };
    check_cases(cases, COUNT(cases), 0);
    /* Epochs take part in every comparison. */
    static const specifier_case epochs[] = {
        {">=2.0", "1!1.0", 1}, {"<2.0", "1!1.0", 0}, {"==1!1.0", "1.0", 0}, {"==1!1.*", "1!1.5", 1},
        {"==1.*", "1!1.5", 0}, {"~=1!2.2", "1!2.5", 1}, {"~=1!2.2", "2.5", 0},
    };
    check_cases(epochs, COUNT(epochs), 0);
}

static void test_wildcards(void **state) {
    (void)state;
    static const specifier_case cases[] = {
        {"==1.*", "1.9.9", 1},      {"==1.*", "1", 1},           {"==1.*", "2.0", 0},
        {"==1.*", "0.9", 0},        {"==1.0.*", "1.0", 1},       {"==1.0.*", "1.0.5", 1},
        {"==1.0.*", "1.0.post1", 1}, {"==1.0.*", "1.1", 0},      {"==1.0.0.*", "1.0", 1},
        {"==1.0.*", "1.0.5+local", 1}, {"==2.8.*", "2.8.1", 1},  {"==2.8.*", "2.80", 0},
        {"!=1.5.*", "1.5.3", 0},    {"!=1.5.*", "1.5", 0},       {"!=1.5.*", "1.6", 1},
        {"!=1.5.*", "1.4.99", 1},   {"==1.*", "10.0", 0},
    };
    check_cases(cases, COUNT(cases), 0);
    /* The wildcard takes in pre-releases of the prefix when they are allowed. */
    assert_int_equal(in_set("==1.0.*", "1.0a1", 1), 1);
    assert_int_equal(in_set("==1.0.*", "1.0a1", 0), 0);
}

/* ~=V.N is >=V.N,==V.*: the same answer for a range of candidates. */
static void assert_equivalent(const char *a, const char *b) {
    static const char *const candidates[] = {
        "1.3",   "1.4",   "1.4.4", "1.4.5", "1.4.5.0", "1.4.5.post1", "1.4.6", "1.4.99", "1.5",
        "1.5.0", "2.1",   "2.2",   "2.2.0", "2.2.1",   "2.3",         "2.9.9", "2.10",   "3.0",
        "3",     "1!2.3", "2.2.post1", "2.5+local", "1.4.7+local", "2.2a1", "2.3a1", "1.4.6rc1",
    };
    for (size_t i = 0; i < COUNT(candidates); i++)
        for (int allow = 0; allow <= 1; allow++)
            if (in_set(a, candidates[i], allow) != in_set(b, candidates[i], allow))
                fail_msg("'%s' and '%s' differ on %s (pre-releases %d)", a, b, candidates[i], allow);
}

static void test_compatible_release(void **state) {
    (void)state;
    assert_equivalent("~=2.2", ">=2.2,==2.*");
    assert_equivalent("~=1.4.5", ">=1.4.5,==1.4.*");
    assert_equivalent("~=2.2.post3", ">=2.2.post3,==2.*");
    assert_equivalent("~=1.4.5a4", ">=1.4.5a4,==1.4.*");
    assert_equivalent("~=2.2.0", ">=2.2.0,==2.2.*");
    static const specifier_case cases[] = {
        {"~=1.4.5", "1.4.9", 1}, {"~=1.4.5", "1.5.0", 0}, {"~=1.4.5", "1.4.4", 0},
        {"~=2.2", "2.2.post1", 1}, {"~=2.2.post3", "2.2.post2", 0}, {"~=2.2.post3", "2.9", 1},
    };
    check_cases(cases, COUNT(cases), 0);
}

static void test_exclusive_ordering(void **state) {
    (void)state;
    static const specifier_case cases[] = {
        /* >V does not take V's post-releases (unless V is one) or local versions. */
        {">1.7", "1.7.post1", 0},  {">1.7", "1.7.0.post1", 0}, {">1.7", "1.7.1", 1},
        {">1.7", "1.7+local", 0},  {">1.7", "1.8+local", 1},   {">1.7.post1", "1.7.post2", 1},
        {">1.7.post1", "1.7.post1", 0}, {">1.7.post1", "1.7.post1+local", 0},
        {">1.7", "1.7.1.post1", 1},
        /* <V does not take V's pre-releases (unless V is one). */
        {"<1.7", "1.6", 1},        {"<1.7", "1.6.post1", 1},  {"<1.7", "1.7.post1", 0},
        {"<1.7", "1.6+local", 1},
        /* <=, >= include V itself and ignore the candidate's local label. */
        {"<=1.7", "1.7+local", 1}, {">=1.7", "1.7+local", 1}, {"<=1.7", "1.7.post1", 0},
    };
    check_cases(cases, COUNT(cases), 0);
    /* With pre-releases allowed, the rules still hold for V's own. */
    static const specifier_case allowed[] = {
        {"<1.7", "1.7a1", 0},      {"<1.7", "1.7.dev1", 0},   {"<1.7", "1.7.0rc1", 0},
        {"<1.7", "1.6a1", 1},      {"<1.7rc1", "1.7a1", 1},   {"<1.7rc1", "1.7rc1", 0},
        {"<1.7rc1", "1.7rc1.dev1", 1}, {">1.7a1", "1.7a2", 1}, {">1.7.dev1", "1.7a1", 1},
        {">1.7a1", "1.7.post1", 0}, /* a post-release of 1.7, as `packaging` reads it */
        {">1.7a1", "1.7.1", 1},    {">1.7", "1.7.post1.dev1", 0},
    };
    check_cases(allowed, COUNT(allowed), 1);
}

static void test_local_labels_in_specifiers(void **state) {
    (void)state;
    static const specifier_case cases[] = {
        {"==1.0", "1.0+local", 1},       {"==1.0+local", "1.0", 0},      {"==1.0+local", "1.0+LOCAL", 1},
        {"==1.0+local", "1.0+other", 0}, {"!=1.0", "1.0+local", 0},      {"!=1.0+local", "1.0+local", 0},
        {"!=1.0+local", "1.0+other", 1}, {"!=1.0+local", "1.0", 1},      {"==1.0+1", "1.0+01", 1},
        {">=1.0", "1.0+x", 1},           {"<=1.0", "1.0+x", 1},          {"~=1.0", "1.0+x", 1},
    };
    check_cases(cases, COUNT(cases), 0);
}

static void test_prerelease_handling(void **state) {
    (void)state;
    static const specifier_case excluded[] = {
        {"", "1.0a1", 0},            {">=1.0", "2.0rc1", 0},      {"<3", "3.0.dev1", 0},
        {"<3", "2.0b1", 0},          {">=1.0", "2.0.dev0", 0},    {"!=1.0a1", "1.0a2", 0},
        {"==1.*", "1.5a1", 0},       {">=1.0", "2.0.post1", 1},
    };
    check_cases(excluded, COUNT(excluded), 0);
    /* A clause that names a pre-release lets them in. */
    static const specifier_case named[] = {
        {">=2.0rc1", "2.0rc2", 1},   {">=2.0rc1", "3.0a1", 1},    {"==1.0a1", "1.0a1", 1},
        {"<=2.0b1", "1.0a1", 1},     {"~=2.0b1", "2.1a1", 1},     {">=1.0,<2.0.dev0", "1.5a1", 1},
        {">=1.0.dev0", "1.0.dev3", 1}, {"===1.0a1", "1.0a1", 1},  {"<1.7rc1", "1.7a1", 1},
        {">=2.0rc1", "2.0rc1.dev1", 0}, /* named, but still below */
    };
    check_cases(named, COUNT(named), 0);
    static const specifier_case allowed[] = {
        {"", "1.0a1", 1}, {">=1.0", "2.0rc1", 1}, {"<3", "2.0b1", 1}, {"!=1.0a1", "1.0a2", 1},
    };
    check_cases(allowed, COUNT(allowed), 1);
}

static void test_malformed_specifiers_are_errors(void **state) {
    (void)state;
    static const char *const malformed[] = {
        "1.0",        ">=",         "~=1",        ">=1.*",      "==1.0,",     ",>=1",
        "=>1.0",      "<1.0+local", "~=1.0+local", ">=1.0+l",   "=1.0",       "==",
        "==1.0a1.*",  "==1.0.post1.*", "==1.0.dev0.*", "==1.0+a.*", "!=.*",    "==*",
        ">=1.0,,<2",  "> = 1.0",    ">=1.0 <2",   "~=1.*",      "<=1.*",      ">1.0.*",
        "==1.0 .*",   "===",        "=== a b",    "==abc",      "~==1.0",     ">>1",
        ">=1.0;",     "(>=1.0)",    "<1..0",      "==1.0 ,",    "~=1!2",      "==1.0\x01",
    };
    int contains = 5;
    char error[160];
    for (size_t i = 0; i < COUNT(malformed); i++) {
        error[0] = '\0';
        if (deps_specifier_contains(malformed[i], "1.0", 0, &contains, error, sizeof error) != -1)
            fail_msg("'%s' accepted as a specifier", malformed[i]);
        if (strstr(error, "invalid specifier '") != error) fail_msg("message '%s'", error);
        if (strchr(error, '\x01') || strchr(error, '\n')) fail_msg("not one line: '%s'", error);
    }
    assert_int_equal(contains, 5);
    /* An invalid candidate is an error too, even against the empty set. */
    assert_int_equal(deps_specifier_contains("", "1.0.", 0, &contains, error, sizeof error), -1);
    assert_string_equal(error, "invalid version '1.0.'");
    /* === compares strings, so a long clause is still bounded. */
    char long_specifier[400];
    memset(long_specifier, '1', sizeof long_specifier);
    memcpy(long_specifier, "==", 2);
    long_specifier[sizeof long_specifier - 1] = '\0';
    assert_int_equal(deps_specifier_contains(long_specifier, "1.0", 0, &contains, NULL, 0), -1);
}

/* --- markers ---------------------------------------------------------------------- */

static int marker(const char *text, const char *extra) {
    int result = -1;
    char error[160] = "";
    if (deps_marker_evaluate(text, extra, &result, error, sizeof error) != 0)
        fail_msg("marker '%s': %s", text, error);
    assert_true(result == 0 || result == 1);
    return result;
}

static void test_markers_describe_the_sandbox(void **state) {
    (void)state;
    static const struct { const char *marker; int result; } cases[] = {
        {"python_version >= \"3.8\"", 1},       {"python_version < \"3\"", 0},
        {"python_version < '3.10'", 0},        {"python_version == '3.11'", 1},
        {"python_version > '3.9'", 1},         {"python_version ~= '3.8'", 1},
        {"python_version == '3.*'", 1},        {"python_version == '3.11.*'", 1},
        {"python_version === '3.11'", 1},      {"python_version != '3.11'", 0},
        {"python_full_version >= '3.11.1'", 1}, {"python_full_version < '3.11.2'", 0},
        {"python_full_version == '3.11.2'", 1}, {"implementation_version >= '3.11'", 1},
        {"sys_platform == \"win32\"", 0},       {"sys_platform != \"wasi\"", 0},
        {"sys_platform == 'linux'", 0},        {"sys_platform == 'wasi'", 1},
        {"platform_system == \"Windows\"", 0},  {"platform_system == 'wasi'", 1},
        {"platform_system != 'Darwin'", 1},    {"platform_machine == 'wasm32'", 1},
        {"platform_machine == 'x86_64'", 0},   {"os_name == 'posix'", 1},
        {"os_name == 'nt'", 0},                {"implementation_name == 'cpython'", 1},
        {"platform_python_implementation == 'CPython'", 1},
        {"platform_python_implementation == 'PyPy'", 0},
        {"platform_release >= '0'", 1},        {"platform_version == '0.0.0'", 1},
        {"\"wasi\" == sys_platform", 1},       {"'3.8' <= python_version", 1},
        {"'3.12' <= python_version", 0},       {"'a' == 'a'", 1},
        {"sys_platform=='wasi'", 1},           {"  sys_platform\t==\n'wasi'  ", 1},
        {"sys_platform == 'WASI'", 0},         /* strings compare exactly */
    };
    for (size_t i = 0; i < COUNT(cases); i++)
        if (marker(cases[i].marker, NULL) != cases[i].result)
            fail_msg("'%s' should be %d", cases[i].marker, cases[i].result);
}

static void test_marker_precedence_and_parentheses(void **state) {
    (void)state;
    /* and binds tighter than or: nt or (>=3.10 and wasi). */
    assert_int_equal(marker("os_name == \"nt\" or python_version >= \"3.10\" and sys_platform == \"wasi\"",
                            NULL), 1);
    assert_int_equal(marker("os_name == 'posix' or os_name == 'nt' and sys_platform == 'linux'", NULL), 1);
    assert_int_equal(marker("(os_name == 'posix' or os_name == 'nt') and sys_platform == 'linux'", NULL), 0);
    assert_int_equal(marker("sys_platform == 'linux' and os_name == 'nt' or os_name == 'posix'", NULL), 1);
    assert_int_equal(marker("sys_platform == 'linux' and (os_name == 'nt' or os_name == 'posix')", NULL), 0);
    assert_int_equal(marker("((((sys_platform == 'wasi'))))", NULL), 1);
    assert_int_equal(marker("(sys_platform == 'wasi' and (os_name == 'nt' or (python_version >= '3' "
                            "and platform_machine == 'wasm32')))", NULL), 1);
    assert_int_equal(marker("(sys_platform=='wasi')and(os_name=='posix')", NULL), 1);
    assert_int_equal(marker("os_name == 'nt' or os_name == 'java' or os_name == 'posix'", NULL), 1);
    assert_int_equal(marker("os_name == 'posix' and os_name == 'posix' and os_name == 'nt'", NULL), 0);
    /* 32 levels are allowed, 33 are not. */
    char text[256] = "";
    for (int i = 0; i < 32; i++) strcat(text, "(");
    strcat(text, "os_name == 'posix'");
    for (int i = 0; i < 32; i++) strcat(text, ")");
    assert_int_equal(marker(text, NULL), 1);
    char deeper[256] = "(";
    strcat(deeper, text);
    strcat(deeper, ")");
    int result;
    assert_int_equal(deps_marker_evaluate(deeper, NULL, &result, NULL, 0), -1);
}

static void test_marker_extras(void **state) {
    (void)state;
    assert_int_equal(marker("extra == \"test\"", NULL), 0);
    assert_int_equal(marker("extra == \"test\"", ""), 0);
    assert_int_equal(marker("extra == \"test\"", "test"), 1);
    assert_int_equal(marker("extra == \"test\"", "Test"), 1);
    assert_int_equal(marker("extra == \"test\"", "docs"), 0);
    assert_int_equal(marker("extra != \"test\"", NULL), 1);
    assert_int_equal(marker("extra != \"test\"", "test"), 0);
    assert_int_equal(marker("\"test\" == extra", "TEST"), 1);
    assert_int_equal(marker("extra == 'Fancy_Stuff'", "fancy-stuff"), 1);
    assert_int_equal(marker("extra == 'fancy.stuff'", "Fancy__Stuff"), 1);
    assert_int_equal(marker("extra == 'a b'", NULL), 0); /* not a name: never equal to "none" */
    assert_int_equal(marker("extra == 'test' and python_version >= '3.8'", "test"), 1);
    assert_int_equal(marker("python_version < '3.8' and extra == 'test'", "test"), 0);
    assert_int_equal(marker("extra == 'a' or extra == 'b'", "b"), 1);
    /* A version-looking extra is still a name. */
    assert_int_equal(marker("extra == '1.0'", "1-0"), 1);
    int result;
    char error[128];
    assert_int_equal(deps_marker_evaluate("extra == 'x'", "bad name!", &result, error, sizeof error), -1);
    assert_string_equal(error, "invalid extra name 'bad name!'");
    assert_int_equal(deps_marker_evaluate("extra > 'x'", "x", &result, NULL, 0), -1);
}

static void test_marker_in_operators(void **state) {
    (void)state;
    /* Substring tests, as `packaging` does them. */
    assert_int_equal(marker("'cpy' in implementation_name", NULL), 1);
    assert_int_equal(marker("'pypy' not in implementation_name", NULL), 1);
    assert_int_equal(marker("'pypy' in implementation_name", NULL), 0);
    assert_int_equal(marker("sys_platform in 'linux wasi darwin'", NULL), 1);
    assert_int_equal(marker("sys_platform not in 'linux darwin'", NULL), 1);
    assert_int_equal(marker("sys_platform in 'win32 cygwin'", NULL), 0);
    assert_int_equal(marker("'3.1' in python_version", NULL), 1); /* strings, not versions */
    assert_int_equal(marker("python_version in '3.11'", NULL), 1);
    assert_int_equal(marker("python_version not in '3.10, 3.12'", NULL), 1);
    assert_int_equal(marker("'test' in extra", "test"), 1);
    assert_int_equal(marker("'' in os_name", NULL), 1);
    int result;
    assert_int_equal(deps_marker_evaluate("sys_platform notin 'x'", NULL, &result, NULL, 0), -1);
    assert_int_equal(deps_marker_evaluate("sys_platform not 'x'", NULL, &result, NULL, 0), -1);
    assert_int_equal(deps_marker_evaluate("sys_platform inn 'x'", NULL, &result, NULL, 0), -1);
}

static void test_malformed_markers_are_errors(void **state) {
    (void)state;
    static const char *const malformed[] = {
        "",                          "   ",                          "foo == '1'",
        "python_version",            "python_version >",             "python_version '3'",
        "python_version > '3' and",  "python_version > '3' or",      "and python_version > '3'",
        "(python_version > '3'",     "python_version > '3')",        "((python_version > '3')",
        "()",                        "(",                            ")",
        "python_version > '3",       "python_version > \"3'",        "python_version = '3'",
        "python_version => '3'",     "python_version >= '3' xor os_name == 'posix'",
        "'a' < 'b'",                 "sys_platform > 'a'",           "sys_platform ~= 'wasi'",
        "python_version ~= '3'",     "os.name == 'posix'",           "Python_Version >= '3'",
        "python_version >= '3' AND os_name == 'posix'",              "python_version >= '3';",
        "python_version >= 3.8",     "python_version >= '3' andos_name == 'posix'",
    };
    int result = 9;
    char error[160];
    for (size_t i = 0; i < COUNT(malformed); i++) {
        error[0] = '\0';
        if (deps_marker_evaluate(malformed[i], NULL, &result, error, sizeof error) != -1)
            fail_msg("marker '%s' accepted", malformed[i]);
        if (!error[0] || strchr(error, '\n')) fail_msg("'%s' gave message '%s'", malformed[i], error);
    }
    assert_int_equal(result, 9);
    assert_int_equal(deps_marker_evaluate("foo == '1'", NULL, &result, error, sizeof error), -1);
    assert_string_equal(error, "unsupported marker variable 'foo'");
    assert_int_equal(deps_marker_evaluate("python_version >= '3' or bar == '1'", NULL, &result,
                                          error, sizeof error), -1);
    assert_string_equal(error, "unsupported marker variable 'bar'");
    /* A string longer than any marker a requirement can hold. */
    char long_marker[3000] = "os_name == '";
    memset(long_marker + strlen(long_marker), 'x', 2000);
    strcat(long_marker, "'");
    assert_int_equal(deps_marker_evaluate(long_marker, NULL, &result, NULL, 0), -1);
    /* Deep nesting is refused, not recursed into. */
    char deep[100001];
    memset(deep, '(', sizeof deep - 1);
    deep[sizeof deep - 1] = '\0';
    assert_int_equal(deps_marker_evaluate(deep, NULL, &result, error, sizeof error), -1);
    assert_string_equal(error, "marker nested too deeply");
}

/* --- requirements ----------------------------------------------------------------- */

static void parse_ok(const char *text, deps_requirement *r) {
    char error[256] = "";
    if (deps_requirement_parse(text, r, error, sizeof error) != 0)
        fail_msg("'%s' refused: %s", text, error);
}

static void test_requirement_parts(void **state) {
    (void)state;
    deps_requirement r;
    parse_ok("requests", &r);
    assert_string_equal(r.name, "requests");
    assert_string_equal(r.normalized, "requests");
    assert_int_equal(r.extra_count, 0);
    assert_string_equal(r.specifier, "");
    assert_string_equal(r.marker, "");

    parse_ok("requests[security,socks]>=2.8.1,==2.8.* ; python_version < \"2.7\"", &r);
    assert_string_equal(r.name, "requests");
    assert_int_equal(r.extra_count, 2);
    assert_string_equal(r.extras[0], "security");
    assert_string_equal(r.extras[1], "socks");
    assert_string_equal(r.specifier, ">=2.8.1,==2.8.*");
    assert_string_equal(r.marker, "python_version < \"2.7\"");

    parse_ok("Ruamel.YAML (>=0.17)", &r);
    assert_string_equal(r.name, "Ruamel.YAML");
    assert_string_equal(r.normalized, "ruamel-yaml");
    assert_string_equal(r.specifier, ">=0.17");

    parse_ok("Foo_Bar[Extra_One, extra.two]", &r);
    assert_string_equal(r.normalized, "foo-bar");
    assert_int_equal(r.extra_count, 2);
    assert_string_equal(r.extras[0], "extra-one");
    assert_string_equal(r.extras[1], "extra-two");

    parse_ok("pkg[]", &r);
    assert_int_equal(r.extra_count, 0);
    parse_ok("pkg ()", &r);
    assert_string_equal(r.specifier, "");
    parse_ok("pkg; os_name == 'posix'", &r);
    assert_string_equal(r.specifier, "");
    assert_string_equal(r.marker, "os_name == 'posix'");
    parse_ok("pkg===1.0", &r);
    assert_string_equal(r.specifier, "===1.0");
    parse_ok("pkg~=1.0", &r);
    assert_string_equal(r.specifier, "~=1.0");
    parse_ok("pkg!=1.0", &r);
    assert_string_equal(r.specifier, "!=1.0");
    parse_ok("a", &r);
    assert_string_equal(r.normalized, "a");
    /* Markers are only parsed here: an extra the environment lacks is fine. */
    parse_ok("pytest ; extra == 'test'", &r);
    assert_string_equal(r.marker, "extra == 'test'");
}

static void test_requirement_whitespace_variants(void **state) {
    (void)state;
    static const char *const spellings[] = {
        "requests[security,socks]>=2.8.1,==2.8.*;python_version<\"2.7\"",
        "requests [security, socks] >=2.8.1, ==2.8.* ; python_version < \"2.7\"",
        "  requests  [ security , socks ]  ( >= 2.8.1 , == 2.8.* )  ;  python_version < \"2.7\"  ",
        "requests[security,socks](>=2.8.1,==2.8.*);python_version < \"2.7\"",
        "\trequests[security,socks]\t>= 2.8.1,\t==2.8.*\t;\tpython_version < \"2.7\"\n",
    };
    for (size_t i = 0; i < COUNT(spellings); i++) {
        deps_requirement r;
        parse_ok(spellings[i], &r);
        assert_string_equal(r.name, "requests");
        assert_int_equal(r.extra_count, 2);
        assert_string_equal(r.extras[1], "socks");
        assert_string_equal(r.specifier, ">=2.8.1,==2.8.*");
        if (strcmp(r.marker, "python_version<\"2.7\"") != 0 &&
            strcmp(r.marker, "python_version < \"2.7\"") != 0)
            fail_msg("marker '%s' from '%s'", r.marker, spellings[i]);
        int applies = 7;
        assert_int_equal(deps_requirement_applies(&r, NULL, &applies, NULL, 0), 0);
        assert_int_equal(applies, 0);
    }
}

static void test_requirement_refusals(void **state) {
    (void)state;
    deps_requirement r;
    char error[256];
    assert_int_equal(deps_requirement_parse("pkg @ https://example.com/pkg.whl", &r, error,
                                            sizeof error), -1);
    assert_string_equal(error, "direct references (name @ url) are not supported");
    assert_int_equal(deps_requirement_parse("pkg[extra]@file:///tmp/x.whl", &r, error, sizeof error), -1);
    assert_string_equal(error, "direct references (name @ url) are not supported");
    assert_int_equal(deps_requirement_parse("pkg@https://x", &r, error, sizeof error), -1);
    assert_string_equal(error, "direct references (name @ url) are not supported");
    static const char *const bad[] = {
        "",            "   ",          "-pkg",        "pkg-",        "pkg_ >=1",     ".pkg",
        "pkg[",        "pkg[a b]",     "pkg[a,]",     "pkg[,a]",     "pkg[-a]",      "pkg]",
        "pkg >= ",     "pkg (>=1",     "pkg >=1)",    "pkg ; ",      "pkg ; nonsense",
        "pkg 1.0",     "pkg (>=1) x",  "pkg > = 1",   "pkg >=1 .0",  "pkg ==1.0 ; os_name",
        "pkg ; foo == '1'", "pkg ; (os_name == 'posix'", "pk g",    "pkg!",        "pkg$>=1",
        "pkg ((>=1))", "pkg[a](>=1",   "pkg >=1,",    "p\xc3\xa9kg", "pkg\x01",      "@ url",
        "[extra]",     ">=1.0",        "pkg ;; os_name == 'posix'",
    };
    for (size_t i = 0; i < COUNT(bad); i++) {
        memset(&r, 'x', sizeof r);
        error[0] = '\0';
        if (deps_requirement_parse(bad[i], &r, error, sizeof error) != -1)
            fail_msg("'%s' accepted", bad[i]);
        if (!error[0] || strchr(error, '\n')) fail_msg("'%s' gave message '%s'", bad[i], error);
        if (r.name[0] || r.extra_count || r.specifier[0] || r.marker[0])
            fail_msg("'%s' left a partial result", bad[i]);
    }
}

static void test_requirement_sizes(void **state) {
    (void)state;
    deps_requirement r;
    char text[8192];
    /* A name of DEPS_NAME_MAX - 1 characters fits; one more does not. */
    memset(text, 'a', DEPS_NAME_MAX - 1);
    text[DEPS_NAME_MAX - 1] = '\0';
    parse_ok(text, &r);
    assert_int_equal(strlen(r.normalized), DEPS_NAME_MAX - 1);
    memset(text, 'a', DEPS_NAME_MAX);
    text[DEPS_NAME_MAX] = '\0';
    assert_int_equal(deps_requirement_parse(text, &r, NULL, 0), -1);
    memset(text, 'a', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    assert_int_equal(deps_requirement_parse(text, &r, NULL, 0), -1);
    /* DEPS_EXTRAS_MAX extras fit; one more does not. */
    strcpy(text, "pkg[");
    for (int i = 0; i < DEPS_EXTRAS_MAX; i++)
        sprintf(text + strlen(text), "%se%d", i ? "," : "", i);
    strcat(text, "]");
    parse_ok(text, &r);
    assert_int_equal(r.extra_count, DEPS_EXTRAS_MAX);
    assert_string_equal(r.extras[DEPS_EXTRAS_MAX - 1], "e15");
    text[strlen(text) - 1] = '\0';
    strcat(text, ",one-more]");
    assert_int_equal(deps_requirement_parse(text, &r, NULL, 0), -1);
    /* An extra name as long as the field allows, and one longer. */
    strcpy(text, "pkg[");
    memset(text + 4, 'e', DEPS_NAME_MAX);
    strcpy(text + 4 + DEPS_NAME_MAX, "]");
    assert_int_equal(deps_requirement_parse(text, &r, NULL, 0), -1);
    /* A specifier that fits without its spaces, and one that does not. */
    strcpy(text, "pkg ");
    while (strlen(text) < 4 + DEPS_SPECIFIER_MAX - 20) strcat(text, "!=1.0 , ");
    strcat(text, ">=0");
    parse_ok(text, &r);
    assert_true(strlen(r.specifier) < DEPS_SPECIFIER_MAX);
    while (strlen(text) < 4 + 2 * DEPS_SPECIFIER_MAX) strcat(text, ",!=1.0");
    assert_int_equal(deps_requirement_parse(text, &r, NULL, 0), -1);
    /* A marker of DEPS_MARKER_MAX - 1 characters fits; one more does not. */
    strcpy(text, "pkg ; os_name == '");
    size_t marker_start = strlen("pkg ; ");
    size_t quote_at = marker_start + DEPS_MARKER_MAX - 2;
    memset(text + strlen(text), 'x', quote_at - strlen(text));
    strcpy(text + quote_at, "'");
    parse_ok(text, &r);
    assert_int_equal(strlen(r.marker), DEPS_MARKER_MAX - 1);
    strcpy(text + quote_at, "x'");
    assert_int_equal(deps_requirement_parse(text, &r, NULL, 0), -1);
}

static void test_requirement_applies(void **state) {
    (void)state;
    deps_requirement r;
    int applies = 7;
    parse_ok("pkg", &r);
    assert_int_equal(deps_requirement_applies(&r, NULL, &applies, NULL, 0), 0);
    assert_int_equal(applies, 1);
    assert_int_equal(deps_requirement_applies(&r, "test", &applies, NULL, 0), 0);
    assert_int_equal(applies, 1);
    parse_ok("pytest>=7 ; extra == 'Test'", &r);
    assert_int_equal(deps_requirement_applies(&r, NULL, &applies, NULL, 0), 0);
    assert_int_equal(applies, 0);
    assert_int_equal(deps_requirement_applies(&r, "test", &applies, NULL, 0), 0);
    assert_int_equal(applies, 1);
    assert_int_equal(deps_requirement_applies(&r, "docs", &applies, NULL, 0), 0);
    assert_int_equal(applies, 0);
    parse_ok("colorama ; sys_platform == 'win32'", &r);
    assert_int_equal(deps_requirement_applies(&r, NULL, &applies, NULL, 0), 0);
    assert_int_equal(applies, 0);
    parse_ok("tomli>=1.1.0; python_version < \"3.11\"", &r);
    assert_int_equal(deps_requirement_applies(&r, NULL, &applies, NULL, 0), 0);
    assert_int_equal(applies, 0);
    parse_ok("typing-extensions>=4; python_version >= '3.8' and extra == 'typing'", &r);
    assert_int_equal(deps_requirement_applies(&r, "typing", &applies, NULL, 0), 0);
    assert_int_equal(applies, 1);
    /* A struct filled by hand with an unterminated marker is refused. */
    memset(r.marker, 'x', sizeof r.marker);
    assert_int_equal(deps_requirement_applies(&r, NULL, &applies, NULL, 0), -1);
}

static void test_name_normalisation(void **state) {
    (void)state;
    static const char *const same[][2] = {
        {"Foo__Bar.baz", "foo-bar-baz"}, {"friendly-bard", "friendly-bard"},
        {"Friendly-Bard", "friendly-bard"}, {"FRIENDLY-BARD", "friendly-bard"},
        {"friendly.bard", "friendly-bard"}, {"friendly_bard", "friendly-bard"},
        {"friendly--bard", "friendly-bard"}, {"FrIeNdLy-._.-bArD", "friendly-bard"},
        {"a", "a"}, {"0", "0"}, {"zope.interface", "zope-interface"},
    };
    char out[DEPS_NAME_MAX];
    for (size_t i = 0; i < COUNT(same); i++) {
        if (deps_normalize_name(same[i][0], out, sizeof out) != 0) fail_msg("'%s' refused", same[i][0]);
        assert_string_equal(out, same[i][1]);
    }
    static const char *const invalid[] = {"", "-a", "a-", "_a", "a.", "a b", "a/b", "a@b", "a+b",
                                          "caf\xc3\xa9", "a\n", ".", "--"};
    for (size_t i = 0; i < COUNT(invalid); i++) {
        strcpy(out, "junk");
        if (deps_normalize_name(invalid[i], out, sizeof out) != -1) fail_msg("'%s' accepted", invalid[i]);
        assert_string_equal(out, "");
    }
    /* Exactly fitting, one short, and the separator that would not fit. */
    char small[4];
    assert_int_equal(deps_normalize_name("abc", small, sizeof small), 0);
    assert_string_equal(small, "abc");
    assert_int_equal(deps_normalize_name("abcd", small, sizeof small), -1);
    assert_string_equal(small, "");
    assert_int_equal(deps_normalize_name("ab_c", small, sizeof small), -1);
    assert_int_equal(deps_normalize_name("a__b", small, sizeof small), 0);
    assert_string_equal(small, "a-b");
    assert_int_equal(deps_normalize_name("abc", small, 0), -1);
    assert_int_equal(deps_normalize_name("much-too-long-for-this", out, 16), -1);
}

/* --- errors, NULLs and random input -------------------------------------------- */

static void test_error_buffers_and_null_arguments(void **state) {
    (void)state;
    int value = 3;
    /* NULL or empty error buffers: nothing written, still -1. */
    assert_int_equal(deps_version_compare("x", "1", &value, NULL, 0), -1);
    char error[8] = "unused";
    assert_int_equal(deps_version_compare("x", "1", &value, error, 0), -1);
    assert_string_equal(error, "unused");
    /* A short buffer holds a truncated, terminated message. */
    assert_int_equal(deps_version_compare("xyzzy", "1", &value, error, sizeof error), -1);
    assert_string_equal(error, "invalid");
    /* Control characters in quoted input do not break the line. */
    char message[128];
    assert_int_equal(deps_version_compare("1\n2\x1b[0m", "1", &value, message, sizeof message), -1);
    assert_null(strchr(message, '\n'));
    assert_null(strchr(message, '\x1b'));
    /* NULL inputs and outputs are errors, not crashes. */
    deps_requirement r;
    char out[16];
    assert_int_equal(deps_normalize_name(NULL, out, sizeof out), -1);
    assert_int_equal(deps_normalize_name("a", NULL, 16), -1);
    assert_int_equal(deps_version_compare(NULL, "1", &value, message, sizeof message), -1);
    assert_int_equal(deps_version_compare("1", NULL, &value, message, sizeof message), -1);
    assert_int_equal(deps_version_compare("1", "1", NULL, message, sizeof message), -1);
    assert_int_equal(deps_version_is_prerelease(NULL), -1);
    assert_int_equal(deps_specifier_contains(NULL, "1", 0, &value, message, sizeof message), -1);
    assert_int_equal(deps_specifier_contains("", NULL, 0, &value, message, sizeof message), -1);
    assert_int_equal(deps_specifier_contains("", "1", 0, NULL, message, sizeof message), -1);
    assert_int_equal(deps_marker_evaluate(NULL, NULL, &value, message, sizeof message), -1);
    assert_int_equal(deps_marker_evaluate("os_name == 'posix'", NULL, NULL, message, sizeof message), -1);
    assert_int_equal(deps_requirement_parse(NULL, &r, message, sizeof message), -1);
    assert_int_equal(deps_requirement_parse("pkg", NULL, message, sizeof message), -1);
    assert_int_equal(deps_requirement_applies(NULL, NULL, &value, message, sizeof message), -1);
    parse_ok("pkg", &r);
    assert_int_equal(deps_requirement_applies(&r, NULL, NULL, message, sizeof message), -1);
    assert_int_equal(value, 3);
}

/* Random text from the characters these grammars use, in every parser:
 * an answer, never a crash, an overflow or a hang (ASan and UBSan watch). */
static void test_parsers_are_total(void **state) {
    (void)state;
    static const char alphabet[] = "0123456789.!+-_*,;=<>~()[]'\" \tabcdeprstvwxyzonilmu@AVR\\\x01\xff";
    static const char *const words[] = {
        "python_version", "sys_platform", "extra", " and ", " or ", " not in ", " in ", "==",
        ">=", "~=", "===", "!=", ".post", ".dev", "rc", "alpha", "1!", ".*", "+local", "'3.8'",
        "\"wasi\"", "(", ")", "[a,b]", " @ ", ";",
    };
    uint32_t seed = 12345;
    char text[160];
    int answers[2] = {0, 0};
    for (int round = 0; round < 200000; round++) {
        seed = seed * 1103515245u + 12345u;
        size_t n = (seed >> 8) % 120, length = 0;
        while (length < n) {
            seed = seed * 1103515245u + 12345u;
            if ((seed >> 24) < 40) { /* splice in a whole token now and then */
                const char *w = words[(seed >> 8) % COUNT(words)];
                size_t wl = strlen(w);
                if (length + wl >= sizeof text) break;
                memcpy(text + length, w, wl);
                length += wl;
            } else {
                text[length++] = alphabet[(seed >> 8) % (sizeof alphabet - 1)];
            }
        }
        text[length] = '\0';
        int value = 0, result;
        char error[64];
        deps_requirement r;
        char normalized[32];
        result = deps_version_compare(text, "1.0", &value, error, sizeof error);
        assert_true(result == 0 || result == -1);
        result = deps_version_is_prerelease(text);
        assert_true(result >= -1 && result <= 1);
        result = deps_specifier_contains(text, "1.0", round & 1, &value, error, sizeof error);
        assert_true(result == 0 || result == -1);
        result = deps_specifier_contains(">=1.0,!=2.*", text, round & 1, &value, error, sizeof error);
        assert_true(result == 0 || result == -1);
        result = deps_marker_evaluate(text, (round & 2) ? "x" : NULL, &value, error, sizeof error);
        assert_true(result == 0 || result == -1);
        result = deps_normalize_name(text, normalized, sizeof normalized);
        assert_true(result == 0 || result == -1);
        result = deps_requirement_parse(text, &r, error, sizeof error);
        assert_true(result == 0 || result == -1);
        answers[result + 1]++;
        if (result == 0) {
            result = deps_requirement_applies(&r, "x", &value, error, sizeof error);
            assert_true(result == 0 || result == -1);
        }
    }
    /* The input must reach past the first character of the grammar. */
    assert_true(answers[1] > 0 && answers[0] > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_versions_follow_pep440_examples),
        cmocka_unit_test(test_version_spellings_normalise),
        cmocka_unit_test(test_invalid_versions_are_errors),
        cmocka_unit_test(test_local_versions_sort_as_pep440_says),
        cmocka_unit_test(test_prereleases_are_recognised),
        cmocka_unit_test(test_every_operator),
        cmocka_unit_test(test_wildcards),
        cmocka_unit_test(test_compatible_release),
        cmocka_unit_test(test_exclusive_ordering),
        cmocka_unit_test(test_local_labels_in_specifiers),
        cmocka_unit_test(test_prerelease_handling),
        cmocka_unit_test(test_malformed_specifiers_are_errors),
        cmocka_unit_test(test_markers_describe_the_sandbox),
        cmocka_unit_test(test_marker_precedence_and_parentheses),
        cmocka_unit_test(test_marker_extras),
        cmocka_unit_test(test_marker_in_operators),
        cmocka_unit_test(test_malformed_markers_are_errors),
        cmocka_unit_test(test_requirement_parts),
        cmocka_unit_test(test_requirement_whitespace_variants),
        cmocka_unit_test(test_requirement_refusals),
        cmocka_unit_test(test_requirement_sizes),
        cmocka_unit_test(test_requirement_applies),
        cmocka_unit_test(test_name_normalisation),
        cmocka_unit_test(test_error_buffers_and_null_arguments),
        cmocka_unit_test(test_parsers_are_total),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
