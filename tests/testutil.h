/* testutil.h - shared helpers for the CUnit suites.
 *
 * TEST_MAIN(register_fn) defines main(): it registers the suites, runs them
 * with the basic runner in verbose mode and exits non-zero on any failure, so
 * automake's harness and CI see the result.  Floating-point comparisons print
 * the first mismatching values, as llm.c's checker does, instead of a bare
 * "assertion failed".
 */
#ifndef HELENE_TESTUTIL_H
#define HELENE_TESTUTIL_H

#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define TEST_MAIN(register_fn)                                                   \
    int main(void)                                                               \
    {                                                                            \
        if (CU_initialize_registry() != CUE_SUCCESS)                             \
            return 2;                                                            \
        register_fn();                                                           \
        CU_basic_set_mode(CU_BRM_VERBOSE);                                       \
        CU_basic_run_tests();                                                    \
        unsigned failed = CU_get_number_of_failures() +                          \
                          CU_get_number_of_tests_failed();                       \
        CU_cleanup_registry();                                                   \
        return failed ? 1 : 0;                                                   \
    }

/* Compare n floats with a mixed tolerance |a-b| <= atol + rtol*|b|; print
 * up to 5 mismatches with their index.  Returns the number of mismatches. */
static inline size_t test_close_floats(const char *what, const float *got, const float *want,
                                       size_t n, double rtol, double atol)
{
    size_t bad = 0;
    double maxdiff = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (d > maxdiff || isnan(d))
            maxdiff = d;
        if (!(d <= atol + rtol * fabs((double)want[i]))) {
            if (bad < 5)
                fprintf(stderr, "  %s[%zu]: got %.8g want %.8g (diff %.3g)\n", what, i,
                        (double)got[i], (double)want[i], d);
            bad++;
        }
    }
    if (bad)
        fprintf(stderr, "  %s: %zu of %zu values differ (max abs diff %.3g)\n", what, bad, n,
                maxdiff);
    return bad;
}

/* Add a test or abort the run: registration failures are bugs in the suite. */
#define TEST_ADD(suite, fn)                                                      \
    do {                                                                         \
        if (!CU_add_test((suite), #fn, (fn))) {                                  \
            fprintf(stderr, "cannot register %s\n", #fn);                        \
            exit(2);                                                             \
        }                                                                        \
    } while (0)

#endif
