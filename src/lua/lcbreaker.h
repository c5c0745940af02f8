/* lcbreaker.h -- what the binding's files share.  The only place outside
 * src/lua/ that sees Lua is the host. */
#ifndef LCBREAKER_H
#define LCBREAKER_H

#include <lauxlib.h>
#include <lua.h>

#include "cbreaker.h"
#include "../core/optspec.h"  /* the option schema the core owns */

/* Metatable names (`__name` gives error messages and tostring for free). */
#define CB_BREAKER_MT "cbreaker.Breaker"
#define CB_CLOCK_MT "cbreaker.ManualClock"
#define CB_REJECTION_MT "cbreaker.Rejection"
#define CB_BANDIT_MT "cbreaker.Bandit"
#define CB_REGISTRY_MT "cbreaker.Registry"
#define CB_STORE_MT "cbreaker.Store"
#define CB_MODULE_KEY "cbreaker.module"  /* registry key of the module state */
#define CB_BOXES_KEY "cbreaker.boxes"    /* weak table: box pointer -> box */

/* ---- module state ---------------------------------------------------------- */

/* State changes are queued by the core's callback and handed to Lua once the
 * core function has returned, so Lua never runs inside a core frame. */
typedef struct cb_lua_event {
    void *box;  /* the lbreaker whose breaker changed */
    unsigned char from, to, reason;
} cb_lua_event;

#define CB_LUA_MAX_EVENTS 64

typedef struct cb_lua_module {
    cb_lua_event events[CB_LUA_MAX_EVENTS];
    unsigned head, count;  /* a FIFO ring */
    unsigned long dropped; /* events lost to a full ring */
} cb_lua_module;

/* The module state of this lua_State (created by luaopen_cbreaker_core). */
cb_lua_module *cb_lua_module_get(lua_State *L);

/* Runs the Lua callbacks of queued events.  An error raised by one is
 * re-raised once the queue is empty.  Call after any core function that can
 * change a breaker's state. */
void cb_lua_dispatch(lua_State *L, cb_lua_module *m);

static inline void cb_lua_flush(lua_State *L, cb_lua_module *m) {
    if (m->count) cb_lua_dispatch(L, m);
}

/* ---- breaker box ------------------------------------------------------------ */

typedef struct lbreaker {
    void *self;           /* the box's own address: see self() in lbreaker.c */
    cb_breaker *b;        /* NULL once closed or removed from its registry */
    cb_lua_module *m;
    unsigned char owned;  /* frees b on close; a registry's breaker is borrowed */
    unsigned char measure;  /* call() times fn (slow-call tracking is on) */
    const char *gone;     /* why b is NULL: "closed" or "removed" */
} lbreaker;

/* User values of a breaker box. */
enum { CB_UV_ON_CHANGE = 1, CB_UV_CLASSIFY, CB_UV_CLOCK, CB_UV_OWNER, CB_UV_STORE,
       CB_UV_COUNT = 5 };

/* Returns the live breaker at `idx`, raising a clear error for anything else. */
lbreaker *cb_lua_checkbox(lua_State *L, int idx);
cb_breaker *cb_lua_checkbreaker(lua_State *L, int idx);

/* Pushes a new box for `b`: owned (freed with the box) or borrowed (from a
 * registry, whose userdata should be stored with cb_lua_box_setowner). */
lbreaker *cb_lua_pushbreaker(lua_State *L, cb_breaker *b, int owned);

/* Closes the box: frees an owned breaker, detaches a borrowed one.  `why`
 * is shown by methods called later ("closed", "removed from its registry"). */
void cb_lua_box_close(lua_State *L, lbreaker *box, const char *why);

/* ---- options ----------------------------------------------------------------- */

/* How to read one options table (lopts.c, against the core's schema). */
typedef struct cb_lua_optread {
    const char *ctx;   /* prefixes messages ("cbreaker.new"); "" for none */
    const char *path;  /* prefixes option names ("providers.openai"); "" for none */
    /* Called with a clock or a host value (a callback, a store, the arms) at
     * the top, once checked: the caller keeps it.  May be NULL (check only). */
    void (*keep)(lua_State *L, int which, void *ud);
    void *ud;
    int nested;        /* a registry's breaker options: no name, clock or host values */
    int configure;     /* a hot reload: options that only creation sets are refused */
    const char *deny;  /* nested: why name and clock cannot be set */
    int extra;         /* 0, or the stack index of a table of names the caller
                          handles (true: skipped, and suggested) or refuses
                          (false: unknown, and never suggested) */
} cb_lua_optread;

/* Why a registry's breaker options cannot hold a name or a clock. */
#define CB_LUA_NAMED_BY_KEY "a registry breaker is named by its key and uses the registry's clock"

/* `which` of keep: the clock, or a host value (the order of lopts.c's tables). */
enum { CB_KEEP_CLOCK = -1, CB_KEEP_CLASSIFY = 0, CB_KEEP_ON_CHANGE, CB_KEEP_STORE,
       CB_KEEP_ARMS = 0 };

/* Reads the options table at `idx` into `o` (which holds the defaults)
 * against schema `s`: raises on an unknown key (naming the closest valid
 * one), a wrong type or a value out of range, naming the option's path.
 * Rules between options are left to the core's *_opts_check. */
void cb_lua_read_opts(lua_State *L, int idx, const cb_optschema *s, void *o,
                      const cb_lua_optread *r);

/* The closest of `names` (NULL-terminated) to `s`, or NULL when none is
 * close enough to be a typo. */
const char *cb_lua_closest(const char *s, const char *const *names);

/* ---- module parts ---------------------------------------------------------- */

/* Each adds its functions to the module table at the top of the stack. */
void cb_lua_open_opts(lua_State *L);
void cb_lua_open_clock(lua_State *L);
void cb_lua_open_breaker(lua_State *L);
void cb_lua_open_rejection(lua_State *L);
void cb_lua_open_bandit(lua_State *L);
void cb_lua_open_registry(lua_State *L);
void cb_lua_open_store(lua_State *L);

/* Attaches the breaker of box `bidx` to the store at `sidx` (raising, with
 * `ctx`, when it cannot), keeps the store alive in the box's CB_UV_STORE and
 * runs the callbacks of what the boot import changed. */
void cb_lua_store_attach(lua_State *L, int sidx, int bidx, const char *ctx);

/* Pushes a rejection for `b` refused with `v`. */
void cb_lua_pushrejection(lua_State *L, cb_breaker *b, cb_verdict v);

#endif
