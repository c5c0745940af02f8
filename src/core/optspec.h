/* optspec.h -- the option schema: one table per options struct, naming each
 * option, its type, where it lives in the struct and its range.  The core's
 * *_opts_check functions and the Lua binding's one option reader both walk
 * these tables, so a range is written once.  No Lua here. */
#ifndef CB_OPTSPEC_H
#define CB_OPTSPEC_H

#include <stddef.h>

#include "cbreaker.h"

typedef enum cb_optkind {
    CB_OPT_STRING,  /* const char * */
    CB_OPT_NUMBER,  /* double in [lo, hi] */
    CB_OPT_U32,     /* uint32_t, a whole number in [lo, hi] */
    CB_OPT_SIZE,    /* size_t, a whole number in [lo, hi] */
    CB_OPT_SEED,    /* uint64_t from an integer in [lo, hi] (two's complement) */
    CB_OPT_ENUM,    /* an enum, one of the NULL-terminated names in `sub` */
    CB_OPT_PAIR,    /* two doubles, at offset and offset2, each in [lo, hi] */
    CB_OPT_CLOCK,   /* cb_clock, set by the host (a manual clock) */
    CB_OPT_OPTS,    /* a nested options struct, schema `sub` */
    CB_OPT_BOOL     /* int, 0 or 1 (a boolean in Lua) */
} cb_optkind;

enum {
    CB_OPT_LO_OPEN = 1,  /* lo itself is out of range */
    CB_OPT_ZERO = 2,     /* 0 is also valid (off, or "at once") */
    CB_OPT_INF = 4,      /* +infinity is also valid (never) */
    CB_OPT_NOZERO = 8,   /* a string without zero bytes */
    CB_OPT_TOP = 16,     /* not in a nested struct (a registry's defaults) */
    CB_OPT_NEW = 32      /* set when creating only, not by configure */
};

typedef struct cb_optspec {
    const char *name;
    unsigned char kind, flags;
    size_t offset, offset2;
    double lo, hi;
    const char *what;  /* "a number of seconds in [0.001, 1e9]": what a value must be */
    const char *msg;   /* "<name> must be <what>": the core's check message */
    const void *sub;   /* CB_OPT_ENUM: names; CB_OPT_OPTS: schema */
} cb_optspec;

typedef struct cb_optschema {
    const char *kind;  /* "breaker", "registry", "bandit", "pool", "redis" */
    const cb_optspec *f;
    size_t n;
} cb_optschema;

extern const cb_optschema cb_breaker_schema, cb_registry_schema, cb_bandit_schema,
    cb_pool_schema;
#if CB_WITH_REDIS
extern const cb_optschema cb_store_schema;  /* cbreaker_redis.h's cb_store_opts */
extern const cb_optschema cb_store_tls_schema;  /* its tls */
#endif

/* The entry named `name`, or NULL. */
const cb_optspec *cb_optschema_find(const cb_optschema *s, const char *name);

/* True when the number `v` is a valid value of `f` (a NUMBER, U32, SIZE,
 * SEED or an element of a PAIR).  False for NaN. */
int cb_optspec_in_range(const cb_optspec *f, double v);

/* Checks the ranges of every numeric and enum option of the struct `o`
 * (nested structs too).  Returns NULL, or the static message of the first
 * option out of range. */
const char *cb_optschema_check(const cb_optschema *s, const void *o);

#endif
