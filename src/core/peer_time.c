/* peer_time.c -- time stamps written by peers in other languages. */
#include "peer_time.h"

#include <math.h>

#define EPOCH_MS_FROM 1e11  /* smaller numbers are seconds (until year 5138) */
#define EPOCH_MS_TO 1e14    /* the same bound for both forms (year 5138) */

/* Reads exactly n digits at *p; -1 when one is not a digit. */
static int digits(const char **p, const char *end, int n) {
    int v = 0;
    if (end - *p < n) return -1;
    for (int i = 0; i < n; i++, (*p)++) {
        if (**p < '0' || **p > '9') return -1;
        v = v * 10 + (**p - '0');
    }
    return v;
}

static int expect(const char **p, const char *end, char c) {
    if (*p < end && **p == c) {
        (*p)++;
        return 1;
    }
    return 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static long days_from_civil(long y, int m, int d) {
    y -= m <= 2;
    long era = (y >= 0 ? y : y - 399) / 400;
    long yoe = y - era * 400;
    long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m) {
    static const int n[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return n[m - 1] + (m == 2 && leap);
}

static int parse_number(const char *p, const char *end, double *ms) {
    double v = 0, scale = 1;
    int intdigits = 0, fracdigits = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (++intdigits > 15) return -1;  /* beyond EPOCH_MS_TO anyway */
        v = v * 10 + (*p - '0');
    }
    if (intdigits == 0) return -1;
    if (expect(&p, end, '.')) {
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            if (++fracdigits > 9) return -1;
            scale /= 10;
            v += (*p - '0') * scale;
        }
        if (fracdigits == 0) return -1;
    }
    if (p != end || v >= EPOCH_MS_TO) return -1;
    *ms = v < EPOCH_MS_FROM ? v * 1000 : v;
    return 0;
}

/* [Z|z|+HH[[:]MM]|-HH[[:]MM]] to the end; *off in minutes east of UTC. */
static int parse_offset(const char *p, const char *end, int *off) {
    *off = 0;
    if (p == end) return 0;  /* naive: UTC */
    if ((*p == 'Z' || *p == 'z') && p + 1 == end) return 0;
    int sign = *p == '+' ? 1 : *p == '-' ? -1 : 0;
    if (!sign) return -1;
    p++;
    int h = digits(&p, end, 2), m = 0;
    if (h < 0 || h > 23) return -1;
    if (p < end) {
        expect(&p, end, ':');
        m = digits(&p, end, 2);
        if (m < 0 || m > 59 || p != end) return -1;
    }
    *off = sign * (h * 60 + m);
    return 0;
}

static int parse_iso(const char *p, const char *end, double *ms) {
    int y = digits(&p, end, 4);
    if (y < 1970 || !expect(&p, end, '-')) return -1;
    int mo = digits(&p, end, 2);
    if (mo < 1 || mo > 12 || !expect(&p, end, '-')) return -1;
    int d = digits(&p, end, 2);
    if (d < 1 || d > days_in_month(y, mo)) return -1;
    if (!(expect(&p, end, 'T') || expect(&p, end, 't') || expect(&p, end, ' '))) return -1;
    int h = digits(&p, end, 2);
    if (h < 0 || h > 23 || !expect(&p, end, ':')) return -1;
    int mi = digits(&p, end, 2);
    if (mi < 0 || mi > 59) return -1;
    int sec = 0;
    double frac = 0;
    if (expect(&p, end, ':')) {
        sec = digits(&p, end, 2);
        if (sec < 0 || sec > 59) return -1;
        if (expect(&p, end, '.')) {
            double scale = 1;
            int n = 0;
            for (; p < end && *p >= '0' && *p <= '9'; p++) {
                if (++n > 9) return -1;
                scale /= 10;
                frac += (*p - '0') * scale;
            }
            if (n == 0) return -1;
        }
    }
    int off;
    if (parse_offset(p, end, &off) != 0) return -1;
    double s = (double)days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off * 60;
    double v = s * 1000 + floor(frac * 1000 + 1e-6);  /* ms: a fraction's tail is dropped */
    if (s < 0 || v >= EPOCH_MS_TO) return -1;  /* 1970-01-01T00:00+01:00; a number's range */
    *ms = v;
    return 0;
}

int cb_peer_time_parse(const char *s, size_t len, double *ms) {
    if (!s || len == 0 || len > 64) return -1;
    const char *end = s + len;
    double v;
    /* "YYYY-" marks ISO; a bare number has no '-' at its fifth byte */
    int r = len > 4 && s[4] == '-' ? parse_iso(s, end, &v) : parse_number(s, end, &v);
    if (r != 0) return -1;
    *ms = v;
    return 0;
}
