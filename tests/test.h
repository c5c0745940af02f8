/* test.h -- hiredis-style tiny test macros for the C tests of the core. */
#ifndef CB_TEST_H
#define CB_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int tests_run = 0, tests_failed = 0;

#define test(name) printf("#%02d %s: ", ++tests_run, name)
#define test_cond(c) do {                                                     \
        if (c) { printf("\033[0;32mPASSED\033[0;0m\n"); }                    \
        else { printf("\033[0;31mFAILED\033[0;0m (%s:%d: %s)\n", __FILE__,  \
                      __LINE__, #c); tests_failed++; }                         \
    } while (0)
/* One named test of one condition: test() and test_cond() together. */
#define check(name, c) do { test(name); test_cond(c); } while (0)
#define test_near(a, b) test_cond(fabs((double)(a) - (double)(b)) < 1e-9)
#define test_report() (printf("%d passed, %d failed\n", tests_run - tests_failed, \
                              tests_failed), tests_failed ? 1 : 0)

#endif
