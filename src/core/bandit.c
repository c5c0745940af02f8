/* bandit.c -- Beta-Bernoulli Thompson sampling.
 *
 * An arm's posterior is Beta(prior_alpha + S, prior_beta + F), S and F the
 * decayed sums of rewards and of (1 - reward).  Decay is lazy: arms store
 * S / scale and F / scale, and one shared `scale` turns them into evidence
 * now, so a per-update discount or a half-life costs O(1) per operation, not
 * a pass over every arm.  When the scale gets tiny it is folded into the
 * arms (a rare O(arms) pass), which keeps the stored values finite.
 *
 * Draws: Gamma by Marsaglia & Tsang (2000), with the U^(1/a) boost for
 * a < 1 done in log space so tiny shapes cannot make 0/0, and its constants
 * cached per arm while the shape stays the same; normals by the ziggurat
 * (Marsaglia & Tsang 2000, in Doornik's ZIGNOR form: the layer and the
 * abscissa from independent bits), one 64-bit draw and no log, sqrt or
 * division in 98% of cases; Beta as X / (X + Y).  Nothing here allocates
 * after cb_bandit_add_arm. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "optspec.h"
#include "rng_impl.h"

#define FOLD_BELOW 1e-100 /* stored = real / scale stays below ~1e100 * real */

#define ZIG_N 128          /* ziggurat layers */
#define ZIG_R 3.442619855899 /* where the tail starts, for 128 layers */
#define ZIG_V 9.91256303526217e-3 /* the area of each layer */

/* Marsaglia-Tsang constants for one Gamma shape, kept while it holds. */
typedef struct gamma_shape {
    double a;  /* the shape they are for; < 0: none yet */
    double d, c;
} gamma_shape;

typedef struct bandit_arm {
    char *name;
    double succ, fail;  /* evidence / scale */
    gamma_shape ka, kb; /* for alpha and beta */
    uint64_t updates, selections;
    double rewards;
} bandit_arm;

struct cb_bandit {
    cb_bandit_opts o;
    cb_rng rng;
    int n, cap;
    double scale;        /* per-update decay since the last fold */
    double t_ref;        /* half-life: the time of the last fold */
    bandit_arm *arms;
    double zig_x[ZIG_N + 1]; /* layer edges; per bandit, as there are no globals */
    double zig_r[ZIG_N];     /* zig_x[i + 1] / zig_x[i] */
};

void cb_bandit_opts_init(cb_bandit_opts *o) {
    memset(o, 0, sizeof *o);
    o->prior_alpha = 1;  /* uniform prior: every arm starts even */
    o->prior_beta = 1;
    o->decay = 1;
}

static int in_range(double v, double lo, double hi) {
    return v >= lo && v <= hi;  /* false for NaN */
}

const char *cb_bandit_opts_check(const cb_bandit_opts *o) {
    return cb_optschema_check(&cb_bandit_schema, o);  /* ranges: optspec.c */
}

/* ---- evidence scale ----------------------------------------------------------- */

static double now_of(const cb_bandit *b) {
    return cb_clock_read(&b->o.clock);
}

/* Multiplies every arm's stored evidence by `s`: the scale starts over. */
static void fold(cb_bandit *b, double s, double now) {
    for (int i = 0; i < b->n; i++) {
        b->arms[i].succ *= s;
        b->arms[i].fail *= s;
    }
    b->scale = 1;
    b->t_ref = now;
}

/* The factor that turns stored evidence into evidence now. */
static double scale_now(cb_bandit *b) {
    double s = b->scale;
    if (b->o.half_life > 0) {
        double now = now_of(b);
        double dt = now - b->t_ref;
        if (dt > 0) s *= exp2(-dt / b->o.half_life);  /* a clock gone back: no growth */
        if (s < FOLD_BELOW) {
            fold(b, s, now);
            return 1;
        }
    } else if (s < FOLD_BELOW) {
        fold(b, s, 0);
        return 1;
    }
    return s;
}

/* ---- random variates ---------------------------------------------------------- */

static void zig_init(cb_bandit *b) {
    double f = exp(-0.5 * ZIG_R * ZIG_R);
    b->zig_x[0] = ZIG_V / f;  /* the base layer, tail included */
    b->zig_x[1] = ZIG_R;
    b->zig_x[ZIG_N] = 0;
    for (int i = 2; i < ZIG_N; i++) {
        b->zig_x[i] = sqrt(-2 * log(ZIG_V / b->zig_x[i - 1] + f));
        f = exp(-0.5 * b->zig_x[i] * b->zig_x[i]);
    }
    for (int i = 0; i < ZIG_N; i++) b->zig_r[i] = b->zig_x[i + 1] / b->zig_x[i];
}

static double uniform_open(cb_bandit *b) {
    return 1 - cb_rng_uniform_inline(&b->rng);  /* (0, 1]: log() is finite */
}

