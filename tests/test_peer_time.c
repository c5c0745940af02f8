/* test_peer_time.c -- the opened_at forms peers in other languages write. */
#include <string.h>

#include "peer_time.h"
#include "peer_time_cases.h"
#include "test.h"

static int parses(const char *s, double want_ms) {
    double ms = -1;
    return cb_peer_time_parse(s, strlen(s), &ms) == 0 && fabs(ms - want_ms) < 1e-3;
}

static int rejects(const char *s) {
    double ms = 42;
    return cb_peer_time_parse(s, strlen(s), &ms) == -1 && ms == 42;
}

int main(void) {
    /* 2025-12-03T08:05:16Z = 1764749116 (date -u -d @1764749116) */
    test("isoformat() of an aware UTC datetime, with microseconds");
    test_cond(parses("2025-12-03T08:05:16.123456+00:00", 1764749116123.0));
    test("isoformat() without a fraction");
    test_cond(parses("2025-12-03T08:05:16+00:00", 1764749116000.0));
    test("naive isoformat() is UTC");
    test_cond(parses("2025-12-03T08:05:16", 1764749116000.0));
    test("a naive one with a fraction, and a space separator");
    test_cond(parses("2025-12-03 08:05:16.5", 1764749116500.0));
    test("offsets east and west, with and without the colon");
    test_cond(parses("2025-12-03T13:35:16+05:30", 1764749116000.0) &&
              parses("2025-12-03T03:05:16-0500", 1764749116000.0) &&
              parses("2025-12-03T10:05:16+02", 1764749116000.0));
    test("Z and z, and minutes without seconds");
    test_cond(parses("2025-12-03T08:05:16Z", 1764749116000.0) &&
              parses("2025-12-03t08:05:16.000z", 1764749116000.0) &&
              parses("2025-12-03T08:05", 1764749100000.0));
    test("an offset crossing midnight and a leap day");
    test_cond(parses("2024-03-01T00:30:00+01:00", 1709249400000.0) &&
              parses("2024-02-29T23:30:00Z", 1709249400000.0));
    test("the epoch itself and the far future a force writes");
    test_cond(parses("1970-01-01T00:00:00+00:00", 0) &&
              parses("2125-11-09T08:05:16+00:00", 4918349116000.0));
    test("epoch seconds, whole and fractional (timestamp())");
    test_cond(parses("1764749116", 1764749116000.0) &&
              parses("1764749116.123456", 1764749116123.456) && parses("0", 0));
    test("epoch milliseconds");
    test_cond(parses("1764749116123", 1764749116123.0));
    test("seconds far in the future stay seconds");
    test_cond(parses("4918349116", 4918349116000.0));
    test("impossible dates and times");
    test_cond(rejects("2025-02-29T00:00:00") && rejects("2025-04-31T00:00:00") &&
              rejects("2025-13-01T00:00:00") && rejects("2025-12-03T24:00:00") &&
              rejects("2025-12-03T08:60:00") && rejects("2025-12-03T08:05:60") &&
              rejects("1969-12-31T23:59:59Z") && rejects("1970-01-01T00:00:00+01:00"));
    test("bad offsets and trailing text");
    test_cond(rejects("2025-12-03T08:05:16+24:00") && rejects("2025-12-03T08:05:16+05:60") &&
              rejects("2025-12-03T08:05:16+5") && rejects("2025-12-03T08:05:16 UTC") &&
              rejects("2025-12-03T08:05:16.") && rejects("2025-12-03T08:05:16.1234567890") &&
              rejects("2025-12-03") && rejects("2025-12-03T08"));
    test("bad numbers");
    test_cond(rejects("") && rejects("-1") && rejects("+1") && rejects("1e9") &&
              rejects("1.") && rejects(".5") && rejects("nan") && rejects("inf") &&
              rejects(" 1764749116") && rejects("1764749116 ") && rejects("0x10") &&
              rejects("100000000000000") && rejects("1234567890123456789012"));
    test("not a time at all, and text past a NUL is not read");
    {
        double ms = 7;
        test_cond(rejects("forced-open") && rejects("None") &&
                  cb_peer_time_parse("12\0" "34", 5, &ms) == -1 && ms == 7 &&
                  cb_peer_time_parse(NULL, 3, &ms) == -1);
    }
    test("a prefix of the buffer is all that is read");
    {
        double ms = 0;
        test_cond(cb_peer_time_parse("1764749116999", 10, &ms) == 0 &&
                  fabs(ms - 1764749116000.0) < 1e-3);
    }
    test("the shared cases (the store script's epoch_ms runs the same in spec 38)");
    {
        int all = 1;
        for (size_t i = 0; i < sizeof peer_time_cases / sizeof *peer_time_cases; i++) {
            double ms = -1;
            int r = cb_peer_time_parse(peer_time_cases[i].in, strlen(peer_time_cases[i].in), &ms);
            double got = r == 0 ? floor(ms) : -1;
            if (got != peer_time_cases[i].want) {
                fprintf(stderr, "  %s: %.0f, want %.0f\n", peer_time_cases[i].in, got,
                        peer_time_cases[i].want);
                all = 0;
            }
        }
        test_cond(all);
    }
    test("more than 15 digits, more than 9 fraction digits, past 1e14 ms in either form");
    test_cond(rejects("0000000000000001") && rejects("1764749116.1234567890") &&
              rejects("5138-11-16T09:46:40Z") && rejects("9999-12-31T23:59:59Z") &&
              parses("5138-11-16T09:46:39Z", 99999999999000.0));
    return test_report();
}