static double normal_tail(cb_bandit *b, int negative) {
    double x, y;
    do {
        x = log(uniform_open(b)) / ZIG_R;
        y = log(uniform_open(b));
    } while (-2 * y < x * x);
    return negative ? x - ZIG_R : ZIG_R - x;
}

static double normal(cb_bandit *b) {
    for (;;) {
        uint64_t r = cb_rng_next_inline(&b->rng);
        int i = (int)(r & (ZIG_N - 1));                     /* the layer: low bits */
        double u = 2 * ((double)(r >> 11) * 0x1.0p-53) - 1; /* the abscissa: high bits */
        if (fabs(u) < b->zig_r[i]) return u * b->zig_x[i];  /* inside the layer's core */
        if (i == 0) return normal_tail(b, u < 0);
        double x = u * b->zig_x[i];  /* in a wedge: accept under the curve */
        double f0 = exp(-0.5 * (b->zig_x[i] * b->zig_x[i] - x * x));
        double f1 = exp(-0.5 * (b->zig_x[i + 1] * b->zig_x[i + 1] - x * x));
        if (f1 + cb_rng_uniform_inline(&b->rng) * (f0 - f1) < 1) return x;
    }
}

static void shape_set(gamma_shape *k, double a) {
    double s = a < 1 ? a + 1 : a;  /* a < 1 draws Gamma(a + 1), then boosts */
    k->a = a;
    k->d = s - 1.0 / 3;
    k->c = 1 / sqrt(9 * k->d);
}

/* Gamma(s, 1) for the shape s >= 1 that `k` holds, Marsaglia & Tsang. */
static inline __attribute__((always_inline)) double gamma_mt(cb_bandit *b, const gamma_shape *k) {
    double d = k->d, c = k->c;
    for (;;) {
        double x, v;
        do {
            x = normal(b);
            v = 1 + c * x;
        } while (v <= 0);
        double y = c * x;
        v = v * v * v;
        double u = cb_rng_uniform_inline(&b->rng);
        double x4 = x * x * x * x;
        if (u < 1 - 0.0331 * x4) return d * v;  /* the paper's squeeze: ~92% */
        /* The test below is log(u) < d h(y), h(y) = 3 (ln(1+y) - y + y^2/2 -
         * y^3/3) >= -(3/4) y^4 / (1 + min(y, 0)), and log(u) <= u - 1: so
         * this accepts only what it would, with no log (8% -> 0.1% of draws
         * reach it for shapes over ~40). */
        if ((1 - u) * (y < 0 ? 1 + y : 1) > c * c * x4 / 12) return d * v;
        if (log(u) < 0.5 * x * x + d * (1 - v + log(v))) return d * v;
    }
}

/* log of a Gamma(a, 1) draw, any a > 0: Gamma(a) = Gamma(a + 1) U^(1/a). */
static double log_gamma_draw(cb_bandit *b, const gamma_shape *k) {
    if (k->a >= 1) return log(gamma_mt(b, k));
    double u = uniform_open(b);
    return log(gamma_mt(b, k)) + log(u) / k->a;
}

static double beta_draw(cb_bandit *b, gamma_shape *ka, gamma_shape *kb) {
    if (ka->a >= 1 && kb->a >= 1) {
        double x = gamma_mt(b, ka), y = gamma_mt(b, kb);
        return x / (x + y);
    }
    double lx = log_gamma_draw(b, ka), ly = log_gamma_draw(b, kb);
    return 1 / (1 + exp(ly - lx));  /* X / (X + Y) without underflow */
}

static double draw_arm(cb_bandit *b, bandit_arm *a, double s) {
    double alpha = b->o.prior_alpha + a->succ * s, beta = b->o.prior_beta + a->fail * s;
    if (alpha != a->ka.a) shape_set(&a->ka, alpha);  /* a sqrt and a division saved */
    if (beta != a->kb.a) shape_set(&a->kb, beta);
    return beta_draw(b, &a->ka, &a->kb);
}

/* ---- life cycle --------------------------------------------------------------- */

cb_bandit *cb_bandit_new(const cb_bandit_opts *o) {
    if (cb_bandit_opts_check(o)) return NULL;
    cb_bandit *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->o = *o;
    cb_rng_seed(&b->rng, o->seed);
    zig_init(b);
    b->scale = 1;
    b->t_ref = o->half_life > 0 ? now_of(b) : 0;
    return b;
}

void cb_bandit_free(cb_bandit *b) {
    if (!b) return;
    for (int i = 0; i < b->n; i++) free(b->arms[i].name);
    free(b->arms);
    free(b);
}

int cb_bandit_configure(cb_bandit *b, const cb_bandit_opts *o) {
    if (cb_bandit_opts_check(o)) return CB_ERR;
    double s = scale_now(b);  /* evidence now, under the old decay */
    b->o.prior_alpha = o->prior_alpha;
    b->o.prior_beta = o->prior_beta;
    b->o.decay = o->decay;
    b->o.half_life = o->half_life;
    b->o.clock = o->clock;
    fold(b, s, o->half_life > 0 ? now_of(b) : 0);
    return CB_OK;
}

void cb_bandit_get_opts(const cb_bandit *b, cb_bandit_opts *o) {
    *o = b->o;
}

/* ---- arms --------------------------------------------------------------------- */

int cb_bandit_add_arm(cb_bandit *b, const char *name) {
    if (!name || !*name || b->n >= CB_BANDIT_MAX_ARMS) return CB_ERR;
    if (cb_bandit_find_arm(b, name) != CB_ERR) return CB_ERR;
    if (b->n == b->cap) {
        int cap = b->cap ? b->cap * 2 : 8;
        if (cap > CB_BANDIT_MAX_ARMS) cap = CB_BANDIT_MAX_ARMS;
        bandit_arm *arms = realloc(b->arms, (size_t)cap * sizeof *arms);
        if (!arms) return CB_ERR;
        b->arms = arms;
        b->cap = cap;
    }
    size_t len = strlen(name);
    char *copy = malloc(len + 1);
    if (!copy) return CB_ERR;
    memcpy(copy, name, len + 1);
    bandit_arm *a = &b->arms[b->n];
    memset(a, 0, sizeof *a);
    a->name = copy;
    a->ka.a = a->kb.a = -1;  /* no shape cached yet */
    return b->n++;
}

int cb_bandit_find_arm(const cb_bandit *b, const char *name) {
    if (!name) return CB_ERR;
    for (int i = 0; i < b->n; i++)
        if (strcmp(b->arms[i].name, name) == 0) return i;
    return CB_ERR;
}

int cb_bandit_arm_count(const cb_bandit *b) {
    return b->n;
}

static int valid_arm(const cb_bandit *b, int i) {
    return i >= 0 && i < b->n;
}

const char *cb_bandit_arm_name(const cb_bandit *b, int i) {
    return valid_arm(b, i) ? b->arms[i].name : NULL;
}

/* ---- learning and choosing ---------------------------------------------------- */

int cb_bandit_update(cb_bandit *b, int i, double reward) {
    if (!valid_arm(b, i) || !in_range(reward, 0, 1)) return CB_ERR;
    b->scale *= b->o.decay;  /* every arm's evidence fades by one step */
    double s = scale_now(b);
    bandit_arm *a = &b->arms[i];
    a->succ += reward / s;
    a->fail += (1 - reward) / s;
    a->updates++;
    a->rewards += reward;
    return CB_OK;
}

double cb_bandit_sample(cb_bandit *b, int i) {
    if (!valid_arm(b, i)) return NAN;
    return draw_arm(b, &b->arms[i], scale_now(b));
}

int cb_bandit_select(cb_bandit *b, const int *eligible, size_t n) {
    if (!eligible) n = (size_t)b->n;
    if (n == 0) return CB_ERR;
    if (eligible)
        for (size_t k = 0; k < n; k++)
            if (!valid_arm(b, eligible[k])) return CB_ERR;
    double s = scale_now(b);
    uint64_t seen[CB_BANDIT_MAX_ARMS / 64] = {0};  /* a twice-listed arm draws once */
    int best = -1;
    double top = -1;
    for (size_t k = 0; k < n; k++) {
        int i = eligible ? eligible[k] : (int)k;
        uint64_t bit = (uint64_t)1 << (i & 63);
        if (seen[i >> 6] & bit) continue;
        seen[i >> 6] |= bit;
        double x = draw_arm(b, &b->arms[i], s);
        if (x > top) {
            top = x;
            best = i;
        }
    }
    b->arms[best].selections++;
    return best;
}

int cb_bandit_discount(cb_bandit *b, int i, double factor) {
    if (!valid_arm(b, i) || !in_range(factor, 0, 1)) return CB_ERR;
    b->arms[i].succ *= factor;  /* stored * scale is real: scaling either is the same */
    b->arms[i].fail *= factor;
    return CB_OK;
}

int cb_bandit_reset(cb_bandit *b, int i) {
    if (!valid_arm(b, i)) return CB_ERR;
    bandit_arm *a = &b->arms[i];
    a->succ = a->fail = 0;
    a->updates = a->selections = 0;
    a->rewards = 0;
    return CB_OK;
}

void cb_bandit_reset_all(cb_bandit *b) {
    for (int i = 0; i < b->n; i++) cb_bandit_reset(b, i);
}

int cb_bandit_get_stats(cb_bandit *b, int i, cb_bandit_arm_stats *st) {
    if (!valid_arm(b, i)) return CB_ERR;
    const bandit_arm *a = &b->arms[i];
    double s = scale_now(b);
    st->name = a->name;
    st->alpha = b->o.prior_alpha + a->succ * s;
    st->beta = b->o.prior_beta + a->fail * s;
    st->mean = st->alpha / (st->alpha + st->beta);
    st->updates = a->updates;
    st->selections = a->selections;
    st->rewards = a->rewards;
    return CB_OK;
}
